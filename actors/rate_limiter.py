"""``RateLimiter``: one per model and provider, the cluster-wide rpm / tpm budget and the
adaptive (AIMD) window for calls to that model.

A thin shell over ``ray_orch.model.ratelimit.limiter.Limiter``: it holds the state, hands out slots in
leases and takes outcomes back. Callers reach it through ``ray_orch.model.ratelimit.client.limited``,
which batches (one ``acquire`` for all the calls waiting in a process at one moment;
outcomes in batches through ``report``), so a fan-out of hundreds of calls costs a few
round trips, not one per call.

It is a named detached actor (``rayorch-ratelimit-<model>[-<url hash>]`` in namespace
``ray_orch``) on the head node, so losing a worker node does not lose the budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import ray

from ray_orch.model.ratelimit.limiter import Limiter, Limits

NAMESPACE = "ray_orch"
# Ray's own resource on the head node (Ray Train pins its state actor the same way).
_HEAD_RESOURCE = "node:__internal_head__"


@ray.remote(num_cpus=0)
class RateLimiter:
    """Slots for calls to one model under its limits.

    Example:
        >>> limiter = get_rate_limiter("rayorch-ratelimit-openai-gpt-4o")   # doctest: +SKIP
        >>> grant = ray.get(limiter.acquire.remote(300, {"rpm": 600}))     # doctest: +SKIP
        >>> limiter.release.remote("success", 280, 300, grant["lease"])      # doctest: +SKIP
    """

    def __init__(self, limits: dict[str, Any] | None = None) -> None:
        self.limiter = Limiter(Limits(**(limits or {})))
        self.acquires = 0
        self._room = asyncio.Condition()

    async def acquire(self, tokens_estimate: int | list[int],
                      limits: dict[str, Any] | None = None,
                      reports: list[tuple[Any, ...]] | None = None, ttl: float = 300.0,
                      wait: float = 1.0) -> dict[str, Any]:
        """Reserve slots for one call or a batch of calls.

        Args:
            tokens_estimate: one call's token estimate, or a list (one per call).
            limits: the caller's ``Limits`` as a dict (the latest caller's wins).
            reports: outcomes to apply first (``report``'s tuples).
            ttl: seconds after the last slot before unreported slots are reclaimed.
            wait: how long to wait for room when the window is full.

        Returns:
            ``{"lease": id | None, "epoch": int, "slack": seconds, "now": time.time(),
            "delays": [seconds, ...]}``: each call starts ``delay`` after ``now``, and
            no later than ``slack`` after that (else it gives the slot back); fewer
            delays than calls (maybe none, after ``wait``) when the window is full: ask
            again for the rest.
        """
        self.acquires += 1
        if reports:
            self._apply(reports)
        if limits is not None:
            self.limiter.configure(Limits(**limits))
        estimates = [tokens_estimate] if isinstance(tokens_estimate, int) else tokens_estimate
        deadline = time.monotonic() + wait
        while True:
            lease = self.limiter.reserve(estimates, ttl)
            now = self.limiter.clock()
            if lease is not None:
                return {"lease": lease.id, "epoch": lease.epoch, "slack": lease.slack,
                        "now": time.time(),
                        "delays": [max(0.0, s - now) for s in lease.slots]}
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return {"lease": None, "epoch": self.limiter.epoch, "slack": 0.0,
                        "now": time.time(), "delays": []}
            # Leases of vanished callers expire without a release to wake us: poll too.
            async with self._room:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._room.wait(), min(remaining, 0.25))

    async def release(self, outcome: str, tokens_used: int = 0, tokens_estimate: int = 0,
                      lease: int | None = None, epoch: int | None = None,
                      retry_after: float | None = None, slot_in: float | None = None) -> None:
        """Report one call's outcome (``"success"``, ``"rate_limit"``, ``"error"``, ``"unused"``)."""
        await self.report([(lease, epoch, outcome, tokens_used, tokens_estimate, retry_after,
                            slot_in)])

    async def report(self, reports: list[tuple[Any, ...]]) -> None:
        """Report a batch of outcomes: ``(lease, epoch, outcome, tokens_used,
        tokens_estimate, retry_after, slot_in)`` tuples (see ``Limiter.report``)."""
        self._apply(reports)
        async with self._room:
            self._room.notify_all()

    def _apply(self, reports: list[tuple[Any, ...]]) -> None:
        for lease, epoch, outcome, used, estimate, retry_after, slot_in in reports:
            self.limiter.report(lease, outcome, tokens_used=used, tokens_estimate=estimate,
                                epoch=epoch, retry_after=retry_after, slot_in=slot_in)

    async def stats(self) -> dict[str, Any]:
        """The limiter's window, in-flight count, counters, and ``acquires`` (round trips)."""
        return {**self.limiter.snapshot(), "acquires": self.acquires}


def get_rate_limiter(name: str) -> Any:
    """The named limiter actor: get it, or create it on the head node.

    Args:
        name: ``ray_orch.model.ratelimit.limiter_name(config)``.

    Returns:
        The actor handle (namespace ``"ray_orch"``, detached, no CPU).
    """
    return RateLimiter.options(  # type: ignore[attr-defined]
        name=name, namespace=NAMESPACE, get_if_exists=True, lifetime="detached",
        num_cpus=0, max_restarts=-1, resources={_HEAD_RESOURCE: 0.001},
        # Leave any placement group of the caller: the limiter serves the whole cluster.
        scheduling_strategy="DEFAULT",
    ).remote()
