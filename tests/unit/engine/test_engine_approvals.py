"""Approvals in a run (``engine/approvals.py``) on the fakes: an output waits for a
person's answer, answered through the run's listener (``RunListener.answer``, what the
Supervisor wraps); a tool call asks through the listener's ``ask_tool`` before it runs;
paused, the request is stored and the run ends ``RunPaused``. No Ray."""

from __future__ import annotations

import asyncio

from ray_orch import Agent, Approve, Edit, Reject, RunPaused, Task, tool
from ray_orch.engine.listener import RunListener
from ray_orch.store.factory import open_store
from ray_orch.testing import StubLLMServer
from ray_orch.testing.fakes import run_on_fakes, spec_of


def answering(listener: RunListener, decide):
    """An ``on_event`` that answers each approval request (next turn of the loop: the
    request's future is registered right after the event)."""
    asked = []

    def on_event(event, run):
        if event.kind == "approval_requested":
            request = event.data["request"]
            asked.append(request)
            asyncio.get_running_loop().call_soon(listener.answer, request["id"],
                                                 decide(request))

    return on_event, asked


def test_an_approved_output_goes_downstream_and_records_the_answer(stub):
    writer = Agent(role="Writer", goal="Write", llm=stub.llm)
    tasks = [Task(name="draft", description="Draft the post", agent=writer, human_input=True),
             Task(name="publish", description="Publish it", agent=writer, context=["draft"])]
    listener = RunListener()
    on_event, asked = answering(listener, lambda r: Approve(by="editor"))
    result, _ = run_on_fakes(spec_of(tasks, [writer], approvals="inline"),
                             listener=listener, on_event=on_event)
    assert result.error is None and [r["task"] for r in asked] == ["draft"]
    approval = result.outputs["draft"].metadata["approval"]
    assert approval["answer"] == "approve" and approval["by"] == "editor"
    assert approval["request_id"] == asked[0]["id"]


def test_an_edit_replaces_the_output_that_downstream_sees(stub):
    writer = Agent(role="Writer", goal="Write", llm=stub.llm)
    tasks = [Task(name="draft", description="Draft the post", agent=writer, human_input=True),
             Task(name="publish", description="Publish it", agent=writer, context=["draft"])]
    listener = RunListener()
    on_event, _ = answering(listener, lambda r: Edit("The edited post"))
    result, _ = run_on_fakes(spec_of(tasks, [writer], approvals="inline"),
                             listener=listener, on_event=on_event)
    assert result.outputs["draft"].raw == "The edited post"
    assert "The edited post" in stub.requests_matching("Publish it")[0].prompt


def test_a_tool_call_is_asked_through_the_listener_before_it_runs(stub):
    paid = []

    @tool(requires_approval=True)
    def pay(account: str, amount: int) -> str:
        """Pay an amount to an account."""
        paid.append(account)
        return f"paid {amount} to {account}"

    stub.reply = [StubLLMServer.tool_calls(("pay", {"account": "acme", "amount": 10}),
                                           ("pay", {"account": "mallory", "amount": 999})),
                  "Done."]
    clerk = Agent(role="Clerk", goal="Pay bills", llm=stub.llm, tools=[pay])
    listener = RunListener()
    on_event, asked = answering(listener, lambda r: Approve() if r["arguments"]["account"]
                                == "acme" else Reject("not a payee"))
    result, _ = run_on_fakes(spec_of([Task(name="bills", description="Pay the bills",
                                           agent=clerk)], [clerk], approvals="inline"),
                             listener=listener, on_event=on_event)
    assert result.error is None
    assert sorted(r["arguments"]["account"] for r in asked) == ["acme", "mallory"]
    assert paid == ["acme"]  # the rejected call never ran
    final = stub.requests[-1]
    assert any("not a payee" in str(m.get("content")) for m in final.messages
               if m.get("role") == "tool")


def test_without_a_listener_a_tool_call_needing_approval_is_refused(stub):
    @tool(requires_approval=True)
    def wipe(disk: str) -> str:
        """Wipe a disk."""
        raise AssertionError("must not run")

    stub.reply = [StubLLMServer.tool_calls(("wipe", {"disk": "sda"})), "Gave up."]
    ops = Agent(role="Ops", goal="Operate", llm=stub.llm, tools=[wipe])
    result, _ = run_on_fakes(spec_of([Task(name="op", description="Wipe it", agent=ops)],
                                     [ops]))
    assert result.error is None and result.outputs["op"].raw == "Gave up."
    calls = result.outputs["op"].metadata["tool_calls"]
    assert [c["ok"] for c in calls] == [False]


