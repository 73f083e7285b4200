"""The LLM seam: every model call in ray-orch goes through this module, over litellm.

It owns: the model configuration (``LLMConfig``), structured output (a JSON schema from
a pydantic model through ``response_format``), token and cost accounting, per-call
timeouts, and the classification of failures into retryable or not (``LLMError``).

litellm costs 3-5 s and ~170 MB to import, so it is imported on first use, only in the
processes that call models (agent actors, or the driver for ``Task.execute()``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ray_orch.core.errors import LLMError, ModelNotConfiguredError
from ray_orch.core.secrets import key_ref, resolve_key
from ray_orch.model import openai_http as _openai_http
from ray_orch.model.ratelimit.client import estimate_tokens, limited, strip_limit_keys
from ray_orch.model.streaming import achat_stream, litellm_stream
from ray_orch.model.telemetry import chat_span, record_reply

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["EMBEDDED", "NO_KEY", "LLMConfig", "LLMResult", "acomplete", "classify_error",
           "complete", "litellm_module", "takes_images", "traced_chat", "uses_litellm"]

# Marker model name: "use the embedded offline model"; resolved in the calling process,
# because the model server is per node.
EMBEDDED = "ray-orch/embedded"

_CLIENTS = frozenset({"auto", "litellm"})
# The key sent to an OpenAI-compatible server given without one (local servers need some).
NO_KEY = "sk-none"
_SECRET_KEYS = {"api_key", "apikey", "authorization", "token", "secret", "password"}
_litellm: ModuleType | None = None


def litellm_module() -> ModuleType:
    """litellm, imported once on first use (with its cost map read locally)."""
    global _litellm
    if _litellm is None:
        # Without this, importing litellm fetches a cost map from the internet.
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        litellm.drop_params = True
        try:  # litellm's first call imports ~470 openai modules; do it here, off its path
            import openai

            _ = openai.AsyncOpenAI(api_key="sk-warm-up",
                                   base_url="http://127.0.0.1:9/v1").chat.completions
        except Exception:
            pass
        _litellm = litellm
    return _litellm


@dataclass(frozen=True, kw_only=True)
class LLMConfig:
    """Which model to call and how.

    Args:
        model: a litellm model string (``"gpt-4o-mini"``, ``"openai/<name>"``,
            ``"anthropic/..."``, ``"ollama/..."``), or ``EMBEDDED``.
        base_url: the provider's base URL (``api_base`` in litellm).
        api_key: the key; never printed, checkpointed or put in metric labels.
        timeout: seconds per call.
        options: further litellm options (``temperature``, ``max_tokens``, ...).
        client: ``"auto"`` (default: OpenAI-compatible servers named by ``base_url`` are
            called over a lean HTTP client, everything else through litellm; see
            ``_openai_http``) or ``"litellm"`` (every call through ``litellm.acompletion``).
            The default comes from ``RAY_ORCH_LLM_CLIENT``.

    Example:
        >>> LLMConfig.from_spec({"model": "openai/stub", "base_url": "http://127.0.0.1:1/v1"}).model
        'openai/stub'
    """

    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 120.0
    options: dict[str, Any] = field(default_factory=dict)
    client: str = field(default_factory=lambda: os.environ.get("RAY_ORCH_LLM_CLIENT", "auto"))

    def __getstate__(self) -> dict[str, Any]:
        # Stored (a paused run's definition): the key as a reference, never its value.
        state = dict(self.__dict__)
        state["api_key"] = key_ref(self.api_key)
        if isinstance(self.options.get("api_key"), str):
            state["options"] = {**self.options, "api_key": key_ref(self.options["api_key"])}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state["api_key"] = resolve_key(state.get("api_key"))
        options = state.get("options") or {}
        if "api_key" in options:
            state["options"] = {**options, "api_key": resolve_key(options["api_key"])}
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def __post_init__(self) -> None:
        if self.client not in _CLIENTS:
            raise ModelNotConfiguredError(
                f"llm client {self.client!r} is not one of {sorted(_CLIENTS)} "
                "(RAY_ORCH_LLM_CLIENT or the 'client' llm option)", field="llm")

    @classmethod
    def from_spec(cls, spec: str | dict[str, Any] | LLMConfig, *, base_url: str | None = None,
                  api_key: str | None = None, timeout: float | None = None) -> LLMConfig:
        """Build a config from a model string or a dict of litellm options.

        Raises:
            ModelNotConfiguredError: the dict has no ``model``.
        """
        if isinstance(spec, LLMConfig):
            return spec
        if isinstance(spec, str):
            return cls(model=spec, base_url=base_url, api_key=api_key,
                       timeout=timeout or 120.0)
        opts = dict(spec)
        model = opts.pop("model", None)
        if not model:
            raise ModelNotConfiguredError(
                f"llm options {sorted(opts)} have no 'model'; give a litellm model string, "
                "e.g. {'model': 'gpt-4o-mini'}", field="llm")
        url = opts.pop("base_url", None) or opts.pop("api_base", None) or base_url
        key = opts.pop("api_key", None) or api_key
        tmo = opts.pop("timeout", None) or timeout or 120.0
        client = opts.pop("client", None) or os.environ.get("RAY_ORCH_LLM_CLIENT", "auto")
        return cls(model=model, base_url=url, api_key=key, timeout=float(tmo), options=opts,
                   client=client)

    def describe(self) -> dict[str, Any]:
        """The config without secrets (for hashes, checkpoints and logs)."""
        opts = {k: v for k, v in self.options.items() if k.lower() not in _SECRET_KEYS}
        return {"model": self.model, "base_url": self.base_url, "options": opts}


@dataclass(kw_only=True)
class LLMResult:
    """One model reply with its accounting."""

    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    duration_s: float = 0.0
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    """Tool calls the model asked for (OpenAI format: id, type, function name/arguments)."""
    response_model: str | None = None
    """The model as the server named it in its reply (None when it did not)."""
    response_id: str | None = None
    """The reply's id (``chatcmpl-...``), when the server gave one."""
    finish_reasons: list[str] = field(default_factory=list)
    """Why the answer ended, per choice (``stop``, ``tool_calls``, ``length``)."""

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _resolve(config: LLMConfig, opts: dict[str, Any] | None = None) -> LLMConfig:
    if config.model != EMBEDDED:
        return config
    if opts is None:
        from ray_orch.model.embedded import embedded_llm_options

        opts = embedded_llm_options()
    return LLMConfig(model=opts["model"], base_url=opts.get("api_base"),
                     api_key=opts.get("api_key"), timeout=config.timeout,
                     options=dict(config.options), client=config.client)


