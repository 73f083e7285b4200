"""The retrieval step on its own: what fits in the budget goes in, best first; what the
prompt already holds is left out; users never mix; no Ray, no model."""

from __future__ import annotations

from ray_orch import Memory, Task
from ray_orch.core.prompt import ContextItem, PromptParts
from ray_orch.policy.recall import MemoryPlan, memory_plan, recall


def _parts(description: str, context: str = "") -> PromptParts:
    items = [ContextItem(name="a", text=context)] if context else []
    return PromptParts(description=description, context=items)


def test_recall_fills_what_the_budget_leaves_best_first(tmp_path):
    memory = Memory(tmp_path)
    memory.add("The client's budget for the kitchen is 12,000 euros", user_id="c")
    memory.add("The client wants oak cabinets " + "and a long explanation " * 40,
               user_id="c")
    plan = MemoryPlan(memory=memory, user_id="c")
    task = Task(description="Plan the kitchen within the client's budget")
    roomy = _parts(task.description)
    meta = recall(task, None, plan, roomy, budget=None)
    assert [i["kind"] for i in meta["recalled"]] == ["memory", "memory"]
    assert meta["recalled"][0]["score"] >= meta["recalled"][1]["score"]
    tight = _parts(task.description)
    budget = len(tight.render().encode()) + 120  # room for the short memory only
    meta = recall(task, None, plan, tight, budget=budget)
    assert [m.text for m in tight.memories] == [
        "The client's budget for the kitchen is 12,000 euros"]
    assert len(tight.render().encode()) <= budget
    assert "Relevant memories" in tight.render()
    full = _parts(task.description)
    assert recall(task, None, plan, full, budget=len(full.render().encode()))["recalled"] == []


def test_what_the_context_holds_is_not_recalled_again(tmp_path):
    memory = Memory(tmp_path)
    memory.add("The venue is the Old Mill", user_id="e")
    parts = _parts("Where is the event?", context="the venue is the old mill")
    recall(Task(description="x"), None, MemoryPlan(memory=memory, user_id="e"), parts,
           budget=None)
    assert parts.memories == []


def test_another_users_memories_never_come_back(tmp_path):
    memory = Memory(tmp_path)
    memory.add("Dana's account number ends in 4417", user_id="dana")
    parts = _parts("What does Dana's account number end in?")
    meta = recall(Task(description="x"), None, MemoryPlan(memory=memory, user_id="eve"),
                  parts, budget=None)
    assert meta["recalled"] == [] and "4417" not in parts.render()


def test_process_keywords_make_a_plan(tmp_path):
    assert memory_plan({}, who="Process") is None
    plan = memory_plan({"memory": str(tmp_path), "memory_config": {
        "config": {"user_id": "john"}, "limit": 2}}, who="Process")
    assert plan.user_id == "john" and plan.limit == 2
    assert plan.memory.location == str(tmp_path)
