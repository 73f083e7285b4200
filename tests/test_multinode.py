"""Agent pools across nodes, and a run that survives losing a node.

A simulated cluster (``ray.cluster_utils.Cluster``: head + 2 workers) cannot share this
pytest process with the session's Ray, so ``tests/multinode_driver.py`` runs it in a
subprocess and reports what happened as one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

DRIVER = Path(__file__).with_name("multinode_driver.py")


@pytest.fixture(scope="module")
def cluster_run() -> dict[str, Any]:
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_ORCH_PROGRESS": "0"}
    env.pop("RAY_ADDRESS", None)  # the driver makes its own cluster
    done = subprocess.run([sys.executable, str(DRIVER)], env=env, capture_output=True,
                          text=True, timeout=120)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, \
        f"driver failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.cluster
def test_a_spread_pool_has_members_on_both_worker_nodes(cluster_run):
    workers = set(cluster_run["worker_nodes"])
    assert set(cluster_run["members_on_workers"]) == workers
    assert set(cluster_run["member_nodes"].values()) <= workers  # agent_slot: not the head
    assert set(cluster_run["spread_used_nodes"]) == workers  # both did work


@pytest.mark.cluster
def test_the_control_plane_runs_on_the_head_node(cluster_run):
    # A run must not depend on a worker node: the registry (which owns every agent
    # actor), the Supervisor and the MetricsHub belong on the head.
    head = cluster_run["head_node"]
    assert cluster_run["control_plane_nodes"] == {
        name: head for name in cluster_run["control_plane_nodes"]}, cluster_run


@pytest.mark.cluster
def test_a_run_completes_when_a_node_is_lost_mid_run(cluster_run):
    assert cluster_run["run_finished"], cluster_run
    assert cluster_run["error"] is None, cluster_run["error"]
    assert cluster_run["answered_before_removal"] < 40  # the node went mid-run
    assert cluster_run["iterations"] == 40
    assert cluster_run["iteration_outputs_ok"]  # every item once, in order
    assert cluster_run["items_never_asked"] == []
    print(f"\nmulti-node: cluster up {cluster_run['cluster_start_s']} s, spread run "
          f"{cluster_run['spread_run_s']} s, node-loss run {cluster_run['node_loss_run_s']} s, "
          f"{cluster_run['requests']} requests for 40 items, total {cluster_run['total_s']} s")