def takes_images(config: LLMConfig) -> bool:
    """Whether the model takes images: the ``supports_vision`` llm option when given,
    else litellm's model table.

    Example:
        >>> takes_images(LLMConfig(model="openai/stub", options={"supports_vision": True}))
        True
        >>> takes_images(LLMConfig(model="openai/stub"))
        False
    """
    given = config.options.get("supports_vision")
    if given is not None:
        return bool(given)
    return bool(_openai_http.model_info(config.model).get("supports_vision"))


def uses_litellm(config: LLMConfig) -> bool:
    """Whether calls with this config go through litellm (else the lean HTTP client)."""
    if config.model == EMBEDDED:
        return config.client == "litellm"
    return config.client == "litellm" or not _openai_http.eligible(
        config.model, config.base_url, strip_limit_keys(config.options))


def _request(config: LLMConfig, messages: list[dict[str, Any]],
             schema: type[BaseModel] | dict[str, Any] | None,
             timeout: float | None, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"model": config.model, "messages": messages,
                              "timeout": timeout or config.timeout, "num_retries": 0}
    if config.base_url:
        kwargs["api_base"] = config.base_url
    if config.api_key:
        kwargs["api_key"] = config.api_key
    elif config.base_url:
        # OpenAI-compatible local servers need some key; litellm refuses an empty one.
        kwargs["api_key"] = NO_KEY
    if schema is not None:
        kwargs["response_format"] = schema
    if tools:
        kwargs["tools"] = tools
    kwargs.update(strip_limit_keys(config.options))
    return kwargs


def _result(response: Any, config: LLMConfig, started: float) -> LLMResult:
    lib = litellm_module()
    try:
        text = response.choices[0].message.content or ""
        calls = _tool_calls_of(getattr(response.choices[0].message, "tool_calls", None))
    except (AttributeError, IndexError) as exc:
        raise LLMError(f"model {config.model} returned no message: {exc}",
                       retryable=True) from None
    usage = getattr(response, "usage", None)
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    # litellm already priced the call while logging it; pricing it again costs ~1 ms.
    hidden = getattr(response, "_hidden_params", None) or {}
    cost = hidden.get("response_cost")
    if cost is None:
        try:
            cost = lib.completion_cost(completion_response=response)
        except Exception:
            cost = 0.0  # unknown models (local, stub) have no price
    cost = float(cost or 0.0)
    finish = [str(c.finish_reason) for c in getattr(response, "choices", None) or []
              if getattr(c, "finish_reason", None)]
    return LLMResult(text=text, model=config.model, prompt_tokens=prompt,
                     completion_tokens=completion, cost_usd=cost,
                     duration_s=time.perf_counter() - started, tool_calls=calls,
                     response_model=getattr(response, "model", None) or None,
                     response_id=getattr(response, "id", None) or None, finish_reasons=finish)


