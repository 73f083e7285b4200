"""A member on another node reads and writes the same memory (PostgreSQL), embedding
through its own node's ``EmbeddingServer``: ``memory_multinode_driver.py`` runs a
simulated two-node cluster in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = Path(__file__).with_name("memory_multinode_driver.py")
ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.cluster
def test_a_member_on_another_node_recalls_and_remembers(postgres_dsn):
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONPATH": str(ROOT),
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_ORCH_PROGRESS": "0"}
    env.pop("RAY_ADDRESS", None)
    driver = subprocess.Popen([sys.executable, str(DRIVER), postgres_dsn], env=env,
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        stdout, stderr = driver.communicate(timeout=420)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGKILL)
        stdout, stderr = driver.communicate()
        pytest.fail(f"the driver took over 420 s:\n{stdout[-3000:]}\n{stderr[-5000:]}")
    lines = [x for x in stdout.splitlines() if x.startswith("RESULT ")]
    assert driver.returncode == 0 and lines, f"{stdout[-3000:]}\n{stderr[-5000:]}"
    result = json.loads(lines[-1].removeprefix("RESULT "))
    worker = result["worker_node"]
    assert result["member_nodes"] == [worker]  # the agent's member ran on the worker
    assert result["prompt_has_fact"] and result["recalled"][0]["kind"] == "memory"
    assert result["services"][worker]["requests"] >= 1  # the worker's own encoder
    assert result["services"][worker]["node_id"] == worker
    assert result["kept"]["user_id"] == "ines" and result["kept"]["agent"] == "Chef"
