"""Nodes that share no disk: a member on a worker node journals its tool call through
the run's store handle (an SQLite file on the head, reached through the store service),
so when that node is removed mid-task the retry on another node replays the call and the
side effect happens once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ray_orch.store.factory import open_store

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="a private mount namespace per node needs root and unshare")
def test_a_node_removed_after_a_tool_call_does_not_run_it_again(tmp_path):
    store_parent = tmp_path / "data"  # each worker node mounts its own empty tmpfs here
    store_parent.mkdir(mode=0o700)
    ledger = tmp_path / "ledger.txt"
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{ROOT}",
           "RAY_ORCH_PROGRESS": "0"}
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_ORCH_STORE", None)
    driver = subprocess.Popen([sys.executable, str(HERE / "store_nodes_driver.py"),
                               str(store_parent), str(ledger)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        stdout, stderr = driver.communicate(timeout=280)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGKILL)
        stdout, stderr = driver.communicate()
        pytest.fail(f"the cluster driver took too long:\n{stdout[-3000:]}\n{stderr[-5000:]}")
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert driver.returncode == 0 and lines, f"{stdout[-3000:]}\n{stderr[-6000:]}"
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["raw"] == "charged"
    assert result["charged_on"] == [result["removed"]]  # once, on the removed node
    assert [c["replayed"] for c in result["calls"]] == [True]  # the retry replayed it
    assert result["calls"][0]["node"] != result["head_node"]
    # The journal is the head's file: the worker nodes wrote into it, not beside it.
    [call] = open_store(store_parent / "store").tool_calls("nodes-1")
    assert call["tool"] == "record_charge"
    print(f"\nstore across nodes: run {result['run_s']} s, removed {result['removed']}")
