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

Where the budget lives: on Ray, one ``RateLimiter`` actor per model and provider
(``actors/rate_limiter.py``), so the budget is cluster-wide. Each process talks to it
through one ``_RemoteGate`` that batches: the calls waiting at one moment share one
``acquire`` round trip, spare slots are leased while demand lasts, and outcomes travel
back in batches (piggy-backed on the next ``acquire``, or after ``FLUSH_SECONDS``; a 429
at once). Without Ray (``Task.execute()`` alone) the limiter lives in the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import logging
import math
import os
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import InvalidTaskFieldError

if TYPE_CHECKING:
    from ._llm import LLMConfig

__all__ = [
    "LIMIT_KEYS",
    "Lease",
    "Limiter",
    "Limits",
    "Ticket",
    "estimate_tokens",
    "limited",
    "limiter_name",
    "limits_of",
    "strip_limit_keys",
]

T = TypeVar("T")

#: ``LLMConfig.options`` keys that configure limiting (never sent to litellm).
LIMIT_KEYS = frozenset({"rpm", "tpm", "max_in_flight"})
RPM_ENV = "RAY_ORCH_RPM"
TPM_ENV = "RAY_ORCH_TPM"
#: Fraction of the configured rates actually used: room for clock jitter between the
#: slot and the request's arrival at the provider.
HEADROOM = 0.95
#: The window's ceiling when ``max_in_flight`` is not set.
DEFAULT_CEILING = 1024
#: Longest pause a ``Retry-After`` can impose.
MAX_PAUSE = 60.0
#: Most slots one ``acquire`` round trip asks for.
MAX_LEASE = 64
#: Most spare slots a process keeps for calls that have not arrived yet.
MAX_SPARE = 8
#: Spares may cover at most this much of the pacing schedule: an unused spare is a hole
#: in it, so spares pay off at high rates (many round trips saved, holes of a few ms)
#: and are not taken at low ones (a hole of a whole interval; a round trip is nothing
#: next to the pacing wait).
SPARE_SPAN = 0.1
#: Outcomes wait at most this long before they are sent to the actor.
FLUSH_SECONDS = 0.05
#: The first call of a process warms its client up (litellm's first call imports the
#: provider SDK before it sends anything); other calls wait for it up to this long.
FIRST_CALL_WAIT = 2.0
#: Spare slots go back to the limiter after this long without a call in the process.
SPARE_IDLE_SECONDS = 0.25
#: A slot given back at least this long before its time is handed out again.
MIN_RECYCLE_LEAD = 0.02
#: The least lateness tolerated (an event loop's own timer jitter is ~1 ms).
MIN_SLACK = 0.02
#: A call that woke up later than its slot's slack gives the slot back and asks again
#: (a stalled event loop would otherwise fire a burst of overdue calls); this often.
MAX_LATE_RETRIES = 3

_log = logging.getLogger(__name__)


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


def limits_of(config: LLMConfig) -> Limits | None:
    """The limits configured for ``config``'s model, or None when there are none.

    Options win over ``RAY_ORCH_RPM`` / ``RAY_ORCH_TPM``. Cheap: two dict lookups and two
    environment lookups when nothing is configured.

    Raises:
        InvalidTaskFieldError: a limit is not a positive number.

    Example:
        >>> from ray_orch._llm import LLMConfig
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


def strip_limit_keys(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` without ray-orch's limit keys (what litellm may receive).

    Example:
        >>> strip_limit_keys({"temperature": 0, "rpm": 600})
        {'temperature': 0}
    """
    if LIMIT_KEYS.isdisjoint(options):
        return options
    return {k: v for k, v in options.items() if k not in LIMIT_KEYS}


def estimate_tokens(messages: Sequence[dict[str, Any]], options: dict[str, Any]) -> int:
    """A cheap upper-ish estimate of a call's tokens: ~4 characters a token for the
    prompt, plus ``max_tokens`` (or 256) for the answer. Usage reports correct it.

    Example:
        >>> estimate_tokens([{"role": "user", "content": "x" * 400}], {"max_tokens": 50})
        154
    """
    chars = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
    completion = options.get("max_tokens") or options.get("max_completion_tokens") or 256
    return chars // 4 + 4 * len(messages) + int(completion)


