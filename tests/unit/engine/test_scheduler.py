"""The scheduler without Ray: no barriers, routing, skips, loops, cycles, failure policy."""

from __future__ import annotations

import pytest

from ray_orch import Task, TaskOutput
from ray_orch.core.errors import StepLimitError, TaskFailedError
from ray_orch.engine.graph import build_graph, name_tasks
from ray_orch.engine.scheduler import Scheduler


class A:
    role = "A"

    def chat(self, prompt):
        return ""


def graph(tasks, mode="workflow"):
    return build_graph(name_tasks(tasks), mode, has_default_agent=True)


def out(name, **meta):
    return TaskOutput(raw=name, task_id=name, metadata=meta)


def names(dispatches):
    return sorted(d.task for d in dispatches)


def test_no_barrier_a_task_starts_when_its_own_inputs_are_ready():
    a = A()
    g = graph({
        "fast1": Task(description="f1", agent=a),
        "fast2": Task(description="f2", agent=a, context=["fast1"]),
        "slow": Task(description="s", agent=a),
        "join": Task(description="j", agent=a, context=["fast2", "slow"]),
    })
    s = Scheduler(g)
    assert names(s.start()) == ["fast1", "slow"]
    assert names(s.completed("fast1", out("fast1"))) == ["fast2"]  # slow still running
    assert names(s.completed("fast2", out("fast2"))) == []
    assert names(s.completed("slow", out("slow"))) == ["join"]
    assert s.completed("join", out("join")) == [] and s.finished


def test_unrouted_tasks_are_skipped_and_their_waiters_settle():
    a = A()
    g = graph({
        "decide": Task(description="d", agent=a, task_type="decision",
                       condition={"x": ["left"], "y": ["right"]}),
        "left": Task(description="l", agent=a),
        "right": Task(description="r", agent=a),
        "after_right": Task(description="ar", agent=a, context=["right"]),
        "tolerant": Task(description="t", agent=a, context=["left", "right"],
                         handle_missing_context=True),
    })
    s = Scheduler(g)
    assert names(s.start()) == ["decide"]
    assert names(s.completed("decide", out("decide", decision="x"))) == ["left"]
    nxt = s.completed("left", out("left"))
    assert names(nxt) == ["tolerant"]
    assert nxt[0].missing == {"right": "skipped"} and nxt[0].context == ["left"]
    s.completed("tolerant", out("tolerant"))
    st = s.statuses()
    assert st["right"] == "skipped" and st["after_right"] == "skipped"
    assert st["tolerant"] == "completed" and s.finished


def test_failure_policy_fail_aborts_continue_skips_dependants():
    a = A()
    tasks = {"a": Task(description="a", agent=a), "b": Task(description="b", agent=a,
                                                              context=["a"]),
             "c": Task(description="c", agent=a)}
    s = Scheduler(graph(tasks))
    s.start()
    s.failed("a", TaskFailedError("boom", task="a"))
    assert isinstance(s.abort, TaskFailedError)

    s = Scheduler(graph(tasks), on_failure="continue")
    s.start()
    assert s.failed("a", TaskFailedError("boom", task="a")) == []
    s.completed("c", out("c"))
    assert s.statuses() == {"a": "failed", "b": "skipped", "c": "completed"}


def test_graceful_degradation_shape():
    a = A()
    tasks = {
        "primary_analysis": Task(description="p", agent=a, max_retries=2),
        "fallback_analysis": Task(description="f", agent=a, condition_on_previous_failure=True),
        "report": Task(description="r", agent=a,
                       context=["primary_analysis", "fallback_analysis"],
                       handle_missing_context=True),
    }
    s = Scheduler(graph(tasks))
    assert names(s.start()) == ["primary_analysis"]
    assert names(s.failed("primary_analysis", TaskFailedError("x"))) == ["fallback_analysis"]
    report = s.completed("fallback_analysis", out("fallback_analysis"))
    assert report[0].missing == {"primary_analysis": "failed"}
    assert s.abort is None

    s = Scheduler(graph(tasks))
    s.start()
    assert names(s.completed("primary_analysis", out("p"))) == ["report"]
    assert s.statuses()["fallback_analysis"] == "skipped"


def test_loop_iterations_in_order_and_resume_skips_done_ones():
    a = A()
    tasks = {"loop": Task(description="do {item}", agent=a, task_type="loop",
                          loop_data=["x", "y", "z"]),
             "sum": Task(description="sum", agent=a, context=["loop"])}
    restored_iter = {("loop", 1): {0: out("x0")}}
    s = Scheduler(graph(tasks), restored_iterations=restored_iter)
    first = s.start()
    assert [d.iteration for d in first] == [1, 2]
    s.iteration_completed("loop", 2, out("z2"))
    nxt = s.iteration_completed("loop", 1, out("y1"))
    assert names(nxt) == ["sum"]
    assert [o.raw for o in s.outputs["loop"].iterations] == ["x0", "y1", "z2"]


def test_resume_completes_restored_tasks_without_dispatch():
    a = A()
    tasks = {"a": Task(description="a", agent=a), "b": Task(description="b", agent=a,
                                                              context=["a"])}
    s = Scheduler(graph(tasks), restored={("a", 1): out("a")})
    assert names(s.start()) == ["b"]
    assert s.resumed == ["a"]