def _tool_calls_of(calls: Any) -> list[dict[str, Any]]:
    """Tool calls of a reply message (dicts or litellm objects) as OpenAI-format dicts."""
    out: list[dict[str, Any]] = []
    for call in calls or []:
        get = call.get if isinstance(call, dict) else lambda k, c=call: getattr(c, k, None)
        function = get("function") or {}
        fget = function.get if isinstance(function, dict) else (
            lambda k, f=function: getattr(f, k, None))
        out.append({"id": str(get("id") or f"call_{len(out)}"), "type": "function",
                    "function": {"name": str(fget("name") or ""),
                                 "arguments": fget("arguments") or "{}"}})
    return out


async def acomplete(config: LLMConfig, messages: list[dict[str, Any]], *,
                    schema: type[BaseModel] | dict[str, Any] | None = None,
                    timeout: float | None = None,
                    on_token: Callable[[str], None] | None = None,
                    tools: list[dict[str, Any]] | None = None) -> LLMResult:
    """Call the model once, asynchronously.

    Args:
        config: the model to call.
        messages: OpenAI-style chat messages.
        schema: a pydantic model (or JSON-schema ``response_format`` dict) the reply
            must follow; the provider constrains the output where it can.
        timeout: seconds for this call (default: ``config.timeout``).
        on_token: when given, the answer is streamed (server-sent events) and each piece
            is handed to it as it arrives; the result is the same.
        tools: tools offered to the model (OpenAI ``tools`` format); the tool calls it
            asks for come back in ``LLMResult.tool_calls``.

    Returns:
        The reply text with tokens, cost and duration.

    Raises:
        LLMError: the call failed; ``retryable`` says whether to try again.

    Example:
        >>> import asyncio
        >>> from ray_orch.testing import StubLLMServer
        >>> with StubLLMServer(reply="hello") as stub:
        ...     config = LLMConfig(model=stub.model, base_url=stub.base_url)
        ...     result = asyncio.run(acomplete(config, [{"role": "user", "content": "hi"}]))
        >>> result.text
        'hello'
    """
    if config.model == EMBEDDED:
        from ray_orch.model.embedded import aembedded_llm_options

        config = _resolve(config, await aembedded_llm_options())
    lean = not uses_litellm(config)

    async def call() -> LLMResult:
        if lean:
            return await _acomplete_http(config, strip_limit_keys(config.options), messages,
                                         schema, timeout, on_token, tools)
        lib = litellm_module()
        started = time.perf_counter()
        try:
            request = _request(config, messages, schema, timeout, tools)
            response = await (lib.acompletion(**request) if on_token is None else
                              litellm_stream(lib, request, on_token))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise classify_error(exc, config.model) from None
        return _result(response, config, started)

    # Paced under the model's rpm / tpm and adaptive window; a direct call without limits.
    with chat_span(config.model, messages, base_url=config.base_url, options=config.options,
                   structured=schema is not None) as span:
        result = await limited(config, call,
                               tokens_estimate=estimate_tokens(messages, config.options))
        record_reply(span, model=result.response_model, response_id=result.response_id,
                     finish_reasons=result.finish_reasons, input_tokens=result.prompt_tokens,
                     output_tokens=result.completion_tokens, text=result.text,
                     tool_calls=result.tool_calls)
    return result


async def _acomplete_http(config: LLMConfig, options: dict[str, Any],
                          messages: list[dict[str, Any]],
                          schema: type[BaseModel] | dict[str, Any] | None,
                          timeout: float | None,
                          on_token: Callable[[str], None] | None = None,
                          tools: list[dict[str, Any]] | None = None) -> LLMResult:
    started = time.perf_counter()
    body: dict[str, Any] = {"model": config.model.split("/", 1)[1], "messages": messages,
                            **options}
    if schema is not None:
        body["response_format"] = _openai_http.response_format(schema)
    if tools:
        body["tools"] = tools
    if on_token is None:
        reply = await _openai_http.achat(config.model, config.base_url or "",
                                         config.api_key or NO_KEY, body,
                                         timeout or config.timeout)
    else:
        reply = await achat_stream(config.model, config.base_url or "",
                                   config.api_key or NO_KEY, body, timeout or config.timeout,
                                   on_token)
    try:
        message = reply["choices"][0]["message"]
        text = message.get("content") or ""
        calls = _tool_calls_of(message.get("tool_calls"))
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise LLMError(f"model {config.model} returned no message: {exc!r}",
                       retryable=True) from None
    usage = reply.get("usage") or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    price_in, price_out = _openai_http.prices(config.model)
    return LLMResult(text=str(text), model=config.model, prompt_tokens=prompt,
                     completion_tokens=completion,
                     cost_usd=prompt * price_in + completion * price_out,
                     duration_s=time.perf_counter() - started, tool_calls=calls,
                     **reply_identity(reply))


