"""Rate limits per model: requests and tokens per minute, paced, with adaptive concurrency.

Limiting is off unless a model's config asks for it, through ``LLMConfig.options`` keys
(``Agent(llm={"model": ..., "rpm": 600, "tpm": 100_000})``) or, as defaults for every
model, ``RAY_ORCH_RPM`` / ``RAY_ORCH_TPM`` in the environment of the process that makes
the call (on a cluster: ``runtime_env={"env_vars": ...}`` or the nodes' environment):

- ``rpm``: requests per minute;
- ``tpm``: tokens (prompt + completion) per minute;
- ``max_in_flight``: calls to the model at once, cluster-wide: the ceiling of the
  adaptive window (default ``DEFAULT_CEILING``).

These keys are ray-orch's, never litellm's: the seam strips them (``LIMIT_KEYS``).

How the budget is kept (``Limiter``, plain Python, clock injectable):

- **Pacing, not bursts.** Every call is given a start time (a slot) by a generic cell
  rate algorithm: slots are ``60 / (rpm * HEADROOM)`` seconds apart, and a call's token
  estimate pushes the token schedule by ``tokens * 60 / (tpm * HEADROOM)``. Providers
  count over short windows (a minute, often less), where a burst at a window edge breaks
  a limit that the average respects; evenly spaced calls at 95 % of the limit do not.
  Token estimates are corrected when the real usage is reported.
- **AIMD window.** Calls holding a slot (reserved or running) are bounded by a window.
  A 429 halves it from the calls actually in flight (once per round: answers to calls
  granted before the last decrease do not decrease again) and pauses new slots for the
  ``Retry-After``; each success while the window is binding adds ``1 / window``, so the
  window grows by one per window of successes. After ``idle_reset`` seconds without
  calls the window is back at its ceiling.
- **Leases.** Slots are handed out in leases; a lease whose holder vanished (a dead
  process) is reclaimed after its time to live.

Where the budget lives is the client side's business (``client.py`` in this package, with
``limited``, ``Ticket`` and the request helpers ``estimate_tokens`` and
``strip_limit_keys``): on Ray, one ``RateLimiter`` actor per model
and provider (``actors/rate_limiter.py``), so the budget is cluster-wide; without Ray
(``Task.execute()`` alone) the limiter lives in the process.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ray_orch.core.errors import InvalidTaskFieldError

__all__ = [
    "LIMIT_KEYS",
    "Lease",
    "Limiter",
    "Limits",
    "ModelConfig",
    "limiter_name",
    "limits_of",
]

class ModelConfig(Protocol):
    """What rate limiting reads of a model's config (``model.client.LLMConfig``; typed
    here so that the client, which imports this package, is not imported back)."""

    @property
    def model(self) -> str: ...
    @property
    def base_url(self) -> str | None: ...
    @property
    def timeout(self) -> float: ...
    @property
    def options(self) -> dict[str, Any]: ...


#: ``LLMConfig.options`` keys that configure ray-orch (never sent to litellm): limiting,
#: and ``supports_vision`` (whether the model takes images; default: litellm's table).
LIMIT_KEYS = frozenset({"rpm", "tpm", "max_in_flight", "supports_vision"})
RPM_ENV = "RAY_ORCH_RPM"
TPM_ENV = "RAY_ORCH_TPM"
#: Fraction of the configured rates actually used: room for clock jitter between the
#: slot and the request's arrival at the provider.
HEADROOM = 0.95
#: The window's ceiling when ``max_in_flight`` is not set.
DEFAULT_CEILING = 1024
#: Longest pause a ``Retry-After`` can impose.
MAX_PAUSE = 60.0
#: A slot given back at least this long before its time is handed out again.
MIN_RECYCLE_LEAD = 0.02
#: The least lateness tolerated (an event loop's own timer jitter is ~1 ms).
MIN_SLACK = 0.02


# -- configuration -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Limits:
    """The limits of one model (any of them set turns limiting on).

    Example:
        >>> bool(Limits()), bool(Limits(rpm=600))
        (False, True)
    """

    rpm: float | None = None
    tpm: float | None = None
    max_in_flight: int | None = None

    def __bool__(self) -> bool:
        return self.rpm is not None or self.tpm is not None or self.max_in_flight is not None

    def as_dict(self) -> dict[str, Any]:
        return {"rpm": self.rpm, "tpm": self.tpm, "max_in_flight": self.max_in_flight}


def _positive(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not number > 0 or math.isinf(number):
        raise InvalidTaskFieldError(
            f"llm option '{name}' must be a positive number, got {value!r}", field="llm")
    return number


def limits_of(config: ModelConfig) -> Limits | None:
    """The limits configured for ``config``'s model, or None when there are none.

    Options win over ``RAY_ORCH_RPM`` / ``RAY_ORCH_TPM``. Cheap: two dict lookups and two
    environment lookups when nothing is configured.

    Raises:
        InvalidTaskFieldError: a limit is not a positive number.

    Example:
        >>> from ray_orch.model.client import LLMConfig
        >>> limits_of(LLMConfig(model="m", options={"rpm": 600}))
        Limits(rpm=600.0, tpm=None, max_in_flight=None)
    """
    options = config.options
    rpm = options.get("rpm")
    tpm = options.get("tpm")
    cap = options.get("max_in_flight")
    if rpm is None:
        rpm = os.environ.get(RPM_ENV) or None
    if tpm is None:
        tpm = os.environ.get(TPM_ENV) or None
    if rpm is None and tpm is None and cap is None:
        return None
    return Limits(rpm=None if rpm is None else _positive("rpm", rpm),
                  tpm=None if tpm is None else _positive("tpm", tpm),
                  max_in_flight=None if cap is None else max(1, int(_positive("max_in_flight",
                                                                                cap))))


def limiter_name(config: ModelConfig) -> str:
    """The actor name for a model's limiter: ``rayorch-ratelimit-<model>[-<url hash>]``.

    The base URL is part of the identity (as a short hash), so the same model name at
    two providers gets two budgets; the API key is not (no secret in a name).

    Example:
        >>> from ray_orch.model.client import LLMConfig
        >>> limiter_name(LLMConfig(model="openai/gpt-4o-mini"))
        'rayorch-ratelimit-openai-gpt-4o-mini'
    """
    model = re.sub(r"[^a-z0-9]+", "-", config.model.lower()).strip("-")[:80] or "model"
    name = f"rayorch-ratelimit-{model}"
    if config.base_url:
        name += "-" + hashlib.sha256(config.base_url.encode()).hexdigest()[:8]
    return name


# -- the limiter -------------------------------------------------------------------------


@dataclass(kw_only=True)
class Lease:
    """Slots granted by one ``Limiter.reserve`` call.

    Attributes:
        id: reported back with each slot's outcome.
        slots: start times on the limiter's clock, one per call, in order.
        epoch: the window's epoch at grant time (see ``Limiter.report``).
        expires: when unreported slots are reclaimed.
        outstanding: slots not yet reported.
        slack: how late a slot may still be used: one interval of the pacing, at least
            ``MIN_SLACK``; unbounded without rates. Calls up to this late put at most
            one interval (or 20 ms) of calls more into any window, which the headroom
            absorbs for windows of a second or more.
    """

    id: int
    slots: list[float]
    epoch: int
    expires: float
    outstanding: int
    slack: float = math.inf


class Limiter:
    """Paced slots under rpm / tpm budgets and an AIMD window (see the module docstring).

    Args:
        limits: the rates and ceiling.
        clock: seconds, monotonic (injectable for tests).
        headroom: fraction of the rates actually used.
        burst: calls that may start back to back after an idle period (1: none).
        decrease: the window's multiplicative decrease on a 429.
        increase: the window's additive increase per window of successes.
        min_window: the window never goes below this.
        idle_reset: seconds without calls after which the window returns to its ceiling.

    Example:
        >>> now = [0.0]
        >>> limiter = Limiter(Limits(rpm=60), clock=lambda: now[0], headroom=1.0)
        >>> limiter.reserve([10, 10, 10]).slots
        [0.0, 1.0, 2.0]
    """

    def __init__(self, limits: Limits, *, clock: Callable[[], float] = time.monotonic,
                 headroom: float = HEADROOM, burst: int = 1, decrease: float = 0.5,
                 increase: float = 1.0, min_window: float = 1.0,
                 idle_reset: float = 60.0) -> None:
        self.clock = clock
        self.headroom = headroom
        self.burst = max(1, burst)
        self.decrease = decrease
        self.increase = increase
        self.min_window = min_window
        self.idle_reset = idle_reset
        self.limits = limits
        self.window = float(self.ceiling)
        self.in_flight = 0
        self.epoch = 0
        self.paused_until = -math.inf
        self.leases: dict[int, Lease] = {}
        self.stats = {"granted": 0, "refused": 0, "success": 0, "rate_limit": 0, "error": 0,
                      "unused": 0, "recycled": 0, "decreases": 0, "expired": 0}
        self._free: list[float] = []  # slots given back before their time (a heap)
        self._req_tat = -math.inf
        self._tok_tat = -math.inf
        self._next_id = 1
        self._bound = False  # the window refused a slot since the last decrease
        self._last_active = clock()
        self._lock = threading.Lock()

    @property
    def ceiling(self) -> int:
        return self.limits.max_in_flight or DEFAULT_CEILING

    def configure(self, limits: Limits) -> None:
        """Adopt new limits (the latest caller's configuration wins)."""
        with self._lock:
            if limits == self.limits:
                return
            self.limits = limits
            # Before any 429 the window is the ceiling; after one, only a lower ceiling moves it.
            self.window = float(self.ceiling) if self.epoch == 0 else \
                min(self.window, float(self.ceiling))

    def _intervals(self, tokens: int) -> tuple[float, float]:
        rpm, tpm = self.limits.rpm, self.limits.tpm
        per_request = 60.0 / (rpm * self.headroom) if rpm else 0.0
        per_tokens = tokens * 60.0 / (tpm * self.headroom) if tpm else 0.0
        return per_request, per_tokens

    def reserve(self, estimates: Sequence[int], ttl: float = 300.0) -> Lease | None:
        """Slots for up to ``len(estimates)`` calls, as many as the window allows.

        Args:
            estimates: each call's token estimate.
            ttl: seconds after the last slot before unreported slots are reclaimed.

        Returns:
            A lease with slots for the first calls (maybe fewer than asked), or None
            when the window is full.
        """
        with self._lock:
            now = self.clock()
            self._expire(now)
            if self.in_flight == 0 and now - self._last_active > self.idle_reset:
                self.window = float(self.ceiling)
            self._last_active = now
            room = math.floor(self.window) - self.in_flight
            count = min(len(estimates), max(0, room))
            if count < len(estimates):
                self._bound = True
                self.stats["refused"] += len(estimates) - count
            if count == 0:
                return None
            slots = [self._schedule(now, estimates[i]) for i in range(count)]
            per_request, per_tokens = self._intervals(min(estimates[:count]))
            interval = max(per_request, per_tokens)
            lease = Lease(id=self._next_id, slots=slots, epoch=self.epoch,
                          expires=slots[-1] + ttl, outstanding=count,
                          slack=max(interval, MIN_SLACK) if interval else math.inf)
            self._next_id += 1
            self.leases[lease.id] = lease
            self.in_flight += count
            self.stats["granted"] += count
            return lease

    def _schedule(self, now: float, tokens: int) -> float:
        per_request, per_tokens = self._intervals(tokens)
        start = max(now, self.paused_until)
        while self._free and self._free[0] < start:
            heapq.heappop(self._free)  # passed, or inside a pause
        if per_request:
            start = max(start, self._req_tat - (self.burst - 1) * per_request)
        if per_tokens:
            start = max(start, self._tok_tat)
        if self._free and self._free[0] <= start and \
                (not per_tokens or self._tok_tat <= self._free[0]):
            # A slot someone gave back is earlier than a new one: its request is already
            # in the schedule, only its tokens are charged again.
            start = heapq.heappop(self._free)
            if per_tokens:
                self._tok_tat = max(self._tok_tat, start) + per_tokens
            self.stats["recycled"] += 1
            return start
        # Both schedules move from the actual start, whichever budget set it.
        if per_request:
            self._req_tat = max(self._req_tat, start) + per_request
        if per_tokens:
            self._tok_tat = max(self._tok_tat, start) + per_tokens
        return start

    def report(self, lease_id: int | None, outcome: str, *, tokens_used: int = 0,
               tokens_estimate: int = 0, epoch: int | None = None,
               retry_after: float | None = None, slot_in: float | None = None) -> None:
        """Record how one slot's call went.

        Args:
            lease_id: the slot's lease (unknown or expired leases free nothing).
            outcome: ``"success"``, ``"rate_limit"`` (a 429), ``"error"``, or
                ``"unused"`` (the slot was never used).
            tokens_used: the call's real token usage (corrects the estimate).
            tokens_estimate: what the slot was reserved with.
            epoch: the lease's epoch (default: the lease's own, if it is known).
            retry_after: the provider's ``Retry-After`` seconds on a 429.
            slot_in: for an unused slot, seconds until its time; a future slot is
                handed out again (spare slots a process no longer needs fill no hole).
        """
        with self._lock:
            now = self.clock()
            lease = self.leases.get(lease_id) if lease_id is not None else None
            if lease is not None:
                lease.outstanding -= 1
                self.in_flight -= 1
                if lease.outstanding <= 0:
                    del self.leases[lease.id]
                epoch = lease.epoch if epoch is None else epoch
            self.stats[outcome if outcome in self.stats else "error"] += 1
            self._correct_tokens(now, tokens_used - tokens_estimate)
            if outcome == "unused" and slot_in is not None and slot_in >= MIN_RECYCLE_LEAD \
                    and self.limits.rpm:
                heapq.heappush(self._free, now + slot_in)
            if outcome == "rate_limit":
                if retry_after:
                    self.paused_until = max(self.paused_until, now + min(retry_after, MAX_PAUSE))
                if epoch is None or epoch >= self.epoch:
                    flight = min(self.window, float(self.in_flight + 1))
                    self.window = max(self.min_window, self.decrease * flight)
                    self.epoch += 1
                    self._bound = False
                    self.stats["decreases"] += 1
            elif outcome == "success" and self._bound and self.window < self.ceiling:
                self.window = min(float(self.ceiling), self.window + self.increase / self.window)

    def _correct_tokens(self, now: float, delta: int) -> None:
        if not delta or not self.limits.tpm:
            return
        shift = delta * 60.0 / (self.limits.tpm * self.headroom)
        if shift > 0:
            self._tok_tat = max(self._tok_tat, now) + shift
        else:
            self._tok_tat = max(self._tok_tat + shift, now)

    def expire(self) -> int:
        """Reclaim the slots of leases past their time to live. Returns how many."""
        with self._lock:
            return self._expire(self.clock())

    def _expire(self, now: float) -> int:
        reclaimed = 0
        for lease in [lease for lease in self.leases.values() if lease.expires < now]:
            reclaimed += lease.outstanding
            del self.leases[lease.id]
        self.in_flight -= reclaimed
        self.stats["expired"] += reclaimed
        return reclaimed

    def snapshot(self) -> dict[str, Any]:
        """Window, in-flight count, pause and counters (for tests and dashboards)."""
        with self._lock:
            return {"window": self.window, "in_flight": self.in_flight, "epoch": self.epoch,
                    "paused_for": max(0.0, self.paused_until - self.clock()),
                    "limits": self.limits.as_dict(), **self.stats}
