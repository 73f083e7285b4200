"""``EmbeddingServer``: the offline sentence encoder, one per node, shared by its members.

A detached, named async actor (``rayorch-embed-<node_id>`` in namespace ``ray_orch``)
pinned to its node holds the node's one all-MiniLM-L6-v2 (~90 MB). Members of that node
send their texts here (``ray_orch.model.embed.LocalEmbedder``, through the run's
``SharedServices.embedder``) instead of each loading the encoder. Requests that arrive
while a batch is being encoded wait for the next one, which takes them all: concurrent
recalls of many members cost one forward pass per turn, not one each. It reserves no CPU
(``num_cpus=0``) and encodes on one BLAS thread, off its event loop.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import ray

from ray_orch.model.embed import encode_here, local_tag

NAMESPACE = "ray_orch"
ACTOR_PREFIX = "rayorch-embed-"


@ray.remote(num_cpus=0)
class EmbeddingServer:
    """The node's sentence encoder, batching concurrent requests.

    Example:
        >>> _, server = node_embedding_server()  # doctest: +SKIP
        >>> ray.get(server.embed.remote(["hello"])).shape  # doctest: +SKIP
        (1, 384)
    """

    def __init__(self) -> None:
        self.pending: list[tuple[list[str], asyncio.Future[Any]]] = []
        self.worker: asyncio.Task[None] | None = None
        self.requests = 0
        self.batches = 0
        self.texts = 0

    async def embed(self, texts: list[str]) -> Any:
        """Unit vectors of ``texts`` (a ``(n, 384)`` float32 array), encoded with every
        other request waiting at the same time."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append((list(texts), future))
        self.requests += 1
        if self.worker is None or self.worker.done():
            self.worker = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        while self.pending:
            await asyncio.sleep(0)  # let requests sent together arrive
            batch, self.pending = self.pending, []
            texts = [t for chunk, _ in batch for t in chunk]
            try:
                vectors = await asyncio.to_thread(encode_here, texts)
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            self.texts += len(texts)
            start = 0
            for chunk, future in batch:
                if not future.done():
                    future.set_result(vectors[start:start + len(chunk)])
                start += len(chunk)

    async def tag(self) -> str:
        """The encoder's tag (``all-minilm-l6-v2:<digest>``), loading it if needed."""
        return await asyncio.to_thread(local_tag)

    def info(self) -> dict[str, Any]:
        """Requests, batches and texts served, this process's pid and resident memory."""
        rss = 0
        try:
            with open(f"/proc/{os.getpid()}/statm") as handle:
                rss = int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
        return {"requests": self.requests, "batches": self.batches, "texts": self.texts,
                "pid": os.getpid(), "rss_bytes": rss,
                "node_id": ray.get_runtime_context().get_node_id()}


def node_embedding_server() -> Any:
    """This node's ``EmbeddingServer`` (created, detached and pinned, if needed)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node_id = ray.get_runtime_context().get_node_id()
    return EmbeddingServer.options(  # type: ignore[attr-defined]
        name=f"{ACTOR_PREFIX}{node_id}", namespace=NAMESPACE, lifetime="detached",
        get_if_exists=True, num_cpus=0, max_concurrency=1000,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
    ).remote()
