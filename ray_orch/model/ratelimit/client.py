"""The client side of rate limiting: ``limited`` runs a model call in a paced slot.

Where the budget lives: on Ray, one ``RateLimiter`` actor per model and provider
(``actors/rate_limiter.py``, a thin shell over ``Limiter``), so the budget is cluster-wide. Each process talks to it
through one ``_RemoteGate`` that batches: the calls waiting at one moment share one
``acquire`` round trip, spare slots are leased while demand lasts, and outcomes travel
back in batches (piggy-backed on the next ``acquire``, or after ``FLUSH_SECONDS``; a 429
at once). Without Ray (``Task.execute()`` alone) the limiter lives in the process.

The limits, the pacing and the AIMD window (``Limiter``) are in
:mod:`ray_orch.model.ratelimit.limiter`; this module also holds what the LLM seam computes per call
(``estimate_tokens``, ``strip_limit_keys``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ray_orch.core import shared
from ray_orch.core.proc import ray_is_running
from ray_orch.model.ratelimit.limiter import (
    LIMIT_KEYS,
    Limiter,
    Limits,
    ModelConfig,
    limiter_name,
    limits_of,
)

__all__ = ["Ticket", "estimate_tokens", "limit_through", "limited", "strip_limit_keys"]

# The cluster's limiters while Ray runs (``name -> RateLimiter handle``) come with the
# work in progress (``ray_orch.core.shared``: a run's members get them); without them,
# limits hold in this process only.


def limit_through(get_limiter: Callable[[str], Any]) -> None:
    """Share this process's rate limits cluster-wide while Ray runs, for work outside a
    run: ``get_limiter(name)`` returns the ``RateLimiter`` actor of one model."""
    shared.install(dataclasses.replace(shared.installed(), limiters=get_limiter))

T = TypeVar("T")

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
#: A call that woke up later than its slot's slack gives the slot back and asks again
#: (a stalled event loop would otherwise fire a burst of overdue calls); this often.
MAX_LATE_RETRIES = 3

_log = logging.getLogger(__name__)


# -- the request -------------------------------------------------------------------------


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


# -- gates -------------------------------------------------------------------------------


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

    def __init__(self, name: str, limits: Limits, get_limiter: Callable[[str], Any]) -> None:
        super().__init__()
        self.name = name
        self.limits = limits
        self._get_limiter = get_limiter  # the cluster's limiter actor, by name
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
            self._handle = self._get_limiter(self.name)
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
                    estimates, self.limits.as_dict(), reports, ttl=self.ttl)
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


def _gate(config: ModelConfig, limits: Limits) -> _LocalGate | _RemoteGate:
    name = limiter_name(config)
    loop = asyncio.get_running_loop()
    gates = _gates.setdefault(loop, {})
    gate = gates.get(name)
    if gate is None:
        get_limiter = shared.current().limiters
        gate = gates[name] = (_RemoteGate(name, limits, get_limiter)
                              if get_limiter is not None and ray_is_running()
                              else _LocalGate(_local_limiter(name, limits)))
    elif isinstance(gate, _RemoteGate):
        gate.limits = limits
    else:
        gate.limiter.configure(limits)
    return gate


async def limited(config: ModelConfig, call: Callable[[], Awaitable[T]], *,
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
        >>> import asyncio
        >>> from ray_orch.model.client import LLMConfig
        >>> config = LLMConfig(model="openai/m", base_url="http://127.0.0.1:9/v1",
        ...                    options={"rpm": 600})
        >>> async def call():
        ...     return "answer"
        >>> asyncio.run(limited(config, call, tokens_estimate=300))
        'answer'
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
