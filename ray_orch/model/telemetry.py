"""The span of a model call, after the OpenTelemetry GenAI semantic conventions.

Every model call (answers, tool-loop turns, decisions) is a ``chat {model}`` span of
kind CLIENT with ``gen_ai.provider.name``, ``gen_ai.request.model``, the request's
settings, ``server.address`` / ``server.port``, and from the reply
``gen_ai.response.model`` (as the server named it), ``gen_ai.response.id``,
``gen_ai.response.finish_reasons`` and token usage. With
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` the prompt and the answer
go in too, as ``gen_ai.system_instructions``, ``gen_ai.input.messages`` and
``gen_ai.output.messages`` in the conventions' ``{role, parts}`` form (tool calls and
tool results are parts). ``openinference.span.kind`` is ``LLM`` (Phoenix shows it).

Example:
    >>> input_messages([{"role": "system", "content": "Be brief."},
    ...                 {"role": "user", "content": "Hi"}])
    [{'role': 'user', 'parts': [{'type': 'text', 'content': 'Hi'}]}]
    >>> provider_name("anthropic/claude-3-5-haiku"), provider_name("openai/stub")
    ('anthropic', 'openai')
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from ray_orch.core import trace

__all__ = ["chat_span", "input_messages", "output_messages", "provider_name", "record_reply",
           "system_instructions"]

_MAX_CONTENT = 16_000
# litellm's provider prefixes -> the conventions' well-known gen_ai.provider.name values.
_PROVIDERS = {
    "openai": "openai", "hosted_vllm": "openai", "custom_openai": "openai",
    "text-completion-openai": "openai", "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference", "anthropic": "anthropic", "bedrock": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai", "gemini": "gcp.gemini", "mistral": "mistral_ai",
    "groq": "groq", "cohere": "cohere", "cohere_chat": "cohere", "deepseek": "deepseek",
    "xai": "x_ai", "perplexity": "perplexity", "watsonx": "ibm.watsonx.ai",
}
_REQUEST = {"temperature": "gen_ai.request.temperature", "top_p": "gen_ai.request.top_p",
            "max_tokens": "gen_ai.request.max_tokens", "seed": "gen_ai.request.seed",
            "max_completion_tokens": "gen_ai.request.max_tokens",
            "presence_penalty": "gen_ai.request.presence_penalty",
            "frequency_penalty": "gen_ai.request.frequency_penalty"}


def provider_name(model: str) -> str:
    """The ``gen_ai.provider.name`` of a litellm model string (OpenAI-compatible servers
    at a ``base_url`` speak OpenAI's API: ``openai``)."""
    if "/" in model:
        prefix = model.split("/", 1)[0]
        return _PROVIDERS.get(prefix, prefix)
    if model.startswith("claude"):
        return "anthropic"
    if model.startswith("gemini"):
        return "gcp.gemini"
    return "openai"


def _text(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}] if content else []
    parts: list[dict[str, Any]] = []
    for item in content if isinstance(content, list) else [content]:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text":
            parts.append({"type": "text", "content": str(item.get("text", ""))})
        elif kind == "image_url":
            url = str((item.get("image_url") or {}).get("url", ""))
            mime = url[5:url.find(";")] if url.startswith("data:") else None
            parts.append({"type": "blob", "modality": "image", "mime_type": mime,
                          "content": f"<{len(url)} characters, not recorded>"}
                         if url.startswith("data:") else
                         {"type": "uri", "modality": "image", "uri": url})
        else:
            parts.append({"type": "text", "content": json.dumps(item, default=str)})
    return parts


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _tool_call_parts(calls: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [{"type": "tool_call", "id": call.get("id"),
             "name": (call.get("function") or {}).get("name"),
             "arguments": _arguments((call.get("function") or {}).get("arguments"))}
            for call in calls or []]


def input_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages (OpenAI style) in the conventions' ``{role, parts}`` form, the
    system messages left out (``system_instructions`` holds them)."""
    out = []
    for message in messages:
        role = message.get("role")
        if role == "system":
            continue
        if role == "tool":
            parts = [{"type": "tool_call_response", "id": message.get("tool_call_id"),
                      "response": message.get("content")}]
        else:
            parts = _text(message.get("content")) + _tool_call_parts(message.get("tool_calls"))
        out.append({"role": role, "parts": parts})
    return out


def system_instructions(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The system messages' text parts."""
    return [part for m in messages if m.get("role") == "system"
            for part in _text(m.get("content"))]


def output_messages(text: str, tool_calls: list[dict[str, Any]] | None,
                    finish_reason: str | None) -> list[dict[str, Any]]:
    """The answer in the ``{role, parts, finish_reason}`` form."""
    return [{"role": "assistant", "parts": _text(text) + _tool_call_parts(tool_calls),
             "finish_reason": finish_reason or "stop"}]


def _dump(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)[:_MAX_CONTENT]


@contextlib.contextmanager
def chat_span(model: str, messages: list[dict[str, Any]], *, base_url: str | None = None,
              options: Mapping[str, Any] | None = None,
              structured: bool = False) -> Iterator[Any]:
    """The ``chat {model}`` span of one model call (None when tracing is off).

    Args:
        model: the configured (litellm) model string.
        messages: the request's chat messages.
        base_url: the server's base URL, if one was given.
        options: the request's options (temperature, max_tokens, ...).
        structured: the answer must follow a schema.
    """
    if not trace.enabled():
        yield None
        return
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider_name(model),
        "gen_ai.request.model": model, "openinference.span.kind": "LLM",
        "gen_ai.output.type": "json" if structured else None}
    if base_url:
        address = urlsplit(base_url)
        attributes["server.address"] = address.hostname
        attributes["server.port"] = address.port
    for key, name in _REQUEST.items():
        value = (options or {}).get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            attributes[name] = value
    if trace.content_recorded():
        attributes["gen_ai.input.messages"] = _dump(input_messages(messages))
        system = system_instructions(messages)
        if system:
            attributes["gen_ai.system_instructions"] = _dump(system)
    with trace.span(f"chat {model}", attributes, kind="client") as span:
        yield span


def record_reply(span: Any, *, model: str | None, response_id: str | None,
                 finish_reasons: list[str], input_tokens: int, output_tokens: int,
                 text: str = "", tool_calls: list[dict[str, Any]] | None = None) -> None:
    """The reply's attributes on a ``chat`` span (``span`` None: nothing)."""
    if span is None:
        return
    if model:
        span.set_attribute("gen_ai.response.model", model)
    if response_id:
        span.set_attribute("gen_ai.response.id", response_id)
    if finish_reasons:
        span.set_attribute("gen_ai.response.finish_reasons", list(finish_reasons))
    span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
    if trace.content_recorded():
        span.set_attribute("gen_ai.output.messages", _dump(output_messages(
            text, tool_calls, finish_reasons[0] if finish_reasons else None)))

