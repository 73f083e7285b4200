"""Streamed model calls: server-sent events, each content delta handed to ``on_token`` as
it arrives, the whole reply returned as a non-streamed call returns it.

Both clients stream: the lean client reads the SSE body itself; litellm's
``acompletion(stream=True)`` yields chunks that ``stream_chunk_builder`` puts back
together. Structured outputs stream their raw JSON; the caller parses the whole reply.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from ray_orch.core.errors import LLMError

__all__ = ["OnToken", "achat_stream", "litellm_stream"]

OnToken = Callable[[str], None]


async def achat_stream(model: str, base_url: str, api_key: str | None, body: dict[str, Any],
                       timeout: float, on_token: OnToken) -> dict[str, Any]:
    """POST one chat completion with ``stream: true``; deltas go to ``on_token``.

    Returns:
        The reply in the non-streamed shape (``choices[0].message.content``, ``usage``),
        so the caller treats both alike.

    Raises:
        LLMError: as ``openai_http.achat`` (status, timeout, connection, a broken stream).
    """
    import aiohttp

    from ray_orch.model.openai_http import (
        STATUS_ERRORS,
        api_error,
        message_of,
        retry_after_of,
        shared_session,
        transport_error,
    )

    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    headers.update(body.pop("extra_headers", None) or {})
    body.update(body.pop("extra_body", None) or {})
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    parts: list[str] = []
    calls: dict[int, dict[str, Any]] = {}  # tool calls, their arguments arriving in pieces
    usage: dict[str, Any] = {}
    ident: dict[str, Any] = {}  # the reply's id and model, as its chunks name them
    finish = None
    try:
        async with (await shared_session()).post(url, json=body, headers=headers,
                                           timeout=aiohttp.ClientTimeout(total=timeout)
                                           ) as response:
            if response.status >= 400:
                raw = await response.read()
                name, retryable = STATUS_ERRORS.get(response.status,
                                              ("APIError", response.status >= 500))
                raise api_error(name, model, f"{response.status} {message_of(raw)}",
                             status=response.status, retryable=retryable,
                             retry_after=retry_after_of(response.headers))
            async for line in response.content:
                chunk = _chunk_of(line, model)
                if chunk is None:
                    continue
                usage = chunk.get("usage") or usage
                ident = {k: chunk[k] for k in ("id", "model") if chunk.get(k)} or ident
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    text = delta.get("content")
                    if text:
                        parts.append(text)
                        on_token(text)
                    for piece in delta.get("tool_calls") or []:
                        _add_call_piece(calls, piece)
                    finish = choice.get("finish_reason") or finish
    except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
        raise transport_error(exc, model, timeout) from None
    message: dict[str, Any] = {"role": "assistant", "content": "".join(parts)}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return {"choices": [{"message": message, "finish_reason": finish}], "usage": usage,
            **ident}


def _add_call_piece(calls: dict[int, dict[str, Any]], piece: dict[str, Any]) -> None:
    """Merge one streamed piece of a tool call (OpenAI sends the name once and the
    arguments as a string in pieces, keyed by ``index``)."""
    call = calls.setdefault(int(piece.get("index", len(calls))),
                            {"id": "", "type": "function",
                             "function": {"name": "", "arguments": ""}})
    call["id"] = piece.get("id") or call["id"]
    function = piece.get("function") or {}
    call["function"]["name"] += function.get("name") or ""
    call["function"]["arguments"] += function.get("arguments") or ""


def _chunk_of(line: bytes, model: str) -> dict[str, Any] | None:
    text = line.decode("utf-8", errors="replace").strip()
    if not text.startswith("data:"):
        return None
    data = text[5:].strip()
    if data == "[DONE]":
        return None
    try:
        chunk = json.loads(data)
    except ValueError:
        raise LLMError(f"model {model} sent a stream chunk that is not JSON: {data[:200]!r}",
                       retryable=True) from None
    return chunk if isinstance(chunk, dict) else None


async def litellm_stream(lib: Any, request: dict[str, Any], on_token: OnToken) -> Any:
    """``litellm.acompletion(stream=True)``; deltas go to ``on_token``; returns the
    rebuilt whole response (usage included)."""
    stream = await lib.acompletion(**request, stream=True,
                                   stream_options={"include_usage": True})
    chunks = []
    async for chunk in stream:
        chunks.append(chunk)
        for choice in getattr(chunk, "choices", None) or []:
            text = getattr(getattr(choice, "delta", None), "content", None)
            if text:
                on_token(text)
    return lib.stream_chunk_builder(chunks, messages=request.get("messages"))
