"""Decisions on hosted models: the provider's log-probabilities of the answer.

A decision asked of a model behind the lean OpenAI-compatible client (a ``base_url``
server: vLLM, llama.cpp, a proxy) asks for the answer's log-probabilities too, and
``key_scores`` turns those of the tokens that name a key into a score per key. The
route is still the key the answer names; the scores go to
``metadata["decision"]["scores"]``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ray_orch.core.errors import LLMError

__all__ = ["decide_hosted", "key_scores", "wants_logprobs"]


_TOP_LOGPROBS = 20


def wants_logprobs(agent: Any) -> bool:
    """Whether a decision by this agent can ask its provider for log-probabilities.

    True for an ``Agent`` whose calls take the lean OpenAI-compatible client (a
    ``base_url`` server: vLLM, llama.cpp, a proxy); litellm's providers are left as
    they are (not every one accepts ``logprobs``).
    """
    from ray_orch.model.client import EMBEDDED, uses_litellm
    from ray_orch.policy.agent import Agent

    if not isinstance(agent, Agent):
        return False
    config = agent.llm_config
    return config.model != EMBEDDED and not uses_litellm(config)


def key_scores(content: str, tokens: list[dict[str, Any]], route: str,
               keys: list[str]) -> dict[str, float]:
    """Each key's log-probability at the answer's route token, from ``top_logprobs``.

    Args:
        content: the answer text (``{"decision": "billing"}``); the tokens' own text
            is searched when there are tokens.
        tokens: the answer's ``logprobs.content`` (OpenAI shape: ``token``,
            ``logprob``, ``top_logprobs``).
        route: the key the answer names.
        keys: the condition's keys.

    Returns:
        ``{key: log-probability}`` for the keys whose first token is among the
        provider's alternatives at that position, or is the token chosen there (others
        are absent); ``{}`` when the
        route cannot be found in the tokens.

    Example:
        >>> toks = [{"token": '{"decision": "', "logprob": 0.0, "top_logprobs": []},
        ...         {"token": "bill", "logprob": -0.1, "top_logprobs": [
        ...             {"token": "bill", "logprob": -0.1}, {"token": "tech", "logprob": -2.5}]},
        ...         {"token": 'ing"}', "logprob": 0.0, "top_logprobs": []}]
        >>> key_scores('{"decision": "billing"}', toks, "billing", ["technical", "billing"])
        {'billing': -0.1, 'technical': -2.5}
    """
    # The tokens, not the content: a server may strip what the model wrapped the JSON in.
    content = "".join(str(token.get("token", "")) for token in tokens) or content
    marker = content.find('"decision"')
    offset = content.find(route, marker + 1 if marker >= 0 else 0)
    if offset < 0:
        return {}
    start = 0
    for token in tokens:
        text = str(token.get("token", ""))
        if start + len(text) > offset:
            break
        start += len(text)
    else:
        return {}
    lead = content[start:offset]
    scores: dict[str, float] = {}
    # The token chosen may be missing from the alternatives (a schema forced it).
    chosen = {"token": token.get("token", ""), "logprob": token.get("logprob")}
    for alternative in [*(token.get("top_logprobs") or []), chosen]:
        text = str(alternative.get("token", ""))
        if not text.startswith(lead):
            continue
        rest = text[len(lead):]
        if not rest:
            continue
        for key in keys:
            if key.startswith(rest) or rest.startswith(key):
                value = float(alternative.get("logprob", float("-inf")))
                scores[key] = max(scores.get(key, value), value)
    return {key: round(scores[key], 4) for key in sorted(scores)}


async def decide_hosted(agent: Any, task: Any, prompt: str, schema: Any,
                        calls: list[dict[str, Any]]) -> tuple[str, str | None]:
    """A decision on a hosted OpenAI-compatible model, asking for log-probabilities.

    The request is the usual constrained decision call plus ``logprobs`` /
    ``top_logprobs``; the answer is returned as ``{"decision": ..., "scores": ...}``
    JSON when the provider gave log-probabilities, else as it came.

    Raises:
        LLMError: the call failed.
    """
    from ray_orch.core.routing import match_route, route_keys
    from ray_orch.model import openai_http as _openai_http
    from ray_orch.model.client import NO_KEY, traced_chat  # traced_chat: its chat span
    from ray_orch.model.ratelimit.client import estimate_tokens, limited, strip_limit_keys

    config = agent.llm_config
    messages = agent.messages(prompt)
    options = strip_limit_keys(config.options)
    body: dict[str, Any] = {"model": config.model.split("/", 1)[1], "messages": messages,
                            **options, "logprobs": True, "top_logprobs": _TOP_LOGPROBS}
    if schema is not None:
        body["response_format"] = _openai_http.response_format(schema)
    started = time.perf_counter()

    async def call() -> dict[str, Any]:
        return await _openai_http.achat(config.model, config.base_url or "",
                                        config.api_key or NO_KEY, dict(body),
                                        config.timeout)

    estimate = estimate_tokens(messages, config.options)
    try:
        try:
            reply = await traced_chat(config, messages, lambda: limited(
                config, call, tokens_estimate=estimate), structured=schema is not None)
        except LLMError as exc:
            if exc.status_code not in (400, 422):
                raise
            # A server that refuses log-probabilities still gets its decision asked.
            body.pop("logprobs", None)
            body.pop("top_logprobs", None)
            reply = await traced_chat(config, messages, lambda: limited(
                config, call, tokens_estimate=estimate), structured=schema is not None)
    except LLMError:
        calls.append({"model": config.model, "duration_s": time.perf_counter() - started,
                      "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0,
                      "outcome": "llm"})
        raise
    try:
        choice = reply["choices"][0]
        text = str(choice["message"]["content"] or "")
    except (KeyError, IndexError, TypeError) as exc:
        raise LLMError(f"model {config.model} returned no message: {exc!r}",
                       retryable=True) from None
    usage = reply.get("usage") or {}
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    completion_tokens = int(usage.get("completion_tokens") or 0)
    price_in, price_out = _openai_http.prices(config.model)
    calls.append({"model": config.model, "duration_s": time.perf_counter() - started,
                  "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "cost_usd": prompt_tokens * price_in + completion_tokens * price_out,
                  "outcome": "success"})
    condition = task.condition or {}
    route = match_route(text, condition)
    tokens = ((choice.get("logprobs") or {}).get("content") or []) if isinstance(
        choice, dict) else []
    if route is None or not tokens:
        return text, config.model
    scores = key_scores(text, tokens, route, route_keys(condition))
    if not scores:
        return text, config.model
    return json.dumps({"decision": route, "scores": scores}), config.model
