"""Embedders for memory and knowledge: the offline sentence encoder, or a litellm model.

``embedder_for(None)`` is the embedded all-MiniLM-L6-v2 (``model/sentence.py``: offline,
384 dimensions); ``embedder_for("text-embedding-3-small")`` (any litellm embedding model)
calls the provider. Each embedder has a ``tag`` stored beside every vector it makes, so
that vectors of two models are never compared.

Under Ray the offline encoder runs in one actor per node (``actors/embedding_server.py``,
reached through the work in progress's shared services, ``ray_orch.core.shared``
``embedder``): every member of the node sends its texts
there, and concurrent requests are encoded in one batch, instead of each process loading
its own ~90 MB copy. Without Ray it runs in this process.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any, Protocol

from ray_orch.core import shared
from ray_orch.core.errors import InvalidTaskFieldError, LLMError

__all__ = ["Embedder", "LiteLLMEmbedder", "LocalEmbedder", "embed_per_node", "embedder_for",
           "encode_here", "local_tag"]


class Embedder(Protocol):
    """Turns texts into unit-length vectors."""

    @property
    def tag(self) -> str:
        """The model's identity, stored with each vector (another tag: re-embedded)."""

    def embed(self, texts: list[str]) -> Any:
        """A ``(len(texts), dim)`` float32 array of unit vectors."""


# How the work in progress reaches its node's embedding service under Ray comes with it
# (``ray_orch.core.shared``: ``embedder`` returns the ``EmbeddingServer`` handle).


def embed_per_node(node_service: Callable[[], Any]) -> None:
    """Encode through one service per node under Ray, for work outside a run (the port
    ``EmbeddingServer`` implements): ``node_service()`` returns this node's actor handle."""
    shared.install(dataclasses.replace(shared.installed(), embedder=node_service))


_handles: dict[Callable[[], Any], Any] = {}


def _service() -> Any:
    """This node's embedding service under Ray (the handle kept per process), or None."""
    node_service = shared.current().embedder
    if node_service is None or "ray" not in sys.modules:
        return None
    import ray

    if not ray.is_initialized():
        return None
    if node_service not in _handles:
        _handles[node_service] = node_service()
    return _handles[node_service]


def _wait(ref: Any) -> Any:
    """A Ray call's result, waited for in this thread (recall runs off a member's event
    loop: ``ray.get`` would warn there that it blocks an async actor, which it does not)."""
    return ref.future().result()


def _unit(vectors: Any) -> Any:
    import numpy as np

    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        array = array.reshape(len(array), -1)
    return array / np.maximum(np.linalg.norm(array, axis=1, keepdims=True), 1e-12)


class LocalEmbedder:
    """The offline sentence encoder: in this process, or the node's service under Ray.

    Example:
        >>> vectors = LocalEmbedder().embed(["tea or coffee?", "a hot drink"])
        >>> vectors.shape
        (2, 384)
    """

    _tag: str | None = None

    @property
    def tag(self) -> str:
        """``all-minilm-l6-v2:<first 12 hex of the weights' digest>``."""
        if LocalEmbedder._tag is None:
            service = _service()
            if service is not None:
                LocalEmbedder._tag = str(_wait(service.tag.remote()))
            else:
                LocalEmbedder._tag = local_tag()
        return LocalEmbedder._tag

    def embed(self, texts: list[str]) -> Any:
        """Unit vectors of ``texts`` (see ``Embedder.embed``)."""
        import numpy as np

        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        service = _service()
        if service is not None:
            return np.asarray(_wait(service.embed.remote(list(texts))), dtype=np.float32)
        return encode_here(list(texts))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalEmbedder)

    def __hash__(self) -> int:
        return hash("LocalEmbedder")

    def __repr__(self) -> str:
        return "LocalEmbedder()"


def encode_here(texts: list[str]) -> Any:
    """Encode in this process (the node's service does), BLAS on one thread."""
    from ray_orch.model.sentence import encoder
    from ray_orch.store.memory import one_blas_thread

    with one_blas_thread():
        return encoder().encode(texts)


def local_tag() -> str:
    """The tag of this process's sentence encoder (loads it)."""
    from ray_orch.model.sentence import MODEL_NAME, encoder

    return f"{MODEL_NAME}:{encoder().digest[:12]}"


class LiteLLMEmbedder:
    """Any litellm embedding model (``"text-embedding-3-small"``, ``"ollama/nomic-embed-
    text"``, ...), with its options (``api_base``, ``api_key``, ``dimensions``).

    Args:
        model: the litellm model string.
        **options: passed to ``litellm.embedding``.
    """

    def __init__(self, model: str, **options: Any) -> None:
        self.model = model
        self.options = options

    @property
    def tag(self) -> str:
        """``litellm:<model>`` (and its dimensions, when given)."""
        dims = self.options.get("dimensions")
        return f"litellm:{self.model}" + (f":{dims}" if dims else "")

    def embed(self, texts: list[str]) -> Any:
        """Unit vectors of ``texts`` from the provider (in batches of 256)."""
        import numpy as np

        from ray_orch.model.client import litellm_module

        rows: list[Any] = []
        for start in range(0, len(texts), 256):
            try:
                reply = litellm_module().embedding(model=self.model, input=texts[start:start + 256],
                                         **self.options)
            except Exception as exc:
                raise LLMError(f"embedding model {self.model!r} failed: "
                               f"{type(exc).__name__}: {exc}", retryable=True) from None
            rows += [item["embedding"] for item in reply["data"]]
        return _unit(rows) if rows else np.zeros((0, 1), dtype=np.float32)

    def __getstate__(self) -> dict[str, Any]:
        return {"model": self.model, "options": self.options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.model, self.options = state["model"], state["options"]

    def __repr__(self) -> str:
        return f"LiteLLMEmbedder({self.model!r})"


def embedder_for(spec: Any, *, who: str = "Memory") -> Any:
    """The embedder a ``Memory(embedder=...)`` names.

    Args:
        spec: None (the offline encoder), a litellm model string, CrewAI's / PraisonAI's
            ``{"provider": ..., "config": {"model": ...}}`` or ``{"model": ...}`` dicts,
            or an object with ``tag`` and ``embed(texts)``.
        who: names the owner in an error.

    Raises:
        InvalidTaskFieldError: anything else.

    Example:
        >>> embedder_for("text-embedding-3-small").tag
        'litellm:text-embedding-3-small'
    """
    if spec is None or spec == "local" or isinstance(spec, LocalEmbedder):
        return LocalEmbedder()
    if isinstance(spec, str) and spec.strip():
        return LiteLLMEmbedder(spec)
    if isinstance(spec, dict):
        config = dict(spec.get("config") or {})
        model = config.pop("model", None) or spec.get("model")
        provider = spec.get("provider")
        if model is None and provider in (None, "local", "sentence-transformers"):
            return LocalEmbedder()
        if isinstance(model, str) and model:
            if provider and provider not in ("openai", "litellm") and "/" not in model:
                model = f"{provider}/{model}"
            options = {k: v for k, v in config.items() if k in
                       ("api_base", "api_key", "dimensions", "api_version")}
            return LiteLLMEmbedder(model, **options)
    if callable(getattr(spec, "embed", None)) and isinstance(getattr(spec, "tag", None), str):
        return spec
    raise InvalidTaskFieldError(
        f"{who}: embedder must be None (the offline encoder), a litellm embedding model "
        f"string, a {{'provider': ..., 'config': {{'model': ...}}}} dict, or an object with "
        f"tag and embed(texts), not {spec!r}", field="embedder")
