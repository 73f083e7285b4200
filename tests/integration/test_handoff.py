"""Hand-offs: a task waiting on nothing but a running task is queued in that task's member
and starts there when it succeeds, without a Supervisor round trip. The Supervisor still
decides: what it records, skips and retries must be exactly what it does without them."""

from __future__ import annotations

import itertools

import pytest

from ray_orch import Agent, Process, Task, TaskFailedError, TaskTimeoutError

pytestmark = pytest.mark.usefixtures("ray_session")


def chain(stub, n=4, agents=1, **task_options):
    crew = [Agent(role=f"Writer {i}", goal="Write", llm=stub.llm) for i in range(agents)]
    tasks = {f"step{i}": Task(description=f"Step {i}: improve the text",
                              agent=crew[i % agents], **task_options) for i in range(n)}
    return tasks, crew


def handed(results):
    return [name for name, out in results.items() if out.metadata.get("handed_off")]


def test_a_chain_is_handed_off_and_keeps_its_context(stub):
    for i in range(4):
        stub.add_rule(match=f"Step {i}:", reply=f"text v{i}")
    tasks, crew = chain(stub)
    results = Process(tasks=tasks, agents=crew).sequential()

    # The first step is dispatched; every later one followed its predecessor in place.
    assert handed(results) == ["step1", "step2", "step3"]
    assert [r.prompt.count("text v") for r in stub.requests] == [0, 1, 1, 1]
    for i in range(1, 4):
        assert f"text v{i - 1}" in stub.requests_matching(f"Step {i}:")[0].prompt
    assert stub.count() == 4


def test_another_agents_task_follows_in_its_own_pool(stub):
    # Researcher -> writer -> researcher -> writer: each step waits in a member of its own
    # agent's pool, and the member that ran the step before sends it the output.
    for i in range(4):
        stub.add_rule(match=f"Step {i}:", reply=f"text v{i}")
    tasks, crew = chain(stub, agents=2)
    results = Process(tasks=tasks, agents=crew).sequential()
    assert [results[f"step{i}"].agent for i in range(4)] == [
        crew[i % 2].role for i in range(4)]
    # Every step but the first; the writer's member gets the run's bind with its first.
    assert handed(results) == ["step1", "step2", "step3"]
    pids = [results[f"step{i}"].metadata["actor_pid"] for i in range(4)]
    assert pids[0] == pids[2] != pids[1] == pids[3]
    for i in range(1, 4):
        assert f"text v{i - 1}" in stub.requests_matching(f"Step {i}:")[0].prompt
    assert stub.count() == 4


def test_a_follower_in_another_pool_respects_its_max_concurrency(stub):
    stub.add_rule(match="Draft", latency=0.2)
    lead = Agent(role="Lead", goal="Plan", llm=stub.llm)
    writer = Agent(role="Writer", goal="Write", llm=stub.llm, max_concurrency=1)
    tasks = {"facts": Task(description="Facts", agent=lead)}
    for part in ("intro", "body", "outro"):
        tasks[part] = Task(description=f"Draft {part}", agent=writer, context=["facts"])
    results = Process(tasks=tasks, agents=[lead, writer]).workflow()
    drafts = sorted(stub.requests_matching("Draft"), key=lambda r: r.t_start)
    assert len(drafts) == 3
    for earlier, later in itertools.pairwise(drafts):
        assert later.t_start >= earlier.t_end  # one at a time
    # The writer's one slot took one follower; the other two waited for it.
    assert len(handed({part: results[part] for part in ("intro", "body", "outro")})) == 1


def test_a_follower_in_another_pool_of_a_failed_task_never_calls_the_model(stub):
    stub.add_rule(match="Step 2:", fault="401")  # not retryable
    tasks, crew = chain(stub, agents=2, max_retries=0)
    with pytest.raises(TaskFailedError, match="step2"):
        Process(tasks=tasks, agents=crew).sequential()
    assert stub.count("Step 3:") == 0


def test_hand_offs_respect_max_concurrency(stub):
    # Three followers of one task, for an agent that runs one attempt at a time.
    stub.add_rule(match="Draft", latency=0.2)
    agent = Agent(role="Writer", goal="Write", llm=stub.llm, max_concurrency=1)
    tasks = {"facts": Task(description="Facts", agent=agent)}
    for part in ("intro", "body", "outro"):
        tasks[part] = Task(description=f"Draft {part}", agent=agent, context=["facts"])
    Process(tasks=tasks, agents=[agent]).workflow()
    drafts = sorted(stub.requests_matching("Draft"), key=lambda r: r.t_start)
    assert len(drafts) == 3
    for earlier, later in itertools.pairwise(drafts):
        assert later.t_start >= earlier.t_end  # one at a time


def test_a_follower_of_a_failed_task_never_calls_the_model(stub):
    stub.add_rule(match="Step 1:", fault="401")  # not retryable: step1 fails at once
    tasks, crew = chain(stub)
    process = Process(tasks=tasks, agents=crew)
    with pytest.raises(TaskFailedError):
        process.sequential()
    assert stub.count(lambda r: "Step 2:" in r.prompt) == 0
    assert stub.count(lambda r: "Step 3:" in r.prompt) == 0
    assert tasks["step2"].status != "completed"


