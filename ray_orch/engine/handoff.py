"""Hand-offs: a chain's next task waits in a member, behind the task it needs.

When a task B waits on nothing but a running task A, B is queued in the member that runs
A and starts there the moment A succeeds: a chain step then costs no Supervisor round
trip (~3-4 ms here). The Supervisor still decides: when A completes, the dispatch the
scheduler makes for B must equal the one predicted (else the hand-off is cancelled), and
B's output is recorded as any other. With a run store, A's member writes A's record
(never over one already there) as B starts: B's model call goes ahead, but its tools,
guardrails, memory writes and an adapter's ``chat`` wait for that write, so a resumed run
never finds B's side effects behind an A it forgot; the Supervisor's own record of A
comes last. Runs where the Supervisor must act between A and B do not hand off (budgets,
caching, the hierarchical manager, approvals); a task with a breaker or an ``execute()``
override never follows, an override's inner calls never lead, and with a run store a task
with a timeout does neither (the Supervisor may still fail it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ray_orch.core.output import TaskOutput
from ray_orch.engine.scheduler import Dispatch

if TYPE_CHECKING:
    from ray_orch.engine.graph import Graph
    from ray_orch.engine.ports import Remote
    from ray_orch.engine.scheduler import Scheduler

__all__ = ["HandOffs", "chaining_allowed", "token_visit"]


def chaining_allowed(*, cache: bool, manager: bool, budget: bool) -> bool:
    """Whether a run may hand off: none of the things that must act between two steps."""
    return (os.environ.get("RAY_ORCH_HANDOFF", "1") != "0" and not cache and not manager
            and not budget)


def token_visit(token: str) -> int:
    """The visit of the task a hand-off token (``HandOffs.token``) was issued for.

    Example:
        >>> token_visit("draft#2#17"), token_visit("a#b#1#3~1"), token_visit("x~y#3#4")
        (2, 1, 3)
    """
    return int(re.sub(r"~\d+$", "", token).rsplit("#", 2)[1])


@dataclass(kw_only=True, eq=False)
class Handed:
    """A follower queued behind its predecessor (see ``HandOffs.hand_off``)."""

    dispatch: Dispatch
    after: str
    after_token: str
    after_member: Any  # the member running the predecessor
    pool: Any
    member: Any
    ref: Any
    token: str
    carried: bool = False  # the call carries the member's bind
    claimed: bool = False


class HandOffs:
    """The hand-offs of one run: where each running task's visit runs, by task name,
    and the followers queued behind one, by the follower's name."""

    def __init__(self, *, enabled: bool, graph: Graph, scheduler: Scheduler, remote: Remote,
                 members_key: str, pools: Callable[[], Any],
                 agent_for: Callable[[Any], Any], can_follow: Callable[[Any], bool]) -> None:
        self.enabled = enabled
        self.graph = graph
        self.scheduler = scheduler
        self.remote = remote
        self.members_key = members_key
        self.pools = pools
        self.agent_for = agent_for
        self.can_follow = can_follow
        self.running_on: dict[str, tuple[Any, Any, str]] = {}  # pool, member, token
        self.handed: dict[str, Handed] = {}
        self.tokens_issued = 0

    def leads(self, name: str) -> bool:
        """Whether a hand-off may follow ``name`` (something depends on it): only then
        does its member record its output before returning it."""
        return bool(self.scheduler.dependants.get(name))

    def token(self, name: str, visit: int) -> str:
        """What a member knows one send of a task by (unique in the run)."""
        self.tokens_issued += 1
        return f"{name}#{visit}#{self.tokens_issued}"

    def sent(self, dispatch: Dispatch, pool: Any, member: Any, token: str) -> None:
        """``dispatch`` is on its way to ``member``: queue its followers there."""
        # Sent again (its member died): followers of the old member's run cannot follow.
        for name in [n for n, h in self.handed.items()
                     if h.after == dispatch.task and h.after_member is not member]:
            self.drop(name)
        self.running_on[dispatch.task] = (pool, member, token)
        for name in self.scheduler.dependants.get(dispatch.task, []):
            self.hand_off(name, dispatch.task)

    def sending_again(self, task: str) -> None:
        """``task`` is sent again (a fallback agent's turn, an override's second call):
        followers of the first send hold slots this one may need; they cannot follow."""
        if self.handed and task in self.running_on:
            for name in [n for n, h in self.handed.items() if h.after == task]:
                self.drop(name)

    def waiting_on(self, done: str) -> None:
        """``done`` may have been the last input but one of a task whose other input runs."""
        if not self.enabled:
            return
        for name in self.scheduler.dependants.get(done, []):
            if self.scheduler.state.get(name) != "waiting" or name in self.handed:
                continue
            node = self.graph.nodes[name]
            open_inputs = {u for u in node.deps + node.after
                           if self.scheduler.state[u] != "completed"}
            if len(open_inputs) == 1:
                self.hand_off(name, open_inputs.pop())

    def hand_off(self, name: str, after: str) -> None:
        """Queue ``name`` behind the running ``after``, if the scheduler's next dispatch
        of it is certain and a slot of its agent's pool is free."""
        if name in self.handed or after not in self.running_on:
            return
        predicted = self.scheduler.follower(name, after)
        if predicted is None:
            return
        task = self.graph.nodes[name].task
        after_pool, after_member, after_token = self.running_on[after]
        agent = self.agent_for(task)
        if agent is None or not self.can_follow(task):
            return
        # A follower waits in a slot of its own agent's pool (its max_concurrency holds):
        # the same agent's, in the member running its predecessor; another agent's, in a
        # member of that agent's pool, to which the predecessor's member sends the output.
        pool = self.pools().pool_for(agent)
        if pool is after_pool:
            member = after_member if pool.reserve(after_member) else None
        else:
            member = pool.reserve_any()
        if member is None:
            return
        token = self.token(name, predicted.visit)
        context = {d: self.scheduler.outputs[d] for d in predicted.context if d != after}
        ref, carried = pool.hand_off(member, self.members_key, after_token, pool.key, name,
                                     context, token, predicted.context,
                                     leads=self.leads(name))
        if member is not after_member:
            after_member.handle.forward.remote(self.members_key, after_token, member.handle)
        self.handed[name] = Handed(dispatch=predicted, after=after, after_token=after_token,
                                   after_member=after_member, pool=pool, member=member,
                                   ref=ref, token=token, carried=carried)

    def take(self, dispatch: Dispatch, pool: Any, inputs: Any) -> Handed | None:
        """The claimed hand-off that is exactly this send of ``dispatch``, if any; any
        other hand-off of that task is cancelled."""
        handed = self.handed.pop(dispatch.task, None)
        if handed is not None and not (handed.claimed and handed.pool is pool and
                                       handed.dispatch == dispatch and inputs is None):
            self.cancel(handed)
            return None
        return handed

    def not_adopted(self, dispatch: Dispatch, handed: Handed) -> None:
        """A claimed hand-off did not run after all: what was queued behind it cannot."""
        for name in [n for n, h in self.handed.items() if h.after_token == handed.token]:
            self.drop(name)
        self.running_on.pop(dispatch.task, None)

    def claim(self, settled: str, dispatches: list[Dispatch],
              output: TaskOutput | None = None) -> list[Dispatch]:
        """Mark the hand-offs behind ``settled`` that match what the scheduler dispatches
        now; cancel the others (their predecessor failed, or the run took another way).
        ``output``: what ``settled`` returned, when it succeeded."""
        self.running_on.pop(settled, None)
        if not self.handed:
            return dispatches
        for dispatch in dispatches:
            handed = self.handed.get(dispatch.task)
            if handed is not None and handed.after == settled and handed.dispatch == dispatch:
                handed.claimed = True
                if handed.member is not handed.after_member:
                    # Also from here: the predecessor's member may die before it forwards.
                    handed.member.handle.deliver.remote(
                        self.members_key, handed.after_token,
                        None if output is None else (settled, output))
        for name in [n for n, h in self.handed.items() if h.after == settled and not h.claimed]:
            self.drop(name)
        return dispatches

    def drop(self, name: str) -> None:
        """Cancel the hand-off of ``name``."""
        self.cancel(self.handed.pop(name))

    def drop_all(self) -> None:
        """Cancel every hand-off (the run is ending)."""
        for name in list(self.handed):
            self.drop(name)

    def cancel(self, handed: Handed) -> None:
        """Stop a queued follower and give its slot back."""
        self.remote.cancel(handed.ref)
        if handed.carried:  # it may not have run: the member's other calls need the bind
            handed.pool._bind_again(handed.member)
        handed.pool.unreserve(handed.member)
