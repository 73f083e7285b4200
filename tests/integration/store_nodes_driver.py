"""A simulated cluster whose worker nodes do not share the head's disk, for
``test_store_nodes.py`` (run in a subprocess, in its own process group).

The head (``ray.cluster_utils.Cluster``) runs in this process's group. Each of two
worker nodes is ``ray start --block`` under its own mount namespace (``unshare -m``)
with a private tmpfs mounted over the run store's parent directory: a member there that
opened the store "by path" would write to its own empty disk. A journaled tool runs on
one worker; while the model's next turn hangs, that worker node is removed; the attempt
goes to the other worker, which must find the call in the journal.

Usage: store_nodes_driver.py STORE_PARENT LEDGER. Prints ``RESULT {json}``.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep 127.0.0.1
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ORCH_PROGRESS", "0")

import ray
from ray.cluster_utils import Cluster

from ray_orch import Agent, Process, Task
from ray_orch.testing import StubLLMServer

FAST_HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_failure_threshold": 3,
                      "health_check_initial_delay_ms": 0}
LABELS = ("node_a", "node_b")


def record_charge(amount: int, ledger: str) -> str:
    """Charge a card: a line (amount, node) appended to the ledger."""
    node = ray.get_runtime_context().get_node_id()
    with open(ledger, "a") as out:
        out.write(f"{amount} {node}\n")
    return f"charged {amount}"


def start_worker(address: str, private: str, label: str, log: str) -> subprocess.Popen[bytes]:
    """A worker node in its own mount namespace, a private tmpfs over ``private``."""
    node = f"{shlex.quote(sys.executable)} {shlex.quote(__file__)} --node {address} {label}"
    command = f"mount -t tmpfs tmpfs {shlex.quote(private)} && exec {node}"
    return subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", command],
                            start_new_session=True, stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT)


def run_node(address: str, label: str) -> None:
    """Be a worker node until killed (as ``Cluster.add_node`` starts one)."""
    from ray._private.node import Node
    from ray._private.parameter import RayParams

    params = RayParams(gcs_address=address, node_ip_address="127.0.0.1", num_cpus=2,
                       num_gpus=0, resources={"agent_slot": 4, label: 1},
                       object_store_memory=150 * 1024 * 1024, min_worker_port=0,
                       max_worker_port=0, include_log_monitor=False, node_manager_port=0)
    params.dashboard_agent_listen_port = None
    # Two nodes starting at once would pick the same numbered socket in the session dir.
    sockets = tempfile.mkdtemp(prefix="rn-")
    params.plasma_store_socket_name = os.path.join(sockets, f"plasma_{label}")
    params.raylet_socket_name = os.path.join(sockets, f"raylet_{label}")
    Node(params, head=False, shutdown_at_exit=False, spawn_reaper=False)
    while True:
        time.sleep(3600)


def main(store_parent: str, ledger: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 1, "_system_config": FAST_HEALTH_CHECKS})
    logs = Path(ledger).with_name("nodes.log")
    workers = {label: start_worker(cluster.address, store_parent, label, str(logs))
               for label in LABELS}
    stub = StubLLMServer().start()
    try:
        ray.init(address=cluster.address)
        deadline = time.monotonic() + 180
        while sum(1 for n in ray.nodes() if n["Alive"]) < 3:
            assert time.monotonic() < deadline, "the worker nodes never joined: " + (
                logs.read_text()[-3000:] if logs.exists() else "")
            time.sleep(0.5)
        label_of = {n["NodeID"]: label for n in ray.nodes() if n["Alive"]
                    for label in LABELS if label in n["Resources"]}
        result["head_node"] = ray.get_runtime_context().get_node_id()

        def reply(request: Any) -> Any:
            if not request.tool_results:
                return StubLLMServer.tool_call("record_charge", {"amount": 42,
                                                                 "ledger": ledger})
            return "charged"
        stub.reply = reply
        # The turn after the charge hangs: the node is removed while it waits.
        stub.add_rule(match=lambda r: bool(r.tool_results), latency=60, times=1)

        def remove_the_charging_node() -> None:
            while not (os.path.exists(ledger) and Path(ledger).read_text().strip()):
                time.sleep(0.05)
            node = Path(ledger).read_text().split()[1]
            label = label_of[node]
            result["removed"] = label
            os.killpg(workers[label].pid, signal.SIGKILL)
        threading.Thread(target=remove_the_charging_node, daemon=True).start()

        agent = Agent(role="Cashier", goal="Charge", llm=stub.llm, tools=[record_charge],
                      pool_size=1, max_concurrency=1, resources={"agent_slot": 1})
        task = Task(description="Charge 42 to the card", agent=agent, max_retries=3)
        store = os.path.join(store_parent, "store")
        started = time.monotonic()
        outputs = Process(tasks={"charge": task}, agents=[agent], store=store,
                          metrics=False, progress=False).workflow(run_id="nodes-1")
        result["run_s"] = round(time.monotonic() - started, 1)
        calls = outputs["charge"].metadata.get("tool_calls", [])
        result["raw"] = outputs["charge"].raw
        result["calls"] = [{"replayed": c.get("replayed"), "node": c.get("node")}
                           for c in calls]
        result["charged_on"] = [label_of.get(line.split()[1], "head")
                                for line in Path(ledger).read_text().splitlines()]
        result["label_of"] = label_of
    finally:
        stub.stop()
        for process in workers.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        ray.shutdown()
        cluster.shutdown()
    return result


if __name__ == "__main__":
    if sys.argv[1] == "--node":
        run_node(sys.argv[2], sys.argv[3])
    print("RESULT " + json.dumps(main(sys.argv[1], sys.argv[2])), flush=True)