def test_failure_routes_are_not_handed_off(stub):
    # step2 runs only if step1 fails: the Supervisor must see step1 first.
    stub.add_rule(match="Step 1:", fault="401")
    agent = Agent(role="Writer", goal="Write", llm=stub.llm)
    tasks = {
        "step0": Task(description="Step 0: draft", agent=agent),
        "step1": Task(description="Step 1: polish", agent=agent),
        "step2": Task(description="Step 2: repair", agent=agent,
                      condition_on_previous_failure=True),
    }
    results = Process(tasks=tasks, agents=[agent], on_failure="continue").sequential()
    assert tasks["step1"].status == "failed"
    assert results["step2"].raw == "ok" and not handed(results)


def test_retries_inside_a_handed_off_task_are_counted(stub):
    stub.add_rule(match="Step 2:", fault="500", times=2)
    tasks, crew = chain(stub, max_retries=3)
    results = Process(tasks=tasks, agents=crew).sequential()
    assert "step2" in handed(results)
    assert results["step2"].metadata["retry_count"] == 2
    assert stub.count(lambda r: "Step 2:" in r.prompt) == 3


def test_a_timed_out_predecessor_stops_its_follower(stub):
    stub.add_rule(match="Step 1:", latency=5)
    tasks, crew = chain(stub)
    tasks["step1"].timeout = 0.5
    with pytest.raises(TaskTimeoutError):
        Process(tasks=tasks, agents=crew).sequential()
    assert stub.count(lambda r: "Step 2:" in r.prompt) == 0


def test_checkpointed_runs_hand_off_with_every_step_recorded(stub, tmp_path):
    tasks, crew = chain(stub, agents=2)  # the same member, and forwarded to another
    process = Process(tasks=tasks, agents=crew, checkpoint_dir=tmp_path)
    results = process.sequential()
    assert handed(results) == ["step1", "step2", "step3"]
    assert stub.count() == 4
    # Each step is in the store as the Supervisor recorded it (the members' records of
    # the hand-offs came first): resuming the run asks the model nothing again.
    again = Process(tasks=tasks, agents=crew, checkpoint_dir=tmp_path).sequential(
        resume=process.last_result.run_id)
    assert stub.count() == 4
    assert {n: o.raw for n, o in again.items()} == {n: o.raw for n, o in results.items()}
    assert all("queue_s" in o.metadata for o in again.values())


def test_a_join_follows_the_last_branch_to_finish(stub):
    # join waits on fast and slow; once slow is done it waits on fast alone.
    stub.add_rule(match="Fast", latency=0.4)
    agent = Agent(role="Worker", goal="Work", llm=stub.llm, pool_size=2)
    tasks = {
        "fast": Task(description="Fast branch", agent=agent),
        "slow": Task(description="Quick branch", agent=agent),
        "join": Task(description="Join both", agent=agent, context=["fast", "slow"]),
    }
    results = Process(tasks=tasks, agents=[agent]).workflow()
    assert handed(results) == ["join"]
    prompt = stub.requests_matching("Join both")[0].prompt
    # Both branches' outputs, in the order its context lists them (not finishing order).
    assert prompt.index("--- fast ---") < prompt.index("--- slow ---")


def test_a_fallback_to_the_followers_agent_is_not_blocked_by_its_slot(stub):
    # The follower of "draft" waits in the editor's only slot; "draft" fails over to
    # the editor, and must get that slot (the follower gives it up).
    stub.add_rule(match=lambda r: r.model == "primary", fault="401")  # not retryable
    primary = Agent(role="Primary", goal="Draft", llm={**stub.llm, "model": "openai/primary"})
    editor = Agent(role="Editor", goal="Edit", llm=stub.llm, max_concurrency=1)
    tasks = {"draft": Task(description="Primary draft", agent=primary, fallback_agent=editor,
                           max_retries=0, timeout=20),
             "edit": Task(description="Edit the draft", agent=editor, context=["draft"])}
    results = Process(tasks=tasks, agents=[primary, editor]).workflow()
    assert results["draft"].agent == "Editor" and results["edit"].agent == "Editor"
    assert stub.count("Edit the draft") == 1


def test_a_predecessor_whose_member_dies_is_sent_again_and_its_follower_follows_that(
        stub, once_seen, kill_a_busy_member):
    # The drafter's member is killed during the draft: the draft is sent again elsewhere,
    # and the editor (another agent's pool) edits the draft of that second send, once.
    stub.add_rule(match="Write the draft", latency=1.0,
                  reply=lambda r: f"draft of request {r.index}")
    drafter = Agent(role="Drafter", goal="Draft", llm=stub.llm)
    editor = Agent(role="Editor", goal="Edit", llm=stub.llm)
    tasks = {"draft": Task(description="Write the draft", agent=drafter),
             "edit": Task(description="Edit the text", agent=editor, context=["draft"])}
    # The drafter's member: the only one with work in flight.
    with once_seen(stub, "Write the draft", 1, kill_a_busy_member):
        results = Process(tasks=tasks, agents=[drafter, editor]).sequential()

    killed = kill_a_busy_member.killed
    assert killed, "no busy member was found to kill"
    assert stub.count("Write the draft") == 2 and stub.count("Edit the text") == 1
    first, second = stub.requests_matching("Write the draft")
    assert first.status is None  # its member died before the answer
    assert results["draft"].raw == f"draft of request {second.index}"
    [edit] = stub.requests_matching("Edit the text")
    assert results["draft"].raw in edit.prompt and edit.t_start > second.t_end
    assert results["draft"].metadata["actor_pid"] != killed[0]
    assert handed(results) == ["edit"]  # handed off again, behind the second send
