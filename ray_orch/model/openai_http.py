"""A lean client for OpenAI-compatible chat servers named by a base URL.

``litellm.acompletion`` costs 5-8 ms of CPU per call on this kind of machine (its logging,
pricing and the openai SDK's request transformation); a raw aiohttp request costs ~0.5 ms.
For a workflow of thousands of short calls that difference is most of the run, so calls
to an OpenAI-compatible server given by ``base_url`` (``openai/<name>``,
``hosted_vllm/<name>``: the stub, the embedded model, vLLM, llama.cpp, a proxy) take
this path; every other provider, and any call with options this path does not know, goes
through litellm. ``LLMConfig(client="litellm")`` (or ``RAY_ORCH_LLM_CLIENT=litellm``)
sends everything through litellm.

It keeps litellm's contract where it matters: the request litellm would send (model
without its provider prefix, a pydantic ``response_format`` as a strict JSON schema),
failures named as litellm names them and classified the same way (``LLMError`` with
``status_code``, ``retryable``, ``retry_after``), and prices from litellm's own table,
read as a file so that this path never imports litellm (3-5 s and ~170 MB a process).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ray_orch.core.errors import LLMError

__all__ = ["PREFIXES", "STATUS_ERRORS", "achat", "api_error", "eligible", "message_of",
           "model_info", "prices", "response_format", "retry_after_of", "shared_session"]

#: Model prefixes that mean "an OpenAI-compatible server at base_url" in litellm.
PREFIXES = ("openai/", "hosted_vllm/", "custom_openai/")

#: Chat options sent as they are; any other option sends the call through litellm,
#: which knows how to map or drop it.
_PASSTHROUGH = frozenset({
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed", "n",
    "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs",
    "user", "extra_body", "extra_headers",
})

# status -> (litellm's exception name, retryable); anything else >= 500 is retryable.
STATUS_ERRORS = {
    400: ("BadRequestError", False), 401: ("AuthenticationError", False),
    403: ("PermissionDeniedError", False), 404: ("NotFoundError", False),
    408: ("Timeout", True), 409: ("APIError", True), 422: ("UnprocessableEntityError", False),
    425: ("APIError", True), 429: ("RateLimitError", True), 500: ("InternalServerError", True),
    502: ("BadGatewayError", True), 503: ("ServiceUnavailableError", True),
    504: ("Timeout", True),
}


def eligible(model: str, base_url: str | None, options: dict[str, Any]) -> bool:
    """Whether a call can take this path (else it goes through litellm)."""
    if not base_url or not model.startswith(PREFIXES) or not _PASSTHROUGH.issuperset(options):
        return False
    if options.get("stream"):
        return False
    return not _litellm_callbacks()


def _litellm_callbacks() -> bool:
    # Callbacks a user registered on litellm in this process must see every call.
    lib = sys.modules.get("litellm")
    if lib is None:
        return False
    return any(getattr(lib, name, None) for name in
               ("callbacks", "success_callback", "failure_callback", "input_callback",
                "_async_success_callback", "_async_failure_callback"))


@functools.lru_cache(maxsize=128)
def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    return {"type": "json_schema",
            "json_schema": {"name": model.__name__, "schema": _strict(model.model_json_schema()),
                            "strict": True}}


def _strict(schema: Any) -> Any:
    # What litellm (through openai's to_strict_json_schema) sends: closed objects.
    if isinstance(schema, dict):
        out = {key: _strict(value) for key, value in schema.items()}
        if out.get("type") == "object" and "properties" in out:
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def response_format(schema: type[BaseModel] | dict[str, Any]) -> dict[str, Any]:
    """The ``response_format`` body field for a pydantic model (or a dict as given)."""
    return schema if isinstance(schema, dict) else _schema_of(schema)


@functools.lru_cache(maxsize=1)
def _price_table() -> dict[str, Any]:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    for root in spec.submodule_search_locations:
        path = Path(root) / "model_prices_and_context_window_backup.json"
        if path.is_file():
            try:
                table = json.loads(path.read_text())
            except (OSError, ValueError):
                return {}
            return table if isinstance(table, dict) else {}
    return {}


@functools.lru_cache(maxsize=256)
def model_info(model: str) -> dict[str, Any]:
    """litellm's price-table entry for a model (``{}`` if it has none), without litellm."""
    table = _price_table()
    name = model.split("/", 1)[1] if "/" in model else model
    entry = table.get(model) or table.get(name)
    return entry if isinstance(entry, dict) else {}