def test_paused_the_request_is_stored_and_the_run_ends_paused(stub, tmp_path):
    writer = Agent(role="Writer", goal="Write", llm=stub.llm)
    tasks = [Task(name="draft", description="Draft the post", agent=writer, human_input=True),
             Task(name="publish", description="Publish it", agent=writer, context=["draft"])]
    result, events = run_on_fakes(spec_of(tasks, [writer], approvals="pause",
                                          store=open_store(tmp_path)))
    assert isinstance(result.error, RunPaused)
    assert [r.task for r in result.error.requests] == ["draft"]
    assert stub.count("Publish it") == 0
    assert [e.kind for e in events].count("approval_requested") == 1


def interrupting(stop_when):
    """An ``on_event`` that cancels the run (as Ctrl-C does, through the Supervisor) when
    ``stop_when(event)`` says so; the run's main job is the one that emitted
    ``run_started``."""
    main = {}

    def on_event(event, run):
        if event.kind == "run_started":
            main["job"] = asyncio.current_task()
        elif stop_when(event):
            asyncio.get_running_loop().call_soon(main["job"].cancel)

    return on_event


def test_an_output_awaiting_approval_when_interrupted_is_asked_again_on_resume(stub, tmp_path):
    writer = Agent(role="Writer", goal="Write", llm=stub.llm)
    tasks = [Task(name="draft", description="Draft the post", agent=writer, human_input=True),
             Task(name="publish", description="Publish it", agent=writer, context=["draft"])]
    store = open_store(tmp_path)
    first, events = run_on_fakes(
        spec_of(tasks, [writer], approvals="inline", store=store),
        listener=RunListener(),
        on_event=interrupting(lambda e: e.kind == "approval_requested"))
    assert first.statuses["draft"] == "pending" and stub.count() == 1
    [asked] = [e.data["request"] for e in events if e.kind == "approval_requested"]
    listener = RunListener()
    on_event, again = answering(listener, lambda r: Approve(by="editor"))
    second, _ = run_on_fakes(spec_of(tasks, [writer], approvals="inline", store=store,
                                     resume=True), listener=listener, on_event=on_event)
    assert second.error is None
    assert [r["id"] for r in again] == [asked["id"]]  # the same question
    assert stub.count("Draft the post") == 1  # not asked of the model again
    assert stub.count("Publish it") == 1
    assert open_store(tmp_path).pending_requests("r1") == []  # answered, in the store too


def test_a_tool_call_awaiting_approval_when_interrupted_is_asked_again_on_resume(
        stub, tmp_path):
    paid = []

    @tool(requires_approval=True)
    def pay(account: str, amount: int) -> str:
        """Pay an amount to an account."""
        paid.append(account)
        return f"paid {amount} to {account}"

    def script(request):
        if not request.tool_results:
            return StubLLMServer.tool_call("pay", {"account": "acme", "amount": 10})
        return f"Done: {request.tool_results[-1]['content']}"

    stub.reply = script
    clerk = Agent(role="Clerk", goal="Pay bills", llm=stub.llm, tools=[pay])
    tasks = [Task(name="bills", description="Pay the bills", agent=clerk)]
    store = open_store(tmp_path)
    first, _ = run_on_fakes(spec_of(tasks, [clerk], approvals="inline", store=store),
                            listener=RunListener(),
                            on_event=interrupting(lambda e: e.kind == "approval_requested"))
    assert first.error is not None and stub.count() == 1 and paid == []
    listener = RunListener()
    on_event, again = answering(listener, lambda r: Approve())
    second, _ = run_on_fakes(spec_of(tasks, [clerk], approvals="inline", store=store,
                                     resume=True), listener=listener, on_event=on_event)
    assert second.error is None and second.outputs["bills"].raw == "Done: paid 10 to acme"
    assert [(r["tool"], r["arguments"]) for r in again] == [
        ("pay", {"account": "acme", "amount": 10})]
    assert stub.count() == 2 and paid == ["acme"]  # the proposing turn was not asked again
    # A later attempt that reaches the same point asks the model: the kept turn was
    # answered.
    from ray_orch.tools.journal import journaled_calls

    assert [c["tool"] for c in journaled_calls(store, "r1")] == ["pay"]