def limiter_name(config: LLMConfig) -> str:
    """The actor name for a model's limiter: ``rayorch-ratelimit-<model>[-<url hash>]``.

    The base URL is part of the identity (as a short hash), so the same model name at
    two providers gets two budgets; the API key is not (no secret in a name).

    Example:
        >>> from ray_orch._llm import LLMConfig
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


# -- the client side ---------------------------------------------------------------------


@dataclass(slots=True)
class Ticket:
    """One call's slot: ``at`` is on this process's ``time.monotonic()`` clock."""

    lease: int | None
    epoch: int
    at: float
    estimate: int
    slack: float = math.inf
    local: bool = False


@dataclass(slots=True)
class _Waiter:
    estimate: int
    future: asyncio.Future[Ticket]


class _Gate:
    """What both gates share: the first-call warm-up.

    A slot is only as good as the moment the request leaves. The first call in a process
    spends up to ~1.5 s in the client library (imports, client set-up) after its slot,
    and the calls slotted after it would leave together with it, as a burst. So the
    other calls of the process take their slots once the first one has returned.
    """

    def __init__(self) -> None:
        self.warm = False
        self._warming: asyncio.Future[None] | None = None

    async def first_call(self) -> bool:
        """True for the process's first call; the others wait (bounded) until it returns."""
        if self.warm:
            return False
        if self._warming is None:
            self._warming = asyncio.get_running_loop().create_future()
            return True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._warming), FIRST_CALL_WAIT)
        return False

    def warmed(self) -> None:
        self.warm = True
        if self._warming is not None and not self._warming.done():
            self._warming.set_result(None)


class _LocalGate(_Gate):
    """Slots from a ``Limiter`` in this process (no Ray, or its actor is unreachable)."""

    def __init__(self, limiter: Limiter) -> None:
        super().__init__()
        self.limiter = limiter

    async def slot(self, estimate: int, ttl: float) -> Ticket:
        delay = 0.002
        while True:
            lease = self.limiter.reserve([estimate], ttl)
            if lease is not None:
                return Ticket(lease.id, lease.epoch, lease.slots[0], estimate, lease.slack,
                              local=True)
            await asyncio.sleep(delay)  # the window is full: wait for a release
            delay = min(0.05, delay * 2)

    def release(self, ticket: Ticket, outcome: str, tokens_used: int,
                retry_after: float | None = None) -> None:
        self.limiter.report(ticket.lease, outcome, tokens_used=tokens_used,
                            tokens_estimate=ticket.estimate, epoch=ticket.epoch,
                            retry_after=retry_after,
                            slot_in=ticket.at - time.monotonic() if outcome == "unused" else None)


# (lease, epoch, outcome, tokens_used, tokens_estimate, retry_after, slot_in)
_Report = tuple[int | None, int, str, int, int, float | None, float | None]


