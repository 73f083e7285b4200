"""A simulated three-node cluster for ``tests/integration/test_multinode.py`` (run in a subprocess:
a multi-node ``Cluster`` cannot share a pytest process with the session's Ray).

Head + 2 worker nodes (``ray.cluster_utils.Cluster``, 2 CPUs and 4 ``agent_slot`` each
on the workers), fast health checks so a lost node is noticed in seconds, a stub model
server, and the driver connected with ``ray.init(address=...)`` so ray-orch connects
instead of starting its own Ray. Two runs:

1. ``spread``: a pool of 4 agents with ``scheduling_strategy="SPREAD"`` and one
   ``agent_slot`` each: members on both workers;
2. ``node_loss``: a loop of 40 items (stub latency 0.2 s, one attempt per member at a
   time) during which one worker node is removed; the run must still complete with
   every iteration exactly once.

Prints one JSON line (``RESULT {...}``) with what happened and how long it took.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
import time
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ORCH_PROGRESS", "0")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import ray
from ray.cluster_utils import Cluster

from ray_orch import Agent, Process, Task
from ray_orch.testing import StubLLMServer

FAST_HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_failure_threshold": 3,
                      "health_check_initial_delay_ms": 0}
ITEMS = 40


def _node_of(handle: Any) -> str:
    return ray.get(handle.__ray_call__.remote(
        lambda _self: ray.get_runtime_context().get_node_id()), timeout=30)


def _members_by_node() -> dict[str, str]:
    """pid -> node id of every agent actor, asked from the actors themselves."""
    from actors.registry import get_registry

    handles = ray.get(get_registry().members.remote())
    infos = ray.get([h.info.remote() for h in handles], timeout=30)
    return {str(info["pid"]): info["node_id"] for info in infos}


def _control_plane_nodes() -> dict[str, str]:
    """Where the registry, a (warm) Supervisor and the MetricsHub run."""
    from actors.registry import get_registry

    registry = get_registry()
    supervisor = ray.get(registry.lease_supervisor.remote())
    try:
        nodes = {"registry": _node_of(registry), "supervisor": _node_of(supervisor)}
    finally:
        registry.give_back_supervisor.remote(supervisor)
    with contextlib.suppress(ValueError):  # no hub: metrics off
        nodes["metrics_hub"] = _node_of(ray.get_actor("rayorch-metrics", namespace="ray_orch"))
    return nodes


def _echo(request: Any) -> str:
    match = re.search(r"Handle item (\w+)", request.prompt)
    return f"handled {match.group(1) if match else '?'}"


def main() -> dict[str, Any]:
    result: dict[str, Any] = {}
    t0 = time.monotonic()
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 1, "_system_config": FAST_HEALTH_CHECKS})
    workers = [cluster.add_node(num_cpus=2, resources={"agent_slot": 4}) for _ in range(2)]
    cluster.wait_for_nodes()
    stub = StubLLMServer(reply=_echo).start()
    try:
        ray.init(address=cluster.address)
        worker_ids = {w.node_id for w in workers}
        result["head_node"] = cluster.head_node.node_id
        result["worker_nodes"] = sorted(worker_ids)
        result["cluster_start_s"] = round(time.monotonic() - t0, 2)

        agent = Agent(role="Handler", goal="Handle items", llm=stub.llm, pool_size=4,
                      max_concurrency=1, resources={"agent_slot": 1},
                      scheduling_strategy="SPREAD")

        # 1. Members on both workers.
        t1 = time.monotonic()
        tasks = {"handle": Task(description="Handle item {item}", agent=agent,
                                task_type="loop", loop_data=[f"w{i}" for i in range(8)])}
        out = Process(tasks=tasks, agents=[agent]).workflow()
        result["spread_run_s"] = round(time.monotonic() - t1, 2)
        nodes = _members_by_node()
        control = _control_plane_nodes()
        result["control_plane_nodes"] = control
        result["member_nodes"] = nodes
        result["members_on_workers"] = sorted({n for n in nodes.values() if n in worker_ids})
        used = {str(o.metadata["actor_pid"]) for o in out["handle"].iterations or []}
        result["spread_pids_used"] = sorted(used)
        result["spread_used_nodes"] = sorted({nodes.get(pid, "?") for pid in used})

        # 2. A worker node is lost while the loop is in flight.
        stub.latency = 0.2
        stub.clear()
        # The worker whose loss hurts most: one with the Supervisor or the registry if
        # either is (wrongly) on a worker, else one with pool members.
        victim = next((w for w in workers if w.node_id == control.get("supervisor")),
                      next((w for w in workers if w.node_id == control.get("registry")),
                           next(w for w in workers if w.node_id in set(nodes.values()))))
        result["removed_node"] = victim.node_id
        items = [f"n{i}" for i in range(ITEMS)]
        tasks = {"handle": Task(description="Handle item {item}", agent=agent,
                                task_type="loop", loop_data=items, max_retries=3)}
        process = Process(tasks=tasks, agents=[agent], metrics=False)
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["outputs"] = process.workflow()
            except BaseException as exc:  # reported, not raised: the parent test judges
                outcome["error"] = f"{type(exc).__name__}: {exc}"

        t2 = time.monotonic()
        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        while stub.count() < 8 and runner.is_alive() and time.monotonic() - t2 < 60:
            time.sleep(0.02)
        result["answered_before_removal"] = sum(r.status == 200 for r in stub.requests)
        t_remove = time.monotonic()
        cluster.remove_node(victim)
        result["remove_node_s"] = round(time.monotonic() - t_remove, 2)
        runner.join(timeout=60)
        result["node_loss_run_s"] = round(time.monotonic() - t2, 2)
        result["run_finished"] = not runner.is_alive()
        result["error"] = outcome.get("error")
        iterations = (outcome.get("outputs") or {}).get("handle")
        raws = [o.raw for o in (iterations.iterations or [])] if iterations else []
        result["iterations"] = len(raws)
        result["iteration_outputs_ok"] = raws == [f"handled {item}" for item in items]
        # An attempt in flight on the lost node may have been sent twice; its output
        # is recorded once.
        asked = [re.search(r"Handle item (\w+)", r.prompt) for r in stub.requests]
        counts = {item: 0 for item in items}
        for match in asked:
            if match and match.group(1) in counts:
                counts[match.group(1)] += 1
        result["requests_per_item_max"] = max(counts.values())
        result["items_never_asked"] = sorted(k for k, v in counts.items() if v == 0)
        result["requests"] = stub.count()
        result["statuses"] = sorted({str(r.status) for r in stub.requests})
        result["total_s"] = round(time.monotonic() - t0, 2)
        return result
    finally:
        stub.stop()
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    summary = main()
    print("RESULT " + json.dumps(summary), flush=True)
    sys.exit(0)
