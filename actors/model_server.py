"""``ModelServer``: the embedded offline model's HTTP server, one per node.

A detached, named actor (``rayorch-model-<node_id>`` in namespace ``ray_orch``) pinned to
its node holds one ``EmbeddedServer``: llama.cpp's OpenAI-compatible server bound to
``127.0.0.1`` on a free port. Every agent actor on that node calls the model over HTTP at
``base_url()``, so the model is loaded once per node, not once per agent. It takes no CPU
reservation (``num_cpus=0``): inference threads are set by ``RAY_ORCH_EMBEDDED_THREADS``
or default to half the node's cores
(1-4; see ``ray_orch.model.embedded.default_threads``).

``node_model_server()`` gets or creates the actor of the caller's node; importing
``actors`` installs it as the embedded model's port (``serve_per_node``), so
``ray_orch.model.embedded.embedded_llm_options()`` reaches it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray

from ray_orch.model.embedded import (
    ACTOR_PREFIX,
    NAMESPACE,
    EmbeddedServer,
    check_installed,
    embedded_settings,
)


@ray.remote(num_cpus=0)
class ModelServer:
    """Holds the node's ``EmbeddedServer``.

    Args:
        model_path: the GGUF file (default: the packaged SmolLM2).
        threads: inference threads (default: half this node's cores, 1-4).
        parallel: requests decoded at once (default 2).
        ctx_size: context tokens per slot (default 4096).

    Raises:
        ModelNotConfiguredError: xllamacpp or the model is not installed on this node
            (the actor then dies; the caller sees ``RayActorError``).

    Example:
        >>> server = ModelServer.options(name="m", get_if_exists=True).remote()  # doctest: +SKIP
        >>> ray.get(server.base_url.remote())  # doctest: +SKIP
        'http://127.0.0.1:41234/v1'
    """

    def __init__(self, model_path: str | None = None, threads: int | None = None,
                 parallel: int | None = None, ctx_size: int | None = None) -> None:
        self._settings: dict[str, Any] = {
            "model_path": Path(model_path) if model_path else None, "threads": threads,
            "parallel": parallel, "ctx_size": ctx_size}
        self._server: EmbeddedServer | None = EmbeddedServer(**self._settings)

    def _running(self) -> EmbeddedServer:
        # A stopped server starts again on demand (on a new port), so the named actor
        # never hands out an address nobody listens on.
        if self._server is None or not self._server.running:
            self._server = EmbeddedServer(**self._settings)
        return self._server

    def base_url(self) -> str:
        """The OpenAI-compatible base URL, ``http://127.0.0.1:<port>/v1``.

        Returns:
            litellm's ``api_base`` for this node's model.
        """
        return self._running().base_url

    def info(self) -> dict[str, Any]:
        """Model name and path, base URL, threads, slots, context, load time, pid.

        Returns:
            Plain data (see ``EmbeddedServer.info``).
        """
        return self._running().info()

    def stop(self) -> None:
        """Stop the HTTP server and free the model; the actor itself stays.

        The next ``base_url()`` / ``info()`` starts it again. To remove the actor, use
        ``ray.kill`` on its handle.
        """
        if self._server is not None:
            self._server.stop()
            self._server = None


def node_model_server() -> tuple[str, Any]:
    """This node's id and its ``ModelServer`` (created, detached and pinned, if needed)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node_id = ray.get_runtime_context().get_node_id()
    # Checked here, on the node that will host the actor, for an error that says how to
    # install rather than a dead actor.
    check_installed()
    handle = ModelServer.options(  # type: ignore[attr-defined]
        name=f"{ACTOR_PREFIX}{node_id}", namespace=NAMESPACE, lifetime="detached",
        get_if_exists=True, num_cpus=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
    ).remote(**embedded_settings())
    return node_id, handle
