"""Memory across runs on Ray: two driver processes for one user, none for another; the
recalled memory in the stub's request log, in ``metadata["memory"]`` and in the stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ray_orch import Agent, Memory, Process, Task
from ray_orch.testing import StubLLMServer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FACT = "The guest's room safe code is 4471"


def _drive(stub: StubLLMServer, home: Path, user: str, description: str) -> dict:
    # Each driver is a process (and a Ray job) of its own; they join the session's Ray
    # rather than start three (a start takes 10-30 s on this loaded machine, or fails).
    import ray

    # Memory() is the default store: here a private folder instead of ~/.ray-orch/memory.
    env = {**os.environ, "RAY_ORCH_MEMORY_DIR": str(home / "memory"), "PYTHONPATH": str(ROOT),
           "STUB_MODEL": stub.model, "STUB_KEY": stub.api_key, "RAY_ORCH_PROGRESS": "0",
           "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    done = subprocess.run([sys.executable, str(HERE / "memory_driver.py"), stub.base_url,
                           user, description], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line.removeprefix("RESULT "))


def test_two_driver_processes_share_one_users_memory_and_not_anothers(ray_session, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with StubLLMServer(reply="Understood.") as stub:
        stub.add_rule("Store this for later", reply=f"Noted. {FACT}.")
        first = _drive(stub, home, "u1", f"Store this for later: {FACT.lower()}.")
        assert first["raw"] == f"Noted. {FACT}."
        assert first["memory"]["remembered"]
        stub.clear()
        second = _drive(stub, home, "u1", "What is the code of my room safe?")
        prompt = stub.requests[-1].prompt
        assert "Relevant memories" in prompt and FACT in prompt
        assert "(in answer to: Store this for later" in prompt  # what was asked, too
        assert second["memory"]["recalled"][0]["id"] == first["memory"]["remembered"]
        assert second["memory"]["recalled"][0]["score"] > 0.3
        stub.clear()
        other = _drive(stub, home, "u2", "What is the code of my room safe?")
        prompt = stub.requests[-1].prompt
        assert "4471" not in prompt and "Relevant memories" not in prompt
        assert other["memory"]["recalled"] == []
    # The default store (RAY_ORCH_MEMORY_DIR here), 0700 / 0600.
    folder = home / "memory"
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert oct((folder / "memory.sqlite").stat().st_mode & 0o777) == "0o600"


@pytest.fixture
def memory(tmp_path):
    return Memory(tmp_path / "memory")


def test_a_process_recalls_within_the_run_and_streams_what_it_recalled(ray_session, memory):
    memory.add("Ana is allergic to peanuts", user_id="ana")
    memory.add("Ana's flight lands at 9pm", user_id="ana")
    memory.add("Bob is allergic to shellfish", user_id="bob")
    with StubLLMServer(reply="Noted.") as stub:
        agent = Agent(role="Chef", goal="Cook safely", llm=stub.llm)
        tasks = {"menu": Task(description="Plan a dinner menu for the guest, mindful of "
                                          "food allergies", agent=agent)}
        process = Process(tasks=tasks, agents=[agent], memory=memory, user_id="ana")
        events = list(process.stream())
        prompt = stub.requests[-1].prompt
    assert "Ana is allergic to peanuts" in prompt
    assert "shellfish" not in prompt
    out = process.results["menu"]
    recalled = out.metadata["memory"]["recalled"]
    assert recalled[0]["score"] >= recalled[-1]["score"]
    assert memory.get(recalled[0]["id"]).text == "Ana is allergic to peanuts"
    kinds = [e.kind for e in events]
    assert "memory" in kinds
    shown = next(e for e in events if e.kind == "memory")
    assert shown.task == "menu" and shown.data["recalled"] == recalled
    # The output was remembered for Ana, tagged with the run and the task.
    kept = memory.get(out.metadata["memory"]["remembered"])
    assert kept.text == "Noted." and kept.metadata["user_id"] == "ana"
    assert kept.metadata["task"] == "menu" and kept.metadata["run_id"]
    assert kept.metadata["question"].startswith("Plan a dinner menu")


def test_memory_already_in_the_context_is_not_repeated(ray_session, memory):
    memory.add("The budget is 500 euros", user_id="u")
    with StubLLMServer(reply="The budget is 500 euros") as stub:
        agent = Agent(role="Planner", goal="Plan", llm=stub.llm)
        tasks = {"a": Task(description="State the budget", agent=agent),
                 "b": Task(description="What is the budget for the trip?", agent=agent,
                           context=["a"])}
        Process(tasks=tasks, agents=[agent], memory=memory, user_id="u").workflow()
        second = stub.requests[-1].prompt
    assert "Context from previous tasks" in second
    assert "Relevant memories" not in second  # the same text is in its context already
