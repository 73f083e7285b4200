"""Decisions on the embedded default: every route scored by meaning, none generated.

A 135M model asked to *write* one of a condition's keys mostly writes the first one it
was shown (measured: 2 of 8 inquiries routed right). Here no model writes the route.
Every key is scored and the highest score wins (``decide.best_route``); the scores go
to ``metadata["decision"]["scores"]``. What is scored, the message and each key's
description, is ``decide.py``'s.

**By meaning (the default; ``score_by_meaning``).** The message and what each key means
are embedded by the sentence encoder (all-MiniLM-L6-v2, ``ray_orch.model.sentence``);
a key's score is the cosine similarity of the message with

- the key's description: the text the decision gives for it (``"billing: a payment,
  charge, invoice or refund (a receipt, a price, ...)"``, also ``billing - ...``,
  ``billing = ...``), else the key's words and what its route leads to (its targets'
  agents' goals, ``describe_routes``, set on the task when the graph is built); and
- for keys the route glossary knows (``ray_orch.policy.route_examples``: common triage
  keys such as ``technical``, ``billing``, ``complex``, ``simple``, with about 80-150
  example messages each), the mean of the three nearest example messages.

The two are averaged ``1 : 0.5`` (examples : the decision's own description) or
``1 : 0.25`` when the description is only derived from the key's words and targets.

**By likelihood (the fallback when the sentence model is not installed;
``score_routes``/``score_described``).** The embedded language model scores how likely
each key's description (its *gloss*) is as the continuation of::

    Message: "<the inquiry>"
    The message is about

as the pointwise mutual information per token: the log-probability of the gloss after
the message, minus its log-probability after a content-free message (``"N/A"``),
divided by the gloss's token count.

Both score every key on its own, in sorted key order, and nothing depends on the order
of the condition's keys, so shuffling them cannot change the choice. Ties go to the
first key in sorted order.

Measured on ``benchmarks/decision_set.py`` and ``benchmarks/decision_sets.json`` (see
``docs/EMBEDDED.md``).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from ray_orch.core.errors import LLMError
from ray_orch.policy.decide import best_route, key_words, route_glosses, subject_of

__all__ = ["DERIVED_WEIGHT", "DESCRIPTION_WEIGHT", "NEUTRAL", "TOP_EXAMPLES", "decide_locally",
           "score_by_meaning", "score_described", "score_routes", "uses_local_decisions"]

#: The content-free message whose scores calibrate every route (contextual calibration).
NEUTRAL = "N/A"
_TEMPLATE = 'Message: "{subject}"\nThe message is about'
#: The framing for routes described only by their key and the tasks they lead to.
_TEMPLATE_PLAIN = 'Customer message: "{subject}"\nThis is a'
_neutral_cache: dict[tuple[str, str, str], float] = {}
_token_cache: dict[str, list[int]] = {}


# -- scoring over llama.cpp's native endpoints ------------------------------------------

async def _post(address: str, path: str, body: dict[str, Any], timeout: float) -> Any:
    import aiohttp

    from ray_orch.model.openai_http import shared_session

    try:
        async with (await shared_session()).post(
                f"{address}{path}", json=body,
                timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            raw = await response.read()
            if response.status >= 400:
                raise LLMError(f"the embedded model answered {response.status} on {path}: "
                               f"{raw[:300]!r}", retryable=response.status >= 500,
                               status_code=response.status)
    except asyncio.TimeoutError:
        raise LLMError(f"the embedded model did not answer {path} within {timeout:g} s",
                       retryable=True, status_code=408) from None
    except aiohttp.ClientError as exc:
        raise LLMError(f"the embedded model at {address} is unreachable: {exc}",
                       retryable=True) from None
    return json.loads(raw)


async def _tokens(address: str, text: str, timeout: float) -> list[int]:
    cached = _token_cache.get(text)
    if cached is None:
        reply = await _post(address, "/tokenize", {"content": text, "add_special": False},
                            timeout)
        cached = [int(t) for t in reply["tokens"]]
        if len(_token_cache) < 4096:
            _token_cache[text] = cached
    return cached


async def _logprob(address: str, prompt: str, continuation: list[int],
                   timeout: float) -> float:
    """The summed log-probability of ``continuation`` (token ids) after ``prompt``."""
    grammar = "root ::= " + " ".join(f"<[{token}]>" for token in continuation)
    body = {"prompt": prompt, "n_predict": len(continuation), "n_probs": 1,
            "grammar": grammar, "temperature": 0.0, "samplers": [], "cache_prompt": True}
    reply = await _post(address, "/completion", body, timeout)
    probs = reply.get("completion_probabilities") or []
    if len(probs) != len(continuation):
        raise LLMError(f"the embedded model scored {len(probs)} of {len(continuation)} "
                       "tokens", retryable=True)
    # Each generated token's logprob comes from the raw logits, before the grammar that
    # forces it: the model's own probability of that token.
    return float(sum(p["logprob"] for p in probs))


async def score_routes(address: str, subject: str, glosses: dict[str, str], *,
                       timeout: float = 60.0, template: str = _TEMPLATE) -> dict[str, float]:
    """Score every route for a subject (higher is likelier); see the module docstring.

    Args:
        address: the llama.cpp server, ``http://127.0.0.1:<port>`` (no ``/v1``).
        subject: the text the decision is about.
        glosses: ``{key: description}`` of every route.
        timeout: seconds per request.
        template: the framing, with a ``{subject}`` placeholder.

    Returns:
        ``{key: pointwise mutual information per token}``, keys in sorted order.

    Raises:
        LLMError: the server failed or is unreachable.
    """
    keys = sorted(glosses)
    tokens = [await _tokens(address, " " + glosses[key], timeout) for key in keys]
    prompt = template.format(subject=subject)
    neutral_prompt = template.format(subject=NEUTRAL)
    missing = [(key, toks) for key, toks in zip(keys, tokens, strict=True)
               if (address, template, glosses[key]) not in _neutral_cache]
    if missing:
        priors = await asyncio.gather(*(_logprob(address, neutral_prompt, toks, timeout)
                                        for _, toks in missing))
        for (key, _), prior in zip(missing, priors, strict=True):
            _neutral_cache[(address, template, glosses[key])] = prior
    given = await asyncio.gather(*(_logprob(address, prompt, toks, timeout)
                                   for toks in tokens))
    return {key: round((lp - _neutral_cache[(address, template, glosses[key])])
                       / max(1, len(toks)), 4)
            for key, lp, toks in zip(keys, given, tokens, strict=True)}


async def score_described(address: str, subject: str, glosses: dict[str, str],
                          described: dict[str, str], *,
                          timeout: float = 60.0) -> dict[str, float]:
    """Score routes; when the text describes none, add what the routes lead to.

    A decision whose text describes its keys is scored on those descriptions alone,
    without any examples they give in parentheses.
    One that does not (only the key's own words) is scored twice under a plainer
    framing: on the keys' words and on ``described`` (what each route leads to, see
    ``describe_routes``); the two scores are summed per key.

    Args:
        address: the llama.cpp server.
        subject: the text the decision is about.
        glosses: ``route_glosses`` of the decision.
        described: ``{key: text}`` from the tasks each route leads to (may be empty).
        timeout: seconds per request.

    Returns:
        ``{key: score}``, keys in sorted order.
    """
    # Examples in parentheses are for the sentence encoder: scored here they dilute the
    # per-token score and cost a forced token each (measured: 15/24 and 1.7 s a decision
    # on the demo's descriptions with them, 19/24 and 0.6 s without).
    glosses = {key: re.sub(r"\s*\([^)]*\)", "", gloss).strip() or gloss
               for key, gloss in glosses.items()}
    plain = all(gloss == key_words(key) for key, gloss in glosses.items())
    if not plain or not all(key in described for key in glosses):
        return await score_routes(address, subject, glosses, timeout=timeout)
    targets = {key: described[key] for key in glosses}
    by_words, by_targets = await asyncio.gather(
        score_routes(address, subject, glosses, timeout=timeout, template=_TEMPLATE_PLAIN),
        score_routes(address, subject, targets, timeout=timeout, template=_TEMPLATE_PLAIN))
    return {key: round(by_words[key] + by_targets[key], 4) for key in sorted(glosses)}


# -- scoring by meaning: the embedded sentence encoder ----------------------------------

#: How much a key's description counts beside its examples, when the decision's text
#: describes the key, and when the description is only its words and targets (measured:
#: see docs/EMBEDDED.md).
DESCRIPTION_WEIGHT = 0.5
DERIVED_WEIGHT = 0.25
#: Nearest examples averaged per key.
TOP_EXAMPLES = 3


def _key_text(key: str, gloss: str, described: dict[str, str]) -> str:
    """What a key means, in words: its description, else its words and its targets."""
    words = key_words(key)
    if gloss != words:
        return f"{words}: {gloss}"
    target = described.get(key)
    return f"{words}: {target}" if target else words


def score_by_meaning(subject: str, glosses: dict[str, str],
                     described: dict[str, str] | None = None,
                     examples: dict[str, tuple[str, ...]] | None = None) -> dict[str, float]:
    """Score every route by the meaning of the message (sentence embeddings).

    Each key's score is the cosine similarity of the message with what the key means:
    its description (the decision's text, else the key's words and what its route leads
    to), and, for keys the route glossary knows (``route_examples``), the mean of the
    ``TOP_EXAMPLES`` most similar example messages, weighted ``1 : DESCRIPTION_WEIGHT``
    against a description the decision's text gives (``1 : DERIVED_WEIGHT`` against one
    made of the key's words and targets). Keys are scored one by one, in sorted order:
    the order of a condition's keys cannot change a score.

    Args:
        subject: the text the decision is about.
        glosses: ``route_glosses`` of the decision.
        described: ``{key: text}`` from the tasks each route leads to.
        examples: ``{key: example messages}``.

    Returns:
        ``{key: score}`` (cosine similarities, -1..1), keys in sorted order.

    Raises:
        ModelNotConfiguredError: the sentence model is not installed.

    Example:
        >>> scores = score_by_meaning("You charged my card twice.",
        ...                           {"billing": "billing", "technical": "technical"})
        >>> max(scores, key=scores.get)
        'billing'
    """
    from ray_orch.model.sentence import encoder
    from ray_orch.policy.route_examples import preload_vectors

    enc = encoder()
    described = described or {}
    examples = examples or {}
    if examples:
        preload_vectors(enc)
    message = enc.encode([subject])[0]
    scores: dict[str, float] = {}
    for key in sorted(glosses):
        meaning = float(enc.encode([_key_text(key, glosses[key], described)])[0] @ message)
        shown = examples.get(key)
        if shown:
            sims = sorted((enc.encode(list(shown)) @ message).tolist(), reverse=True)
            nearest = sum(sims[:TOP_EXAMPLES]) / min(TOP_EXAMPLES, len(sims))
            weight = (DESCRIPTION_WEIGHT if glosses[key] != key_words(key) else DERIVED_WEIGHT)
            meaning = (nearest + weight * meaning) / (1.0 + weight)
        scores[key] = round(meaning, 4)
    return scores


def uses_local_decisions(agent: Any) -> bool:
    """Whether this agent's decisions are scored here: an Agent on the embedded model."""
    from ray_orch.model.client import EMBEDDED
    from ray_orch.policy.agent import Agent

    if not isinstance(agent, Agent):
        return False
    return agent.llm_config.model == EMBEDDED


