"""A simulated two-node cluster for ``test_memory_multinode.py`` (in a subprocess: a
``Cluster`` cannot share a pytest process with the session's Ray).

Head (1 CPU) + one worker node with a ``far`` resource; the agent asks for it, so its
member runs on the worker. Memories are in PostgreSQL (the DSN is argv[1]), which every
node reaches. The driver remembers a fact for a user; the member on the worker recalls it
through that node's ``EmbeddingServer`` and remembers its own output. Prints
``RESULT {...}``.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ORCH_PROGRESS", "0")

import ray
from ray.cluster_utils import Cluster

from ray_orch import Agent, Memory, Process, Task
from ray_orch.testing import StubLLMServer

FACT = "Guest Ines is allergic to sesame"


def main(dsn: str) -> dict[str, object]:
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=2, resources={"far": 2})
    cluster.wait_for_nodes()
    result: dict[str, object] = {"worker_node": worker.node_id,
                                 "head_node": cluster.head_node.node_id}
    try:
        with StubLLMServer(reply="No sesame in the menu.") as stub:
            ray.init(address=cluster.address)
            memory = Memory(dsn)
            memory.add(FACT, user_id="ines")
            agent = Agent(role="Chef", goal="Cook safely", llm=stub.llm,
                          resources={"far": 1})
            out = Process(tasks={"menu": Task(description="Plan a menu the guest can eat",
                                              agent=agent)},
                          agents=[agent], memory=memory, user_id="ines").workflow()["menu"]
            result["prompt_has_fact"] = FACT in stub.requests[-1].prompt
            result["recalled"] = out.metadata["memory"]["recalled"]
            result["remembered"] = out.metadata["memory"]["remembered"]
            from actors.registry import get_registry

            handles = ray.get(get_registry().members.remote())
            infos = ray.get([h.info.remote() for h in handles], timeout=60)
            result["member_nodes"] = sorted({i["node_id"] for i in infos})
            services = {}
            for node in (worker.node_id, cluster.head_node.node_id):
                try:
                    actor = ray.get_actor(f"rayorch-embed-{node}", namespace="ray_orch")
                except ValueError:
                    continue
                services[node] = ray.get(actor.info.remote(), timeout=60)
            result["services"] = services
        kept = Memory(dsn).get(str(result["remembered"]))
        result["kept"] = None if kept is None else kept.metadata
    finally:
        ray.shutdown()
        cluster.shutdown()
    return result


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1]), default=str), flush=True)
