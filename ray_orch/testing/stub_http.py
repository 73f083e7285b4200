"""The OpenAI chat-completions wire format, as the stub server speaks it.

Reading a request's prompt, and building the answers: a completion, a streamed
completion (server-sent events) and an error envelope with OpenAI's ``type`` and
``code`` (litellm maps errors by them).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from ray_orch.testing.stub_rules import StubRequest

__all__ = ["completion_body", "error_response", "prompt_text", "stream_response"]

_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
    504: ("server_error", "timeout"),
}


def prompt_text(messages: list[Any]) -> str:
    """The text of every message (multimodal text parts included), one per line."""
    parts: list[str] = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):  # multimodal parts
            parts.extend(p.get("text", "") for p in content
                         if isinstance(p, dict) and isinstance(p.get("text"), str))
    return "\n".join(parts)


def error_response(status: int, message: str, *, retry_after: float | None = None) -> web.Response:
    """An OpenAI error envelope; ``retry_after`` sets ``Retry-After`` and ``retry-after-ms``."""
    kind, code = _ERRORS.get(status, ("server_error", None))
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}" if retry_after >= 1 else f"{retry_after:.3f}"
        headers["retry-after-ms"] = str(int(retry_after * 1000))
    return web.json_response({"error": {"message": message, "type": kind, "param": None,
                                        "code": code}}, status=status, headers=headers)


def _usage(record: StubRequest, content: str) -> dict[str, int]:
    prompt, completion = len(record.prompt.split()), len(content.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def completion_body(record: StubRequest, content: str) -> dict[str, Any]:
    """A ``chat.completion`` body answering ``record`` with ``content`` (and usage)."""
    return {"id": f"chatcmpl-stub-{record.index}", "object": "chat.completion",
            "created": int(record.t_start), "model": record.model or "stub",
            "system_fingerprint": "stub",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content}}],
            "usage": _usage(record, content)}


async def stream_response(request: web.Request, record: StubRequest, content: str,
                          interval: float = 0.0) -> web.StreamResponse:
    """Send ``content`` as a streamed completion: a content chunk a word (``interval``
    seconds apart, each write's time in ``record.chunk_times``), a stop chunk, usage if
    asked for (``stream_options.include_usage``), then ``[DONE]``."""
    head = {"id": f"chatcmpl-stub-{record.index}", "object": "chat.completion.chunk",
            "created": int(record.t_start), "model": record.model or "stub"}
    pieces = re.findall(r"\S+\s*|\s+", content) or [""]
    response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream",
                                                       "Cache-Control": "no-cache"})
    record.status = 200
    await response.prepare(request)
    for index, piece in enumerate(pieces):
        if index and interval:
            await asyncio.sleep(interval)
        delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
        chunk = {**head, "choices": [{"index": 0, "finish_reason": None, "delta": delta}]}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        record.chunk_times.append(time.time())
    tail: list[dict[str, Any]] = [
        {**head, "choices": [{"index": 0, "finish_reason": "stop", "delta": {}}]}]
    if (record.body.get("stream_options") or {}).get("include_usage"):
        tail.append({**head, "choices": [], "usage": _usage(record, content)})
    payload = "".join(f"data: {json.dumps(c)}\n\n" for c in tail) + "data: [DONE]\n\n"
    await response.write(payload.encode())
    await response.write_eof()
    return response


async def stream_tool_calls(request: web.Request, record: StubRequest,
                            body: dict[str, Any]) -> web.StreamResponse:
    """Send a ``tool_calls_body`` as a streamed completion: the calls in one delta (with
    their ``index``), a ``tool_calls`` stop chunk, usage if asked for, then ``[DONE]``."""
    message = body["choices"][0]["message"]
    head = {"id": body["id"], "object": "chat.completion.chunk", "created": body["created"],
            "model": body["model"]}
    delta = {"role": "assistant", "content": message.get("content"),
             "tool_calls": [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]}
    chunks: list[dict[str, Any]] = [
        {**head, "choices": [{"index": 0, "finish_reason": None, "delta": delta}]},
        {**head, "choices": [{"index": 0, "finish_reason": "tool_calls", "delta": {}}]}]
    if (record.body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**head, "choices": [], "usage": body.get("usage")})
    response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream",
                                                       "Cache-Control": "no-cache"})
    record.status = 200
    await response.prepare(request)
    payload = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    await response.write(payload.encode())
    await response.write_eof()
    return response


def tool_calls_body(record: StubRequest, reply: dict[str, Any]) -> dict[str, Any]:
    """A ``chat.completion`` whose message asks for tool calls.

    ``reply["tool_calls"]`` items are ``{"name": ..., "arguments": {...} | "json"}`` (an
    ``"id"`` is optional) or already in OpenAI's ``{"id", "type", "function"}`` shape.
    """
    calls = []
    for i, item in enumerate(reply.get("tool_calls") or []):
        function = item.get("function", item)
        arguments = function.get("arguments", {})
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        calls.append({"id": item.get("id") or f"call_{record.index}_{i}", "type": "function",
                      "function": {"name": function.get("name", ""), "arguments": arguments}})
    content = reply.get("content")
    body = completion_body(record, content or "")
    choice = body["choices"][0]
    choice["finish_reason"] = "tool_calls"
    choice["message"] = {"role": "assistant", "content": content, "tool_calls": calls}
    return body