def reply_identity(reply: dict[str, Any]) -> dict[str, Any]:
    """``response_model``, ``response_id`` and ``finish_reasons`` of an OpenAI-style reply.

    Example:
        >>> reply_identity({"id": "c-1", "model": "m-2024", "choices": [
        ...     {"finish_reason": "stop"}]})["finish_reasons"]
        ['stop']
    """
    choices = reply.get("choices") or []
    return {"response_model": str(reply["model"]) if reply.get("model") else None,
            "response_id": str(reply["id"]) if reply.get("id") else None,
            "finish_reasons": [str(c["finish_reason"]) for c in choices
                               if isinstance(c, dict) and c.get("finish_reason")]}


def complete(config: LLMConfig, messages: list[dict[str, Any]], *,
             schema: type[BaseModel] | dict[str, Any] | None = None,
             timeout: float | None = None) -> LLMResult:
    """Call the model once, synchronously. Same contract as ``acomplete``."""
    config = _resolve(config)
    lib = litellm_module()
    started = time.perf_counter()
    try:
        response = lib.completion(**_request(config, messages, schema, timeout))
    except Exception as exc:
        raise classify_error(exc, config.model) from None
    return _result(response, config, started)


_RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}


def classify_error(exc: BaseException, model: str = "") -> LLMError:
    """Turn any provider failure into an ``LLMError`` that says whether to retry.

    Rate limits, timeouts, connection errors and 5xx are retryable; authentication,
    permission, bad requests and context-window overflows are not.
    """
    if isinstance(exc, LLMError):
        return exc
    lib = litellm_module()
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    retry_after = _retry_after(exc)
    not_retryable = (lib.AuthenticationError, lib.PermissionDeniedError, lib.NotFoundError,
                     lib.ContextWindowExceededError, lib.ContentPolicyViolationError,
                     lib.UnsupportedParamsError)
    if isinstance(exc, not_retryable):
        retryable = False
    elif isinstance(exc, (lib.RateLimitError, lib.Timeout, lib.APIConnectionError,
                          lib.InternalServerError, lib.ServiceUnavailableError,
                          lib.BadGatewayError)):
        retryable = True
    elif isinstance(exc, lib.BadRequestError):
        retryable = False
    elif isinstance(status, int):
        retryable = status in _RETRYABLE_STATUS or status >= 500
    else:
        # Unknown failures (a malformed body, a dropped connection) may pass on retry.
        retryable = True
    message = _redact(str(exc))
    return LLMError(f"{name} from model {model}: {message}", retryable=retryable,
                    status_code=status if isinstance(status, int) else None,
                    retry_after=retry_after)


def _retry_after(exc: BaseException) -> float | None:
    # litellm keeps the provider's real headers here; exc.response is a stand-in.
    for headers in (getattr(exc, "litellm_response_headers", None),
                    getattr(getattr(exc, "response", None), "headers", None)):
        seconds = _openai_http.retry_after_of(headers) if headers else None
        if seconds is not None:
            return seconds
    return None


def _redact(text: str) -> str:
    for name, value in os.environ.items():
        if value and len(value) >= 8 and name.upper().endswith(("_API_KEY", "_TOKEN", "_SECRET")):
            text = text.replace(value, "***")
    return text


def error_kind(exc: BaseException) -> str:
    """A bounded label for an attempt failure (used in metrics and events)."""
    if isinstance(exc, LLMError):
        if exc.status_code == 429:
            return "rate_limit"
        if exc.status_code is not None and exc.status_code >= 500:
            return "server"
        text = str(exc).lower()
        if "timeout" in text or "timed out" in text:
            return "timeout"
        return "llm"
    return "error"


async def traced_chat(config: LLMConfig, messages: list[dict[str, Any]],
                      call: Callable[[], Awaitable[dict[str, Any]]], *,
                      structured: bool = False) -> dict[str, Any]:
    """Run ``call`` (one OpenAI-style request, its reply as a dict) in a ``chat`` span
    with the reply's attributes (what a decision's own request uses)."""
    with chat_span(config.model, messages, base_url=config.base_url, options=config.options,
                   structured=structured) as span:
        reply = await call()
        if span is not None:
            ident = reply_identity(reply)
            usage = reply.get("usage") or {}
            message = ((reply.get("choices") or [{}])[0] or {}).get("message") or {}
            record_reply(span, model=ident["response_model"], response_id=ident["response_id"],
                         finish_reasons=ident["finish_reasons"],
                         input_tokens=int(usage.get("prompt_tokens") or 0),
                         output_tokens=int(usage.get("completion_tokens") or 0),
                         text=str(message.get("content") or ""),
                         tool_calls=_tool_calls_of(message.get("tool_calls")))
        return reply
