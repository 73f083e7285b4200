"""Decisions on the embedded default: every route scored by meaning, none generated.

A 135M model asked to *write* one of a condition's keys mostly writes the first one it
was shown (measured: 2 of 8 inquiries routed right). Here no model writes the route.
Every key is scored and the highest score wins; the scores go to
``metadata["decision"]["scores"]``.

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

The message scored is the message, not the instruction around it (``subject_of``): the
quoted text when the description is mostly a quotation (``'Categorize this inquiry:
"..."'``), else the description without its key descriptions and without a short
leading instruction ending in a colon, followed by the context from previous tasks (the
context alone when the description is only a short instruction).

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

__all__ = ["Decision", "best_route", "decide_hosted", "decide_locally", "describe_routes",
           "key_scores", "route_glosses", "score_by_meaning", "score_described",
           "score_routes", "subject_of", "uses_local_decisions", "wants_logprobs"]

#: The content-free message whose scores calibrate every route (contextual calibration).
NEUTRAL = "N/A"
_TEMPLATE = 'Message: "{subject}"\nThe message is about'
#: The framing for routes described only by their key and the tasks they lead to.
_TEMPLATE_PLAIN = 'Customer message: "{subject}"\nThis is a'
_MAX_SUBJECT = 600  # characters scored; a decision needs the gist, not a whole document
_QUOTED = re.compile(r'"([^"]{8,})"|“([^”]{8,})”|\'([^\']{8,})\'')
_neutral_cache: dict[tuple[str, str, str], float] = {}
_token_cache: dict[str, list[int]] = {}


class Decision(str):
    """The route a decision took, with the score of every key.

    It is the route's key as a ``str`` (so ``metadata["decision"] == "billing"`` and
    routing by it work as before) that also reads as the mapping
    ``{"route": key, "scores": {key: score}}``: ``d["route"]``, ``d["scores"]``,
    ``d.get(...)``, ``d.as_dict()``. ``scores`` is empty when the model gave none (a
    provider without log-probabilities). Saved to JSON (checkpoints, caches) it is the
    plain key.

    Example:
        >>> d = Decision("billing", scores={"billing": 1.2, "technical": -0.3})
        >>> d == "billing", d["route"], d["scores"]["technical"]
        (True, 'billing', -0.3)
    """

    scores: dict[str, float]

    def __new__(cls, route: str, *, scores: dict[str, float] | None = None) -> Decision:
        self = super().__new__(cls, route)
        self.scores = dict(scores or {})
        return self

    def __getnewargs_ex__(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (str(self),), {"scores": self.scores}

    @property
    def route(self) -> str:
        """The chosen key."""
        return str(self)

    def as_dict(self) -> dict[str, Any]:
        """``{"route": key, "scores": {key: score}}``."""
        return {"route": str(self), "scores": dict(self.scores)}

    def __getitem__(self, item: Any) -> Any:  # type: ignore[override]
        if item == "route":
            return str(self)
        if item == "scores":
            return self.scores
        return super().__getitem__(item)

    def get(self, item: str, default: Any = None) -> Any:
        """``as_dict().get(item, default)``."""
        return self.as_dict().get(item, default)

    def keys(self) -> list[str]:
        """``["route", "scores"]``."""
        return ["route", "scores"]


def decision_value(route: str, answer: str) -> Decision:
    """The ``metadata["decision"]`` of a route, with scores when the answer carries them.

    Args:
        route: the key chosen.
        answer: the model's answer; a JSON object with a ``"scores"`` mapping gives them.
    """
    try:
        data = json.loads(answer)
    except (TypeError, ValueError):
        data = None
    scores = data.get("scores") if isinstance(data, dict) else None
    if isinstance(scores, dict):
        clean = {str(k): float(v) for k, v in scores.items() if isinstance(v, (int, float))}
        return Decision(route, scores=clean)
    return Decision(route)


def best_route(scores: dict[str, float]) -> str:
    """The key with the highest score; a tie goes to the first key in sorted order.

    Example:
        >>> best_route({"simple": 0.2, "billing": 0.5, "technical": 0.5})
        'billing'
    """
    return max(sorted(scores), key=lambda key: scores[key])


# -- what is scored ----------------------------------------------------------------------

def _words(key: str) -> str:
    return re.sub(r"[_\-]+", " ", key).strip()


def route_glosses(description: str, keys: list[str]) -> dict[str, str]:
    """A short description of each key: the one the text gives, else the key's words.

    Args:
        description: the decision task's description.
        keys: the condition's keys (without the default route).

    Returns:
        ``{key: gloss}``.

    Example:
        >>> route_glosses("billing: payments, refunds; simple: a quick question.",
        ...               ["simple", "billing", "needs_escalation"])
        {'simple': 'a quick question', 'billing': 'payments, refunds', 'needs_escalation': 'needs escalation'}
    """
    names = sorted({v for k in keys for v in (k, _words(k))}, key=len, reverse=True)
    alternatives = "|".join(re.escape(n) for n in names)
    glosses: dict[str, str] = {}
    for key in keys:
        variants = "|".join(re.escape(v) for v in sorted({key, _words(key)}, key=len,
                                                          reverse=True))
        pattern = (rf"(?<![\w])(?:{variants})\s*(?:[:=]|\s[-\u2013]\s)\s*(.+?)"
                   rf"(?=;|\n|$|(?<![\w])(?:{alternatives})\s*(?:[:=]|\s[-\u2013]\s))")
        match = re.search(pattern, description, flags=re.IGNORECASE)
        gloss = match.group(1).strip(" \t,.;") if match else ""
        glosses[key] = gloss or _words(key)
    return glosses


_INSTRUCTION_WORDS = 8  # "Categorize customer inquiry:" is an instruction, not the message
#: How an instruction begins: "Categorize customer inquiry", "Decide the route", ...
_INSTRUCTION = re.compile(
    r"^(?:please\s+)?(?:categori[sz]e|classify|route|decide|choose|determine|triage|sort|"
    r"label|pick|select|assess|evaluate|review|check|identify|detect|analy[sz]e)\b",
    re.IGNORECASE)


def subject_of(description: str, glosses: dict[str, str], context: str = "") -> str:
    """The text a decision is about: the message, not the instruction around it.

    - the longest quoted text, when the description is mostly that quotation;
    - else the description without its key descriptions, and without a short leading
      instruction that ends in a colon (``"Categorize customer inquiry: <message>"``);
    - the context (previous tasks' outputs) follows; when all the description says is a
      short instruction (``"Categorize customer inquiry"``: a few words that begin with
      a verb such as categorize, classify, route, decide), the context alone.

    Args:
        description: the decision task's description.
        glosses: the keys' descriptions (removed from the description when it is used).
        context: the text of previous tasks' outputs.

    Example:
        >>> subject_of("Categorize customer inquiry: I was charged twice", {})
        'I was charged twice'
        >>> subject_of("Categorize customer inquiry", {}, "My app crashes on start.")
        'My app crashes on start.'
    """
    subject = description
    for key, gloss in glosses.items():
        subject = re.sub(rf"(?<![\w]){re.escape(key)}\s*(?:[:=]|\s[-\u2013]\s)\s*"
                         rf"{re.escape(gloss)}[;,.]?", " ", subject, flags=re.IGNORECASE)
    subject = " ".join(subject.split())
    quoted = [next(g for g in m.groups() if g) for m in _QUOTED.finditer(subject)]
    longest = max(quoted, key=len) if quoted else ""
    # The quoted message, not a phrase the message itself quotes ("fails with 'error 5'").
    if quoted and 2 * len(longest) >= len(subject):
        subject = longest
    else:
        head, colon, rest = subject.partition(":")
        if colon and len(head.split()) <= _INSTRUCTION_WORDS and len(rest.split()) >= 2:
            rest = rest.strip()
            pairs = {'"': '"', "'": "'", "\u201c": "\u201d"}
            if len(rest) > 1 and pairs.get(rest[0]) == rest[-1]:
                rest = rest[1:-1]  # "Categorize: 'short message'"
            subject = rest.strip()
        elif (context and len(subject.split()) <= _INSTRUCTION_WORDS
              and _INSTRUCTION.match(subject)):
            subject = ""
    if context:
        subject = f"{subject}\n{context}" if subject else context
    subject = " ".join(subject.split())
    return subject[:_MAX_SUBJECT]


# -- scoring over llama.cpp's native endpoints ------------------------------------------

async def _post(address: str, path: str, body: dict[str, Any], timeout: float) -> Any:
    import aiohttp

    from ray_orch.model.openai_http import _session

    try:
        async with (await _session()).post(
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
    plain = all(gloss == _words(key) for key, gloss in glosses.items())
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
    words = _words(key)
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
            weight = (DESCRIPTION_WEIGHT if glosses[key] != _words(key) else DERIVED_WEIGHT)
            meaning = (nearest + weight * meaning) / (1.0 + weight)
        scores[key] = round(meaning, 4)
    return scores


def describe_routes(routes: dict[str, list[str]], tasks: dict[str, Any]) -> dict[str, str]:
    """What each route of a decision leads to, in words: its targets' agents' goals.

    Used for a decision whose text does not describe its keys (the guide's
    ``Categorize customer inquiry: '...'``). Each key gets the goals of the agents of the
    tasks it routes to (``"Solve technical issues"``), joined by ``" and "``; a key whose
    targets have no agent with a goal is left out.

    Args:
        routes: the decision's routes, ``{key: [task names]}`` (the default route too).
        tasks: the workflow's tasks by name.

    Returns:
        ``{key: description}`` for the keys that have one.

    Example:
        >>> class A: goal = "Handle payments"
        >>> class T: agent = A()
        >>> describe_routes({"billing": ["pay"]}, {"pay": T()})
        {'billing': 'handle payments'}
    """
    described: dict[str, str] = {}
    for key, targets in routes.items():
        goals = []
        for name in targets:
            goal = getattr(getattr(tasks.get(name), "agent", None), "goal", None)
            if isinstance(goal, str) and goal.strip() and goal.strip() not in goals:
                goals.append(goal.strip())
        if not goals:
            continue
        text = " and ".join(goals)
        described[key] = text[:1].lower() + text[1:]
    return described


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


# -- hosted models: the provider's log-probabilities of the answer ------------------------

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
    from ray_orch.model.client import _NO_KEY, traced_chat  # traced_chat: its chat span
    from ray_orch.model.ratelimit_client import estimate_tokens, limited, strip_limit_keys

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
                                        config.api_key or _NO_KEY, dict(body),
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
