"""The sentence encoder as one service per node: members send their texts there (none
loads its own copy), concurrent requests share batches."""

from __future__ import annotations

import numpy as np
import ray

from ray_orch import Agent, Memory, Process, Task
from ray_orch.testing import StubLLMServer


@ray.remote(num_cpus=0)
def _embed_in_a_worker(texts: list[str], services: object) -> tuple[object, bool]:
    from ray_orch.core import shared
    from ray_orch.model import sentence
    from ray_orch.model.embed import LocalEmbedder

    # The cluster's services come with the work, as a run's members get them.
    with shared.using(services):  # type: ignore[arg-type]
        vectors = LocalEmbedder().embed(texts)
    return vectors, sentence._encoder is None


def _server():
    from actors.embedding_server import node_embedding_server

    return node_embedding_server()


def test_workers_embed_through_the_node_service_in_shared_batches(ray_session):
    server = _server()
    before = ray.get(server.info.remote())
    texts = [[f"request {i}: the guest asked about breakfast hours"] for i in range(8)]
    from actors import cluster_services

    services = cluster_services()
    results = ray.get([_embed_in_a_worker.remote(t, services) for t in texts])
    after = ray.get(server.info.remote())
    assert all(unloaded for _, unloaded in results)  # no worker loaded the encoder
    assert after["requests"] - before["requests"] >= 8
    assert after["batches"] - before["batches"] <= after["requests"] - before["requests"]
    from ray_orch.model.embed import encode_here

    local = encode_here([t[0] for t in texts])
    served = np.concatenate([v for v, _ in results])
    assert np.allclose(served, local, atol=1e-5)


def test_concurrent_requests_are_encoded_together(ray_session):
    server = _server()
    ray.get(server.embed.remote(["warm up"]))
    before = ray.get(server.info.remote())
    refs = [server.embed.remote([f"sentence number {i}"]) for i in range(32)]
    ray.get(refs)
    after = ray.get(server.info.remote())
    requests = after["requests"] - before["requests"]
    batches = after["batches"] - before["batches"]
    assert requests == 32
    assert batches < requests  # sent together, encoded in fewer passes


def test_a_run_with_memory_recalls_through_the_service(ray_session, tmp_path):
    memory = Memory(tmp_path / "m")
    memory.add("Room 12 prefers a late checkout", user_id="guest")
    server = _server()
    before = ray.get(server.info.remote())["requests"]
    with StubLLMServer(reply="ok") as stub:
        agent = Agent(role="Desk", goal="Help", llm=stub.llm)
        Process(tasks={"t": Task(description="When does room 12 want to check out?",
                                 agent=agent)},
                agents=[agent], memory=memory, user_id="guest").workflow()
        assert "late checkout" in stub.requests[-1].prompt
    assert ray.get(server.info.remote())["requests"] > before