def test_cycles_are_bounded_by_visits_and_steps():
    a = A()
    tasks = {
        "draft": Task(description="d", agent=a, next_tasks=["review"]),
        "review": Task(description="r", agent=a, task_type="decision",
                       condition={"again": ["draft"], "ok": []}),
    }
    s = Scheduler(graph(tasks), max_visits=2)
    s.start()
    s.completed("draft", out("d"))
    s.completed("review", out("r", decision="again"))
    s.completed("draft", out("d"))
    s.completed("review", out("r", decision="again"))
    assert isinstance(s.abort, StepLimitError)

    s = Scheduler(graph(tasks), max_visits=100, max_steps=3)
    s.start()
    s.completed("draft", out("d"))
    s.completed("review", out("r", decision="again"))
    assert s.abort is None
    s.completed("draft", out("d"))
    assert isinstance(s.abort, StepLimitError)


def test_sequential_order_edges_and_async_neighbours():
    a = A()
    tasks = {
        "x": Task(description="x", agent=a, async_execution=True),
        "y": Task(description="y", agent=a, async_execution=True),
        "z": Task(description="z", agent=a),
        "w": Task(description="w", agent=a),
    }
    s = Scheduler(graph(tasks, mode="sequential"))
    assert names(s.start()) == ["x", "y"]
    assert names(s.completed("x", out("x"))) == []
    z = s.completed("y", out("y"))
    assert names(z) == ["z"] and z[0].context == ["y"]
    w = s.completed("z", out("z"))
    assert names(w) == ["w"] and w[0].context == ["z"]


@pytest.mark.parametrize("mode", ["workflow", "sequential"])
def test_statuses_end_in_known_states(mode):
    a = A()
    s = Scheduler(graph({"only": Task(description="o", agent=a)}, mode=mode))
    s.start()
    s.completed("only", out("only"))
    assert s.statuses() == {"only": "completed"}


def test_degradation_in_sequential_mode_reads_whichever_ran():
    a = A()
    tasks = {
        "primary_analysis": Task(description="p", agent=a),
        "fallback_analysis": Task(description="f", agent=a, condition_on_previous_failure=True),
        "report": Task(description="r", agent=a),
    }
    s = Scheduler(graph(tasks, mode="sequential"))
    s.start()
    fallback = s.failed("primary_analysis", TaskFailedError("x"))
    assert names(fallback) == ["fallback_analysis"] and fallback[0].context == []
    report = s.completed("fallback_analysis", out("f"))
    assert names(report) == ["report"] and report[0].context == ["fallback_analysis"]

    s = Scheduler(graph(tasks, mode="sequential"))
    s.start()
    report = s.completed("primary_analysis", out("p"))
    assert names(report) == ["report"] and report[0].context == ["primary_analysis"]
    assert s.statuses()["fallback_analysis"] == "skipped"


def test_branches_joining_through_next_tasks_run_the_join_once():
    a = A()
    tasks = {
        "split": Task(description="s", agent=a, next_tasks=["left", "right"]),
        "left": Task(description="l", agent=a, next_tasks=["notify"]),
        "right": Task(description="r", agent=a, next_tasks=["notify"]),
        "notify": Task(description="n", agent=a),
    }
    s = Scheduler(graph(tasks))
    s.start()
    s.completed("split", out("s"))
    assert names(s.completed("left", out("l"))) == ["notify"]
    s.completed("notify", out("n"))
    assert s.completed("right", out("r")) == []  # notify already ran: not again
    assert s.visits["notify"] == 1 and s.finished


def test_stragglers_of_an_earlier_loop_visit_are_ignored():
    a = A()
    tasks = {
        "loop": Task(description="do {item}", agent=a, task_type="loop", loop_data=["x", "y"]),
        "check": Task(description="c", agent=a, task_type="decision",
                      condition={"again": ["loop"], "done": []},
                      condition_on_previous_failure=True),
    }
    s = Scheduler(graph(tasks), on_failure="continue")
    first = s.start()
    assert [d.visit for d in first] == [1, 1]
    s.failed("loop", TaskFailedError("x"), visit=1)  # iteration 0 fails
    again = s.completed("check", out("c", decision="again"))
    assert [d.visit for d in again] == [2, 2]
    s.iteration_completed("loop", 1, out("STALE"), visit=1)  # visit 1's straggler
    s.iteration_completed("loop", 0, out("x2"), visit=2)
    s.iteration_completed("loop", 1, out("y2"), visit=2)
    assert [o.raw for o in s.outputs["loop"].iterations] == ["x2", "y2"]


def test_long_chains_do_not_recurse():
    a = A()
    tasks = {f"t{i}": Task(description=f"t{i}", agent=a, context=[f"t{i - 1}"] if i else [])
             for i in range(2000)}
    s = Scheduler(graph(tasks), on_failure="continue")
    s.start()
    s.failed("t0", TaskFailedError("x"))  # 1,999 skips cascade
    assert s.statuses()["t1999"] == "skipped" and s.finished

    restored = {(f"t{i}", 1): out(f"t{i}") for i in range(2000)}
    s = Scheduler(graph(tasks), restored=restored)
    assert s.start() == [] and len(s.resumed) == 2000


def test_a_users_own_exception_stays_reachable():
    class QuotaExceeded(Exception):
        pass

    a = A()
    s = Scheduler(graph({"t": Task(description="t", agent=a)}))
    s.start()
    s.failed("t", QuotaExceeded("tenant 42 is over quota"))
    assert "QuotaExceeded: tenant 42" in str(s.abort)
    assert isinstance(s.abort.original, QuotaExceeded)