def prices(model: str) -> tuple[float, float]:
    """(input, output) US dollars per token from litellm's price table; 0 if unknown."""
    entry = model_info(model)
    try:
        return (float(entry.get("input_cost_per_token") or 0.0),
                float(entry.get("output_cost_per_token") or 0.0))
    except (TypeError, ValueError):
        return 0.0, 0.0


# One session per event loop (aiohttp sessions are bound to the loop that made them),
# each held by an async generator: the loop's shutdown_asyncgens() (asyncio.run does it)
# closes the session with the loop instead of leaving it to a warning at exit.
_sessions: dict[asyncio.AbstractEventLoop, tuple[Any, AsyncIterator[Any]]] = {}


async def _holding(session: Any) -> AsyncIterator[Any]:
    try:
        yield session
    finally:
        await session.close()


async def shared_session() -> Any:
    """This event loop's one ``aiohttp`` session (opened on first use)."""
    import aiohttp

    loop = asyncio.get_running_loop()
    held = _sessions.get(loop)
    if held is not None and not held[0].closed:
        return held[0]
    for old in [lp for lp in _sessions if lp.is_closed()]:
        del _sessions[old]
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                                    json_serialize=json.dumps)
    holder = _holding(session)
    await holder.__anext__()
    _sessions[loop] = (session, holder)
    return session


def api_error(name: str, model: str, message: str, *, status: int | None, retryable: bool,
              retry_after: float | None = None) -> LLMError:
    """The ``LLMError`` litellm would raise for this failure (same name and message)."""
    return LLMError(f"{name} from model {model}: {message}", retryable=retryable,
                    status_code=status, retry_after=retry_after)


def transport_error(exc: BaseException, model: str, timeout: float) -> LLMError:
    """The ``LLMError`` of a request that timed out or lost its connection (retryable)."""
    if isinstance(exc, asyncio.TimeoutError):
        return api_error("Timeout", model, f"request timed out after {timeout:g} s", status=408,
                      retryable=True)
    return api_error("APIConnectionError", model, f"Connection error: {exc}", status=None,
                  retryable=True)


def retry_after_of(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after`` headers, or None."""
    try:
        if headers.get("retry-after-ms") is not None:
            return float(headers["retry-after-ms"]) / 1000
        if headers.get("retry-after") is not None:
            return float(headers["retry-after"])
    except (TypeError, ValueError):
        return None
    return None


def message_of(body: bytes) -> str:
    """The error message of a server's error reply (its JSON ``error``), else the text."""
    try:
        data = json.loads(body)
        error = data.get("error", data) if isinstance(data, dict) else data
        message = error.get("message", error) if isinstance(error, dict) else error
        return str(message)[:500]
    except ValueError:
        return body[:500].decode(errors="replace")


async def achat(model: str, base_url: str, api_key: str | None, body: dict[str, Any],
                timeout: float) -> dict[str, Any]:
    """POST one chat completion; the parsed reply, or an ``LLMError``.

    Args:
        model: the litellm model string (for error messages).
        base_url: the server's base URL, ending in ``/v1`` or not (as litellm takes it).
        api_key: sent as a bearer token when given.
        body: the request body (``model`` without its provider prefix).
        timeout: seconds for the whole call.
    """
    import aiohttp

    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    extra = body.pop("extra_headers", None)
    if extra:
        headers.update(extra)
    extra_body = body.pop("extra_body", None)
    if extra_body:
        body.update(extra_body)
    try:
        async with (await shared_session()).post(url, json=body, headers=headers,
                                   timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            raw = await response.read()
            status = response.status
            if status >= 400:
                name, retryable = STATUS_ERRORS.get(status, ("APIError", status >= 500))
                raise api_error(name, model, f"{status} {message_of(raw)}", status=status,
                             retryable=retryable, retry_after=retry_after_of(response.headers))
    except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
        raise transport_error(exc, model, timeout) from None
    try:
        data = json.loads(raw)
    except ValueError:
        raise api_error("APIError", model, f"the reply is not JSON: {raw[:200]!r}", status=None,
                     retryable=True) from None
    if not isinstance(data, dict):
        raise api_error("APIError", model, f"the reply is not a JSON object: {raw[:200]!r}",
                     status=None, retryable=True)
    return data
