"""Ctrl-C while a task awaits approval, then resume (red team, round 3): the driver
ends within seconds, and the resumed run goes straight back to asking the same question,
without asking the model again for the answer it had given (an output awaiting
approval, or the model turn that proposed a call of a ``requires_approval`` tool).

Each phase is a real driver process (a private local Ray, a checkpoint store); the
stub model counts the requests it answered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ray_orch.testing import StubLLMServer

ROOT = Path(__file__).resolve().parents[2]

# argv: stub url, marker file, checkpoint dir, "wait" | "console" | "approve", run id,
# "output" | "tool"
SCRIPT = textwrap.dedent("""
    import json, os, pathlib, sys, time
    from ray_orch import Agent, Process, Task, tool
    url, marker, ck, how, run_id, kind = sys.argv[1:7]
    ledger = pathlib.Path(ck).parent / "ledger"

    @tool(requires_approval=True)
    def charge(amount: int) -> str:
        \"\"\"Charge the customer.\"\"\"
        with ledger.open("a") as out:
            out.write(f"{amount}\\n")
        return f"charged {amount}"

    def person(request):
        pathlib.Path(marker + ".part").write_text(json.dumps(
            {"id": request.id, "tool": request.tool, "arguments": request.arguments,
             "output": request.output.raw if request.output else None}))
        os.replace(marker + ".part", marker)  # whole, when the test sees it
        if how == "wait":
            time.sleep(600)  # a person who has not decided yet
        from ray_orch import Approve
        return Approve()

    writer = Agent(role="Writer", goal="Write", llm={"model": "openai/stub", "base_url": url},
                   tools=[charge] if kind == "tool" else [])
    task = Task(description="Draft the post", agent=writer, human_input=kind == "output")
    process = Process(tasks={"draft": task}, agents=[writer], checkpoint_dir=ck,
                      approval_handler=None if how == "console" else person)
    if how in ("wait", "console"):
        process.workflow(run_id=run_id)
    else:
        print("RESULT", json.dumps(process.workflow(resume=run_id)["draft"].raw))
""")


def _driver(stub: StubLLMServer, tmp_path: Path, marker: Path, how: str,
            kind: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path / "home")}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, stub.base_url, str(marker), str(tmp_path / "ck"),
         how, f"resume-{kind}", kind], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def _interrupt_while_asked(stub: StubLLMServer, tmp_path: Path, kind: str) -> tuple[
        dict[str, object], int, str]:
    """Phase 1: run until the person is asked, then Ctrl-C. Returns what was asked, the
    exit code and stderr."""
    import json

    marker = tmp_path / "asked-1"
    proc = _driver(stub, tmp_path, marker, "wait", kind)
    deadline = time.monotonic() + 300  # a cold Ray start on a loaded machine
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()  # type: ignore[union-attr]
        time.sleep(0.05)
    asked = json.loads(marker.read_text())
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)  # seconds when quiet
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the driver did not exit on Ctrl-C while the person was asked")
    return asked, proc.returncode, err


def _resume(stub: StubLLMServer, tmp_path: Path, kind: str) -> tuple[dict[str, object], str]:
    import json

    marker = tmp_path / "asked-2"
    proc = _driver(stub, tmp_path, marker, "approve", kind)
    try:
        out, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the resumed run did not end")
    assert proc.returncode == 0, err[-3000:]
    assert marker.exists(), "the resumed run did not ask the person again"
    return json.loads(marker.read_text()), out


@pytest.mark.slow
def test_ctrl_c_while_an_output_awaits_approval_resumes_to_the_same_question(tmp_path):
    with StubLLMServer(reply="a draft") as stub:
        first, code, err = _interrupt_while_asked(stub, tmp_path, "output")
        assert code == 130, err[-3000:]  # as a shell reports a Ctrl-C'd program
        assert "Traceback" not in err, err[-3000:]
        assert "run resume-output interrupted (Ctrl-C)" in err, err[-3000:]
        assert stub.count() == 1
        second, out = _resume(stub, tmp_path, "output")
        assert stub.count() == 1, "the resumed run asked the model again"
    assert second["id"] == first["id"] and second["output"] == "a draft"
    assert 'RESULT "a draft"' in out


@pytest.mark.slow
def test_ctrl_c_while_a_tool_call_awaits_approval_resumes_to_the_same_call(tmp_path):
    def script(request):
        if not request.tool_results:
            return StubLLMServer.tool_call("charge", {"amount": 10})
        return f"done: {request.tool_results[-1]['content']}"

    with StubLLMServer(reply=script) as stub:
        first, code, err = _interrupt_while_asked(stub, tmp_path, "tool")
        assert code == 130, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        assert stub.count() == 1
        assert not (tmp_path / "ledger").exists()  # asked, not run
        second, out = _resume(stub, tmp_path, "tool")
        # One more model request: the turn after the tool's result, not the one that
        # proposed the call again.
        assert stub.count() == 2, [r.tool_results for r in stub.requests]
    assert (second["tool"], second["arguments"]) == ("charge", {"amount": 10})
    assert first["arguments"] == {"amount": 10}
    assert (tmp_path / "ledger").read_text() == "10\n"
    assert 'RESULT "done: charged 10"' in out


def _console_interrupted(stub: StubLLMServer, tmp_path: Path) -> tuple[int, str]:
    """Phase 1 on a terminal (a pty) with no handler: the console asks; Ctrl-C is typed
    at its prompt. Returns the exit code and what the terminal showed."""
    import pty
    import select

    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path / "home"),
           "TERM": "xterm-256color", "COLUMNS": "120", "RAY_ORCH_AUTO_RUNTIME": "0"}
    env.pop("RAY_ADDRESS", None)  # a private Ray (a terminal would start a standing one)
    argv = [sys.executable, "-c", SCRIPT, stub.base_url, str(tmp_path / "unused"),
            str(tmp_path / "ck"), "console", "resume-console", "output"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: the driver on a terminal
        os.execve(sys.executable, argv, env)
    screen, typed, deadline = b"", False, time.monotonic() + 420
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
        if not typed and b"[a]pprove" in screen:
            os.write(fd, b"\x03")  # Ctrl-C, as the terminal sends it: SIGINT
            typed, deadline = True, time.monotonic() + 120  # seconds when quiet
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail(f"the driver did not end (asked: {typed}): {screen[-2000:]!r}")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), screen.decode(errors="replace")


@pytest.mark.slow
def test_ctrl_c_at_the_console_prompt_ends_the_driver_and_resumes_to_the_same_question(
        tmp_path):
    with StubLLMServer(reply="a draft") as stub:
        code, screen = _console_interrupted(stub, tmp_path)
        # The prompt shows whole, after the progress display stepped aside.
        assert "[a]pprove, [e]dit or [r]eject" in screen, screen[-3000:]
        assert code == 130, screen[-3000:]
        assert "Traceback" not in screen, screen[-3000:]
        assert "run resume-console interrupted (Ctrl-C)" in screen, screen[-3000:]
        assert "workflow(resume='resume-console')" in screen
        assert stub.count() == 1
        marker = tmp_path / "asked-2"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path / "home")}
        env.pop("RAY_ADDRESS", None)
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, stub.base_url, str(marker), str(tmp_path / "ck"),
             "approve", "resume-console", "output"], env=env, capture_output=True,
            text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert stub.count() == 1, "the resumed run asked the model again"
    assert 'RESULT "a draft"' in done.stdout
