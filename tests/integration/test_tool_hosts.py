"""Remote tools that reserve nothing run in warm processes (``tools/hosts.py``): a call
goes to a free ``ToolHost`` when there is one, else as a Ray task while a host starts."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ray_orch import Agent, Process, Task, tool
from ray_orch.testing import StubLLMServer

pytestmark = pytest.mark.usefixtures("ray_session")

CALLS = 4  # tool calls a run makes, one at a time


@tool(remote=True, num_cpus=0)
def host_pid(step: int) -> int:
    """The process id this call ran in."""
    return os.getpid()


@tool(remote=True, num_cpus=0.5)
def task_pid(step: int) -> int:
    """The process id this call ran in (it reserves a CPU share: always a Ray task)."""
    return os.getpid()


@tool(remote=True, num_cpus=0, timeout=1)
def stuck(seconds: float, mark: str) -> int:
    """Write this process's id and title to ``mark``, block for a while; answers the id."""
    Path(mark).write_text(f"{os.getpid()} {title(os.getpid())}")
    time.sleep(seconds)
    return os.getpid()


@tool(remote=True, num_cpus=0)
def refuse(step: int) -> int:
    """Always fails (naming the process it ran in)."""
    raise LookupError(f"no record {step} in {os.getpid()}")


def made(value: str):
    """A tool whose function each call of this returns anew (a closure: pickled by value)."""
    @tool(name="setting", remote=True, num_cpus=0)
    def setting() -> str:
        """The setting this run was given, and the process it ran in."""
        return f"{value} {os.getpid()}"
    return setting


def title(pid: int) -> str:
    """The process's title (Ray names an actor's process ``ray::Class``)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def on_host(pid: int) -> bool:
    return title(pid).startswith("ray::ToolHost")


def chain(name: str, arguments=None, calls: int = CALLS):
    def script(request):
        done = len(request.tool_results)
        if done < calls:
            return StubLLMServer.tool_call(name, {"step": done} if arguments is None else arguments)
        return "done"
    return script


def run(stub, tools, script):
    stub.reply = script
    # One agent (its settings make its key): each run gets the member the last one had.
    agent = Agent(role="Caller", goal="call", llm=stub.llm, tools=tools,
                  max_tool_calls=CALLS + 1)
    output = Process(tasks={"job": Task(description="Call", agent=agent)},
                     agents=[agent]).workflow()["job"]
    return output, output.metadata["tool_calls"]


def until_on_host(stub, tools, script, deadline_s: float = 120.0):
    """Run until a call lands on a warm host (the first calls go as Ray tasks while one
    starts in the background); returns the last run's calls."""
    deadline = time.monotonic() + deadline_s
    while True:
        _, calls = run(stub, tools, script)
        if any(c["ok"] and on_host(c["pid"]) for c in calls):
            return calls
        assert time.monotonic() < deadline, f"no call reached a warm host: {calls}"


def test_a_remote_tool_that_reserves_nothing_gets_a_warm_process_and_keeps_it(stub):
    until_on_host(stub, [host_pid], chain("host_pid"))
    output, calls = run(stub, [host_pid], chain("host_pid"))
    assert all(c["ok"] and c["where"] == "remote" and int(c["result"]) == c["pid"]
               for c in calls)
    # Calls one at a time, a host free for each: none goes as a task any more.
    assert all(on_host(c["pid"]) for c in calls), [title(c["pid"]) for c in calls]
    assert calls[0]["pid"] != output.metadata["actor_pid"]
    # A tool that reserves a CPU share stays a Ray task on every call.
    _, tasks = run(stub, [task_pid], chain("task_pid"))
    assert all(c["ok"] and not on_host(c["pid"]) for c in tasks)


def test_each_run_calls_its_own_function_on_a_warm_host(stub):
    until_on_host(stub, [made("a")], chain("setting", {}))
    for value in ("b", "c"):
        _, calls = run(stub, [made(value)], chain("setting", {}))
        assert [c["result"].split()[0] for c in calls] == [value] * CALLS
        assert all(on_host(int(c["result"].split()[1])) for c in calls)


def test_a_tool_error_on_a_host_is_the_calls_and_the_host_stays(stub):
    def failing_pids(calls):
        assert all(not c["ok"] and c["error_type"] == "LookupError" for c in calls), calls
        return [int(c["error"].rsplit(" ", 1)[1]) for c in calls]  # "... in PID"

    deadline = time.monotonic() + 120
    while True:  # until a failing call runs on a host (the first ones go as tasks)
        _, calls = run(stub, [refuse], chain("refuse"))
        pids = failing_pids(calls)
        hosted = [p for p in pids if on_host(p)]
        if hosted:
            break
        assert time.monotonic() < deadline, f"no failing call reached a warm host: {pids}"
    host = hosted[0]
    later = pids[pids.index(host) + 1:]
    for _ in range(5):  # the host that raised serves a later call: its error cost nothing
        if host in later:
            break
        later = failing_pids(run(stub, [refuse], chain("refuse"))[1])
    assert host in later, f"host {host} served no call after its tool raised: {later}"


def test_a_call_past_its_timeout_stops_with_its_host(stub, tmp_path):
    mark = tmp_path / "pid"
    until_on_host(stub, [stuck], chain("stuck", {"seconds": 0, "mark": str(mark)}))
    where = ""
    for _ in range(5):  # (a call that found no free host went as a task: once more)
        mark.unlink(missing_ok=True)
        _, late = run(stub, [stuck], chain("stuck", {"seconds": 600, "mark": str(mark)},
                                           calls=1))
        assert not late[0]["ok"] and late[0]["error_type"] == "TimeoutError"
        if not mark.exists():  # a task whose worker had not started yet
            continue
        text, where = mark.read_text().split(" ", 1)
        if where.startswith("ray::ToolHost"):
            break
    assert where.startswith("ray::ToolHost"), where  # it ran on a host, not as a task
    pid = int(text)
    # Its process is killed, well before the host's 60 s idle time.
    deadline = time.monotonic() + 30
    while on_host(pid):
        assert time.monotonic() < deadline, f"the timed-out call's host {pid} lives on"
        time.sleep(0.1)
