"""Decisions: the route a decision task took (``Decision``) and what is scored for it.

A decision task's condition maps keys to routes. Whatever the model, the route is a key
the answer names (``core/routing.py`` reads it); on the embedded default and on hosted
models that give log-probabilities every key is also scored, and the scores go to
``metadata["decision"]["scores"]``. This module holds what every way of deciding
shares: the ``Decision`` record, the best of a set of scores, what each key means
(``route_glosses``, ``describe_routes``) and the message scored (``subject_of``). The
scoring is in ``decide_local.py`` (the embedded default: by meaning, else by likelihood)
and ``decide_hosted.py`` (a hosted model's log-probabilities).

The message scored is the message, not the instruction around it (``subject_of``): the
quoted text when the description is mostly a quotation (``'Categorize this inquiry:
"..."'``), else the description without its key descriptions and without a short
leading instruction ending in a colon, followed by the context from previous tasks (the
context alone when the description is only a short instruction).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["Decision", "best_route", "decision_value", "describe_routes", "key_words",
           "route_glosses", "subject_of"]

_MAX_SUBJECT = 600  # characters scored; a decision needs the gist, not a whole document
_QUOTED = re.compile(r'"([^"]{8,})"|“([^”]{8,})”|\'([^\']{8,})\'')


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

def key_words(key: str) -> str:
    """A key as words: ``"order_status"`` -> ``"order status"``."""
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
    names = sorted({v for k in keys for v in (k, key_words(k))}, key=len, reverse=True)
    alternatives = "|".join(re.escape(n) for n in names)
    glosses: dict[str, str] = {}
    for key in keys:
        variants = "|".join(re.escape(v) for v in sorted({key, key_words(key)}, key=len,
                                                          reverse=True))
        pattern = (rf"(?<![\w])(?:{variants})\s*(?:[:=]|\s[-\u2013]\s)\s*(.+?)"
                   rf"(?=;|\n|$|(?<![\w])(?:{alternatives})\s*(?:[:=]|\s[-\u2013]\s))")
        match = re.search(pattern, description, flags=re.IGNORECASE)
        gloss = match.group(1).strip(" \t,.;") if match else ""
        glosses[key] = gloss or key_words(key)
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
