"""Human in the loop: a task's output waits for approval, edits or a rejection, inline
through a handler or paused durably and continued from another process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from approval_driver import build

from ray_orch import (
    Agent,
    ApprovalError,
    ApprovalRequest,
    Approve,
    Edit,
    Process,
    Reject,
    RunPaused,
    Task,
    TaskFailedError,
)

pytestmark = pytest.mark.usefixtures("ray_session")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def two_steps(stub, handler=None, **draft_options):
    writer = Agent(role="Writer", goal="Write", llm=stub.llm)
    tasks = {"draft": Task(description="Draft the post", agent=writer, human_input=True,
                           **draft_options),
             "publish": Task(description="Publish the post", agent=writer,
                             context=["draft"])}
    return Process(tasks=tasks, agents=[writer], approval_handler=handler)


def test_an_inline_handler_approves_and_never_pauses(stub):
    stub.add_rule(match="Draft", reply="First draft")
    seen: list[ApprovalRequest] = []

    def handler(request):
        seen.append(request)
        assert stub.count("Publish") == 0  # nothing downstream has started
        return Approve()

    results = two_steps(stub, handler).workflow()
    [request] = seen
    assert request.task == "draft" and request.output.raw == "First draft"
    assert request.id and request.tool is None and request.arguments is None
    approval = results["draft"].metadata["approval"]
    assert approval["answer"] == "approve" and approval["request_id"] == request.id
    assert approval["by"] == "handler" and approval["at"] > 0
    assert stub.count("Publish") == 1


def test_an_edit_replaces_the_output_downstream_sees(stub):
    stub.add_rule(match="Draft", reply="First draft")
    results = two_steps(stub, lambda r: Edit("Edited by a person")).workflow()
    assert results["draft"].raw == "Edited by a person"
    [publish] = stub.requests_matching("Publish")
    assert "Edited by a person" in publish.prompt and "First draft" not in publish.prompt


async def test_a_rejection_asks_again_with_the_reason(stub):
    stub.add_rule(match="Draft", reply=["Too long draft", "Short draft"])
    answers = iter([Reject("too long, halve it"), Approve()])

    async def handler(request):  # async handlers are awaited
        return next(answers)

    results = await two_steps(stub, handler).aworkflow()
    assert results["draft"].raw == "Short draft"
    first, second = stub.requests_matching("Draft")
    assert "too long, halve it" not in first.prompt
    assert "too long, halve it" in second.prompt


def test_a_rejection_fails_the_task_with_on_reject_fail(stub):
    process = two_steps(stub, lambda r: Reject("no"), on_reject="fail")
    with pytest.raises(TaskFailedError, match="rejected: no"):
        process.workflow()
    assert stub.count("Publish") == 0


def test_a_failing_handler_is_a_typed_error(stub):
    def handler(request):
        raise RuntimeError("the reviewer's service is down")

    with pytest.raises(ApprovalError, match="service is down") as caught:
        two_steps(stub, handler).workflow()
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_no_way_to_ask_is_refused_before_any_call(stub):
    with pytest.raises(ApprovalError, match="no way to ask") as caught:
        two_steps(stub).workflow()  # no handler, no terminal under pytest, no checkpoints
    assert caught.value.task == "draft" and stub.count() == 0


def test_a_paused_run_continues_from_another_process_with_an_edit(stub, tmp_path):
    done = subprocess.run([sys.executable, str(HERE / "approval_driver.py"), stub.base_url,
                           str(tmp_path)], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    paused = json.loads(done.stdout.strip().splitlines()[-1])
    [request] = paused["requests"]
    assert request["task"] == "draft"
    # The other branch went on while the draft waited; nothing downstream of it ran.
    assert paused["completed"] == ["research", "side"]
    assert stub.count("Publish") == 0
    assert (tmp_path / "ray_orch.sqlite").stat().st_mode & 0o077 == 0
    # A new driver (this process), after the first exited, with the database reopened.
    process = build(stub.llm, str(tmp_path))
    results = process.workflow(resume=paused["run_id"],
                               answers={request["id"]: Edit("The approved post")})
    assert results["draft"].raw == "The approved post"
    assert results["draft"].metadata["approval"]["answer"] == "edit"
    for step in ("Research", "Draft", "Side branch"):
        assert stub.count(step) == 1, step  # asked once, before the pause
    [publish] = stub.requests_matching("Publish")
    assert "The approved post" in publish.prompt


def test_answers_are_checked_against_the_pending_requests(stub, tmp_path):
    with pytest.raises(RunPaused) as caught:
        build(stub.llm, str(tmp_path)).workflow()
    paused = caught.value
    [request] = paused.requests
    assert paused.run_id and request.output is not None
    process = build(stub.llm, str(tmp_path))
    with pytest.raises(ApprovalError, match="no pending request 'nope'"):
        process.workflow(resume=paused.run_id, answers={"nope": Approve()})
    with pytest.raises(ApprovalError, match="must be Approve"):
        process.workflow(resume=paused.run_id, answers={request.id: "yes"})
    asked = stub.count()
    # Resumed without an answer, it asks again, running nothing again.
    with pytest.raises(RunPaused) as again:
        process.workflow(resume=paused.run_id)
    assert [r.id for r in again.value.requests] == [request.id]
    assert stub.count() == asked


def test_the_command_line_lists_and_answers_paused_runs(stub, tmp_path):
    with pytest.raises(RunPaused) as caught:
        build(stub.llm, str(tmp_path)).workflow()
    run_id, request = caught.value.run_id, caught.value.requests[0]
    cli = [sys.executable, "-m", "ray_orch.cli"]
    listed = subprocess.run([*cli, "runs", "--pending", "--dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert listed.returncode == 0, listed.stderr
    assert run_id in listed.stdout and request.id in listed.stdout
    answered = subprocess.run([*cli, "approve", run_id, request.id, "--dir", str(tmp_path),
                               "--reject", "needs a title"],
                              capture_output=True, text=True, timeout=300, cwd=ROOT)
    # Rejected: the draft is asked again (with the reason) and waits for approval again.
    assert answered.returncode == 3, answered.stdout + answered.stderr
    assert "paused again" in answered.stdout
    drafts = stub.requests_matching("Draft the post")
    assert len(drafts) == 2 and "needs a title" in drafts[1].prompt


def test_tool_calls_are_approved_or_rejected_before_they_run(stub, tmp_path):
    from ray_orch import tool
    from ray_orch.testing import StubLLMServer

    paid = tmp_path / "payments.txt"

    @tool(requires_approval=True)
    def pay(account: str, amount: int) -> str:
        """Pay an amount to an account."""
        with open(paid, "a") as out:
            out.write(f"{account}:{amount}\n")
        return f"paid {amount} to {account}"

    stub.reply = [StubLLMServer.tool_calls(("pay", {"account": "acme", "amount": 10}),
                                           ("pay", {"account": "mallory", "amount": 999})),
                  "Done: paid acme."]
    asked: list[ApprovalRequest] = []

    def handler(request):
        asked.append(request)
        return Approve() if request.arguments["account"] == "acme" else Reject("not a payee")

    agent = Agent(role="Clerk", goal="Pay bills", llm=stub.llm, tools=[pay])
    process = Process(tasks={"bills": Task(description="Pay the bills", agent=agent)},
                      approval_handler=handler)
    results = process.workflow()
    assert sorted(r.arguments["account"] for r in asked) == ["acme", "mallory"]
    assert all(r.tool == "pay" and r.task == "bills" for r in asked)
    assert paid.read_text() == "acme:10\n"  # the rejected call never ran
    calls = {c["arguments"]["account"]: c for c in results["bills"].metadata["tool_calls"]}
    assert calls["acme"]["ok"] and not calls["mallory"]["ok"]
    # The model heard the reviewer's reason as the rejected call's result.
    final = stub.requests[-1]
    assert any("not a payee" in str(m.get("content")) for m in final.messages
               if m.get("role") == "tool")


def test_a_tool_edit_changes_the_arguments(stub, tmp_path):
    from ray_orch import tool
    from ray_orch.testing import StubLLMServer

    @tool(requires_approval=True)
    def send(to: str) -> str:
        """Send the newsletter."""
        return f"sent to {to}"

    stub.reply = [StubLLMServer.tool_call("send", {"to": "everyone"}), "ok"]
    agent = Agent(role="Mailer", goal="Mail", llm=stub.llm, tools=[send])
    process = Process(tasks={"mail": Task(description="Send it", agent=agent)},
                      approval_handler=lambda r: Edit({"to": "subscribers"}))
    [call] = process.workflow()["mail"].metadata["tool_calls"]
    assert call["ok"]
    [tool_result] = [m for m in stub.requests[-1].messages if m.get("role") == "tool"]
    assert "sent to subscribers" in str(tool_result["content"])


def test_requests_are_approval_requested_events_in_the_stream(stub):
    stub.add_rule(match="Draft", reply="First draft")
    kinds = []
    for ev in two_steps(stub, lambda r: Approve(by="editor")).stream():
        kinds.append(ev.kind)
        if ev.kind == "approval_requested":
            assert ev.task == "draft"
            assert ev.data["request"]["output"]["raw"] == "First draft"
            assert "task_completed" not in kinds  # asked before the output stands
        if ev.kind == "run_completed":
            assert ev.results["draft"].metadata["approval"]["by"] == "editor"
    assert kinds.count("approval_requested") == 1
