"""Agent pools across nodes, and a run that survives losing a node.

A simulated cluster (``ray.cluster_utils.Cluster``: head + 2 workers) cannot share this
pytest process with the session's Ray, so ``tests/multinode_driver.py`` runs it in a
subprocess and reports what happened as one JSON line.
"""

from __future__ import annotations

import json
import os
import signal
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
    # Its own process group: on a timeout the simulated nodes (raylets, GCS, workers)
    # go down with the driver instead of outliving the test.
    driver = subprocess.Popen([sys.executable, str(DRIVER)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        stdout, stderr = driver.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGKILL)
        stdout, stderr = driver.communicate()
        pytest.fail(f"the multi-node driver took over 120 s:\n{stdout[-3000:]}\n"
                    f"{stderr[-5000:]}")
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert driver.returncode == 0 and lines, \
        f"driver failed ({driver.returncode}):\n{stdout[-3000:]}\n{stderr[-5000:]}"
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