class _RemoteGate(_Gate):
    """This process's side of a ``RateLimiter`` actor: batched acquires and reports."""

    def __init__(self, name: str, limits: Limits) -> None:
        super().__init__()
        self.name = name
        self.limits = limits
        self.ttl = 300.0
        self.round_trips = 0
        self._handle: Any = None
        self._waiting: deque[_Waiter] = deque()
        self._spares: deque[Ticket] = deque()
        self._fetcher: asyncio.Task[None] | None = None
        self._reports: list[_Report] = []
        self._flush: asyncio.TimerHandle | None = None
        self._recent: deque[float] = deque()
        self._idle_check: asyncio.TimerHandle | None = None
        self._slack = math.inf  # the pacing interval, as the last grant said
        self._failures = 0
        self._fallback: _LocalGate | None = None

    def _actor(self) -> Any:
        if self._handle is None:
            from actors.rate_limiter import get_rate_limiter

            self._handle = get_rate_limiter(self.name)
        return self._handle

    async def slot(self, estimate: int, ttl: float) -> Ticket:
        if self._fallback is not None:
            return await self._fallback.slot(estimate, ttl)
        self.ttl = max(self.ttl, ttl)
        self._recent.append(time.monotonic())
        ticket = self._spare()
        if ticket is not None:
            return ticket
        waiter = _Waiter(estimate, asyncio.get_running_loop().create_future())
        self._waiting.append(waiter)
        if self._fetcher is None or self._fetcher.done():
            self._fetcher = asyncio.ensure_future(self._fetch())
        return await waiter.future  # cancelled: _fetch reports its slot unused

    def _spare(self) -> Ticket | None:
        now = time.monotonic()
        while self._spares:
            ticket = self._spares.popleft()
            if now <= ticket.at + ticket.slack:
                return ticket
            self.release(ticket, "unused", 0)  # too late to use it without a burst
        return None

    def _drop_stale_spares(self) -> None:
        now = time.monotonic()
        while self._spares and now > self._spares[0].at + self._spares[0].slack:
            self.release(self._spares.popleft(), "unused", 0)

    def _return_idle_spares(self) -> None:
        """No call came for a while: give the spares back while others can use them."""
        self._idle_check = None
        if not self._spares:
            return
        idle_for = time.monotonic() - (self._recent[-1] if self._recent else -math.inf)
        if idle_for < SPARE_IDLE_SECONDS:
            self._idle_check = asyncio.get_running_loop().call_later(
                SPARE_IDLE_SECONDS - idle_for, self._return_idle_spares)
            return
        while self._spares:
            self.release(self._spares.popleft(), "unused", 0)

    def _demand(self) -> int:
        """Calls that arrived here in the last second: how many spares are worth it."""
        horizon = time.monotonic() - 1.0
        while self._recent and self._recent[0] < horizon:
            self._recent.popleft()
        return len(self._recent)

    async def _fetch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while self._waiting and self._waiting[0].future.done():
                self._waiting.popleft()  # cancelled before it got a slot
            if not self._waiting:
                return
            batch = [self._waiting[i] for i in range(min(len(self._waiting), MAX_LEASE))]
            estimates = [w.estimate for w in batch]
            spare = min(MAX_SPARE, max(0, self._demand() - len(batch)),
                        MAX_LEASE - len(batch), int(SPARE_SPAN / self._slack)) \
                if not self._spares else 0
            estimates += [sum(estimates) // len(estimates)] * spare
            reports = self._take_reports()
            sent = time.monotonic()
            try:
                grant = await self._actor().acquire.remote(
                    estimates, self.limits.as_dict(), reports, self.ttl)
            except Exception as exc:  # the actor died, or cannot be reached or created
                self._failures += 1
                self._handle = None
                if self._failures >= 3:
                    self._fall_back(exc)
                    return
                await asyncio.sleep(0.1 * self._failures)
                continue
            self._failures = 0
            self.round_trips += 1
            # The delays count from when the actor computed them. A reply that waited
            # for this (busy) loop must not shift every slot later, into the next
            # process's slots: the wall clock says how long ago that was (exact on one
            # machine; across nodes, skew is clamped to the round trip).
            now = time.monotonic()
            transit = min(max(time.time() - grant["now"], 0.0), now - sent)
            base = now - transit
            lease, epoch, slack = grant["lease"], grant["epoch"], grant["slack"]
            if lease is not None:
                self._slack = slack
            # Only this loop takes waiters off the left, so ``batch`` is still the left
            # end of ``_waiting``; slots beyond the batch are spares.
            for i, delay in enumerate(grant["delays"]):
                ticket = Ticket(lease, epoch, base + delay, estimates[i], slack)
                if i >= len(batch):
                    self._spares.append(ticket)
                    loop.call_at(loop.time() + ticket.at - now + slack, self._drop_stale_spares)
                    if self._idle_check is None:
                        self._idle_check = loop.call_later(SPARE_IDLE_SECONDS,
                                                           self._return_idle_spares)
                    continue
                waiter = self._waiting.popleft()
                if waiter.future.done():
                    self.release(ticket, "unused", 0)
                else:
                    waiter.future.set_result(ticket)

    def _fall_back(self, exc: BaseException) -> None:
        _log.warning("rate limiter %s unreachable (%s); limiting in this process only",
                     self.name, type(exc).__name__)
        self._fallback = _LocalGate(_local_limiter(self.name, self.limits))
        waiting, self._waiting = self._waiting, deque()
        for waiter in waiting:
            if not waiter.future.done():
                waiter.future.set_exception(_Retry())

    def release(self, ticket: Ticket, outcome: str, tokens_used: int,
                retry_after: float | None = None) -> None:
        if self._fallback is not None:
            if ticket.local:  # slots granted before the fallback are the dead actor's
                self._fallback.release(ticket, outcome, tokens_used, retry_after)
            return
        slot_in = ticket.at - time.monotonic() if outcome == "unused" else None
        self._reports.append((ticket.lease, ticket.epoch, outcome, tokens_used,
                              ticket.estimate, retry_after, slot_in))
        if outcome == "rate_limit":
            self._send_reports()  # slow everyone down now, not in 50 ms
        elif self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(FLUSH_SECONDS,
                                                                self._send_reports)

    def _take_reports(self) -> list[_Report]:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        reports, self._reports = self._reports, []
        return reports

    def _send_reports(self) -> None:
        reports = self._take_reports()
        if reports and self._fallback is None:
            try:
                self._actor().report.remote(reports)
            except Exception as exc:  # the actor is gone; its leases expire with it
                _log.debug("rate limiter %s: reports lost (%s)", self.name, exc)


async def _take(gate: _LocalGate | _RemoteGate, estimate: int, ttl: float) -> Ticket:
    """A slot, slept until: the call may start when this returns."""
    for attempt in range(MAX_LATE_RETRIES + 1):
        ticket = await gate.slot(estimate, ttl)
        try:
            delay = ticket.at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            gate.release(ticket, "unused", 0)
            raise
        if time.monotonic() - ticket.at <= ticket.slack or attempt == MAX_LATE_RETRIES:
            return ticket
        # Woke up too late (a busy event loop): calls fired now would burst with the
        # slots after this one, so give the slot back and take a current one.
        gate.release(ticket, "unused", 0)
    raise AssertionError("unreachable")


class _Retry(Exception):
    """The gate changed under a waiting call (it falls back to a local limiter)."""


_local: dict[str, Limiter] = {}
_local_lock = threading.Lock()
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = \
    weakref.WeakKeyDictionary()


def _local_limiter(name: str, limits: Limits) -> Limiter:
    with _local_lock:
        limiter = _local.get(name)
        if limiter is None:
            limiter = _local[name] = Limiter(limits)
    limiter.configure(limits)
    return limiter


def _gate(config: LLMConfig, limits: Limits) -> _LocalGate | _RemoteGate:
    from ._runtime import ray_is_running

    name = limiter_name(config)
    loop = asyncio.get_running_loop()
    gates = _gates.setdefault(loop, {})
    gate = gates.get(name)
    if gate is None:
        gate = gates[name] = (_RemoteGate(name, limits) if ray_is_running()
                              else _LocalGate(_local_limiter(name, limits)))
    elif isinstance(gate, _RemoteGate):
        gate.limits = limits
    else:
        gate.limiter.configure(limits)
    return gate


async def limited(config: LLMConfig, call: Callable[[], Awaitable[T]], *,
                  tokens_estimate: int) -> T:
    """Run one model call inside the model's rate limits (just run it when it has none).

    Args:
        config: the model's config; ``options`` may hold ``rpm``, ``tpm``,
            ``max_in_flight`` (see ``limits_of``).
        call: makes the call; an exception with ``status_code == 429`` counts as a rate
            limit (``retry_after`` honoured); a result with a ``tokens`` attribute
            reports the real usage.
        tokens_estimate: the call's expected tokens (``estimate_tokens``).

    Returns:
        What ``call`` returned.

    Raises:
        Whatever ``call`` raises; InvalidTaskFieldError for a malformed limit.

    Example:
        >>> # result = await limited(config, lambda: lib.acompletion(...), tokens_estimate=300)
    """
    limits = limits_of(config)
    if limits is None:
        return await call()
    gate = _gate(config, limits)
    ttl = config.timeout + 60.0
    first = await gate.first_call()
    try:
        try:
            ticket = await _take(gate, tokens_estimate, ttl)
        except _Retry:
            ticket = await _take(gate, tokens_estimate, ttl)  # from the fallback limiter
        try:
            result = await call()
        except asyncio.CancelledError:
            gate.release(ticket, "error", ticket.estimate)
            raise
        except BaseException as exc:
            if getattr(exc, "status_code", None) == 429:
                gate.release(ticket, "rate_limit", 0, getattr(exc, "retry_after", None))
            else:
                gate.release(ticket, "error", 0)
            raise
    finally:
        if first:
            gate.warmed()
    used = getattr(result, "tokens", None)
    gate.release(ticket, "success", used if isinstance(used, int) else ticket.estimate)
    return result