async def decide_locally(agent: Any, task: Any, parts: Any,
                         calls: list[dict[str, Any]]) -> tuple[str, str | None]:
    """Choose a decision's route on the embedded default by scoring every key.

    With the sentence model installed (the README's install has it) the keys are scored
    by meaning (``score_by_meaning``: the message against each key's description and,
    for keys the route glossary knows, its example messages); without it, by the
    likelihood the embedded language model gives each key's description
    (``score_described``).

    Args:
        agent: an ``Agent`` on the embedded model (see ``uses_local_decisions``).
        task: the decision task (its ``condition`` and description).
        parts: the prompt parts of this attempt (description, context).
        calls: the attempt's call log; one record is added.

    Returns:
        ``(answer, model)``: the answer is ``{"decision": key, "scores": {...}}`` JSON,
        which ``_routing.match_route`` reads like any model's answer.

    Raises:
        LLMError: the embedded model failed.
    """
    from ray_orch.core.routing import route_keys
    from ray_orch.model.client import error_kind
    from ray_orch.model.sentence import MODEL_NAME, sentence_model_available
    from ray_orch.policy.route_examples import examples_for

    keys = route_keys(task.condition or {})
    glosses = route_glosses(parts.description, keys)
    subject = subject_of(parts.description, glosses,
                         "\n".join(item.text for item in parts.context))
    described = getattr(task, "_route_descriptions", None) or {}
    started = time.perf_counter()
    model = MODEL_NAME
    if not subject.strip():
        # Nothing to decide on: no route is chosen (the default route when the condition
        # has one, else a DecisionError that says why).
        return json.dumps({"decision": None, "scores": {},
                           "reason": "the decision's description and context hold no "
                                     "message besides its keys' descriptions"}), model
    try:
        if sentence_model_available():
            scores = await asyncio.to_thread(score_by_meaning, subject, glosses, described,
                                             examples_for(keys))
        else:
            from ray_orch.model.embedded import aembedded_llm_options

            options = await aembedded_llm_options()
            model = options["model"]
            address = options["api_base"].rstrip("/").removesuffix("/v1")
            scores = await score_described(address, subject, glosses, described,
                                           timeout=agent.llm_config.timeout)
    except Exception as exc:
        calls.append({"model": model, "duration_s": time.perf_counter() - started,
                      "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0,
                      "outcome": error_kind(exc)})
        raise
    route = best_route(scores)
    calls.append({"model": model, "duration_s": time.perf_counter() - started,
                  "prompt_tokens": len(subject) // 4, "completion_tokens": 0,
                  "cost_usd": 0.0, "outcome": "success"})
    return json.dumps({"decision": route, "scores": scores}), model
