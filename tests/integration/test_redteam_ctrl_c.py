"""Ctrl-C is prompt and honest (red team, round 3): while an approval handler is still
deciding, the driver ends within seconds, printing one line with the run id and how to
resume, and no traceback."""

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
SCRIPT = textwrap.dedent("""
    import os, pathlib, sys, time
    from ray_orch import Agent, Process, Task
    marker = pathlib.Path(sys.argv[2])

    def slow_person(request):
        marker.write_text(request.id)
        time.sleep(600)  # a person who never answers

    writer = Agent(role="Writer", goal="Write", llm={"model": "openai/stub",
                                                    "base_url": sys.argv[1]})
    tasks = {"draft": Task(description="Draft the post", agent=writer, human_input=True)}
    Process(tasks=tasks, agents=[writer], approval_handler=slow_person,
            checkpoint_dir=sys.argv[3]).workflow(run_id="ctrl-c-approval")
""")


@pytest.mark.slow
def test_ctrl_c_while_a_handler_decides_ends_the_driver_with_one_line(tmp_path):
    marker = tmp_path / "asked"
    with StubLLMServer(reply="a draft") as stub:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("RAY_ADDRESS", None)
        proc = subprocess.Popen([sys.executable, "-c", SCRIPT, stub.base_url, str(marker),
                                 str(tmp_path / "ck")], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=120)  # generous: seconds when quiet
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("the driver did not exit on Ctrl-C while the handler decided")
    assert proc.returncode == 130, err[-3000:]  # 128 + SIGINT, as a shell reports it
    assert "Traceback" not in err, err[-3000:]
    assert ("KeyboardInterrupt: run ctrl-c-approval interrupted (Ctrl-C) and cancelled"
            in err), err[-3000:]
    assert "workflow(resume='ctrl-c-approval')" in err
