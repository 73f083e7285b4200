"""A task two branches reach runs once, whichever branch arrives first; a cycle through a
decision still re-enters it (PraisonAI's customer-service shape, without Ray)."""

from __future__ import annotations

import pytest

from ray_orch import Task, TaskOutput
from ray_orch.engine.graph import build_graph, name_tasks
from ray_orch.engine.scheduler import Scheduler


class A:
    role = "A"

    def chat(self, prompt):
        return ""


def out(name, **meta):
    return TaskOutput(raw=name, task_id=name, metadata=meta)


def customer_service():
    a = A()
    tasks = {
        "classify": Task(description="c", agent=a, task_type="decision",
                         condition={"high": ["handle", "evaluate"], "low": ["handle"]}),
        "handle": Task(description="h", agent=a, next_tasks=["evaluate"]),
        "evaluate": Task(description="e", agent=a, next_tasks=["optimize"]),
        "optimize": Task(description="o", agent=a, task_type="decision",
                         condition={"revise": ["classify"], "keep": []}),
    }
    return Scheduler(build_graph(name_tasks(tasks), "workflow", has_default_agent=True))


@pytest.mark.parametrize("first", ["handle", "evaluate"])
def test_a_task_two_branches_reach_runs_once_whichever_finishes_first(first):
    s = customer_service()
    ran = [d.task for d in s.start()]
    ran += [d.task for d in s.completed("classify", out("classify", decision="high"))]
    assert sorted(ran) == ["classify", "evaluate", "handle"]
    second = "evaluate" if first == "handle" else "handle"
    ran += [d.task for d in s.completed(first, out(first))]
    ran += [d.task for d in s.completed(second, out(second))]
    # evaluate ran (or was running) when handle's next_tasks reached it: not again
    assert ran.count("evaluate") == 1 and ran.count("optimize") == 1
    assert not s.completed("optimize", out("optimize", decision="keep"))
    assert s.finished and s.visits == {"classify": 1, "handle": 1, "evaluate": 1,
                                       "optimize": 1}


def test_a_cycle_through_a_decision_still_reenters_its_tasks():
    s = customer_service()
    s.start()
    s.completed("classify", out("classify", decision="low"))
    assert [d.task for d in s.completed("handle", out("handle"))] == ["evaluate"]
    assert [d.task for d in s.completed("evaluate", out("evaluate"))] == ["optimize"]
    again = s.completed("optimize", out("optimize", decision="revise"))
    assert [d.task for d in again] == ["classify"]
    assert [d.task for d in s.completed("classify", out("classify", decision="low"))] == \
        ["handle"]
    # handle's second visit follows evaluate's first: evaluate runs again, once
    assert [d.task for d in s.completed("handle", out("handle"))] == ["evaluate"]
    assert s.visits["evaluate"] == 2


def test_a_decision_follows_only_its_route_not_its_next_tasks():
    a = A()
    tasks = {
        "route": Task(description="r", agent=a, task_type="decision",
                      next_tasks=["w1", "w2", "w3"],
                      condition={"1": ["w1"], "2": ["w2"], "3": ["w3"]}),
        "w1": Task(description="1", agent=a),
        "w2": Task(description="2", agent=a),
        "w3": Task(description="3", agent=a),
        "only_next": Task(description="n", agent=a),
    }
    tasks["route"].next_tasks.append("only_next")
    s = Scheduler(build_graph(name_tasks(tasks), "workflow", has_default_agent=True))
    assert [d.task for d in s.start()] == ["route"]  # only_next waits to be routed to
    assert [d.task for d in s.completed("route", out("route", decision="2"))] == ["w2"]
    assert not s.completed("w2", out("w2"))
    assert s.statuses() == {"route": "completed", "w1": "skipped", "w2": "completed",
                            "w3": "skipped", "only_next": "skipped"}


def test_a_loop_whose_items_take_a_decision_routes_each_item_on_its_own():
    a = A()
    tasks = {
        "triage": Task(description="Classify: {item}", agent=a, task_type="loop",
                       loop_data=["refund please", "app crashes", "refund now"],
                       condition={"billing": ["billing_desk"], "tech": ["tech_desk"],
                                  "spam": ["spam_desk"]}, next_tasks=["report"]),
        "billing_desk": Task(description="Refund: {item}", agent=a),
        "tech_desk": Task(description="Fix: {item}", agent=a),
        "spam_desk": Task(description="Drop: {item}", agent=a),
        "report": Task(description="Report", agent=a),
    }
    s = Scheduler(build_graph(name_tasks(tasks), "workflow", has_default_agent=True))
    first = s.start()
    assert [(d.task, d.iteration) for d in first] == [("triage", 0), ("triage", 1),
                                                       ("triage", 2)]
    # each item goes to its branch the moment it is classified, beside the others
    fed = s.iteration_completed("triage", 1, out("triage", decision="tech"))
    assert [(d.task, d.iteration, d.inputs["item"], d.inputs["route"]) for d in fed] == \
        [("tech_desk", 1, "app crashes", "tech")]
    fed = s.iteration_completed("triage", 0, out("triage", decision="billing"))
    assert [(d.task, d.iteration) for d in fed] == [("billing_desk", 0)]
    assert not s.iteration_completed("tech_desk", 1, out("fixed"))  # tech waits: more may come
    fed = s.iteration_completed("triage", 2, out("triage", decision="billing"))
    # the last item routed: tech_desk (1 item, done) completes; the loop's next_tasks follow
    assert [(d.task, d.iteration) for d in fed] == [("billing_desk", 2), ("report", None)]
    assert s.state["tech_desk"] == "completed"
    assert not s.iteration_completed("billing_desk", 2, out("refund 2"))
    assert not s.iteration_completed("billing_desk", 0, out("refund 0"))
    assert [o.raw for o in s.outputs["billing_desk"].iterations] == ["refund 0", "refund 2"]
    assert not s.completed("report", out("report"))
    assert s.finished and s.statuses()["spam_desk"] == "skipped"
