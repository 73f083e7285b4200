"""The progress bar's total is known before the bar fills (red team, round 3: it showed
"0/2", "2/2", then "61/61"): a loop over static data counts its items from the start; a
loop over an upstream output counts once, then its items as soon as they are known.
Checked in a real terminal (a pty), as a user sees it."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import sys
import termios
from pathlib import Path

import pytest

from ray_orch.testing import StubLLMServer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import os
from ray_orch import Agent, Process, Task
llm = {"model": "openai/stub", "base_url": os.environ["STUB_BASE"]}
worker = Agent(role="Worker", goal="Work", llm=llm, pool_size=2)
tasks = {
    "fetch": Task(description="List the regions", agent=worker),
    "parts": Task(description="Study part {item}", agent=worker, task_type="loop",
                  loop_data=list(range(6)), context=["fetch"]),
    "regions": Task(description="Report on region {item}", agent=worker,
                    task_type="loop", context=["fetch"]),
    "sum": Task(description="Sum it up", agent=worker, context=["parts", "regions"]),
}
Process(tasks=tasks, agents=[worker], name="bars").workflow()
"""


def _run_in_a_terminal(env: dict[str, str]) -> str:
    pid, fd = pty.fork()
    if pid == 0:  # the child: a driver script on a terminal of 120 columns
        os.execve(sys.executable, [sys.executable, "-c", SCRIPT], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text[-3000:]
    return text


@pytest.mark.slow
def test_the_total_is_known_before_the_bar_fills():
    with StubLLMServer(reply="ok", latency=0.05) as stub:
        stub.add_rule(match="List the regions", reply='["north", "south", "east"]')
        env = {**os.environ, "STUB_BASE": stub.base_url, "PYTHONPATH": str(ROOT),
               "RAY_ORCH_PROGRESS": "1", "TERM": "xterm-256color", "COLUMNS": "120"}
        env.pop("RAY_ADDRESS", None)
        screen = _run_in_a_terminal(env)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    frames = [(int(a), int(b)) for a, b in re.findall(r"(\d+)/(\d+)", plain)]
    assert frames, plain[-2000:]
    # 1 + 6 static items + the upstream loop (1 until its 3 items are known) + 1 = 9, then 11.
    assert frames[0][1] == 9, frames[:5]
    assert frames[-1] == (11, 11), frames[-5:]
    assert {total for _, total in frames} <= {9, 11}
    full = [i for i, (done, total) in enumerate(frames) if done == total]
    assert all(frames[i][1] == 11 for i in full), "the bar was full before the total grew"
