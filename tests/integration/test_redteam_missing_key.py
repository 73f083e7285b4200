"""A hosted model with no key fails fast (red team, round 3): a typed error naming the
variable, before Ray starts or any model is called, instead of four retried refusals."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ray_orch import Agent, MissingAPIKeyError, Process, Task

ROOT = Path(__file__).resolve().parents[2]


def test_a_missing_provider_key_is_a_typed_error_naming_the_variable(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    writer = Agent(role="Writer", goal="Write", llm="gpt-4o-mini")
    process = Process(tasks={"draft": Task(description="Draft it", agent=writer)})
    with pytest.raises(MissingAPIKeyError) as caught:
        process.workflow()
    assert "OPENAI_API_KEY" in str(caught.value) and "Writer" in str(caught.value)
    assert caught.value.field == "llm" and caught.value.agent == "Writer"


def test_a_key_given_another_way_is_not_asked_for(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    for agent in (Agent(role="A", llm="claude-3-5-haiku-latest", api_key="sk-given"),
                  Agent(role="B", llm="openai/local", base_url="http://127.0.0.1:9/v1"),
                  Agent(role="C", llm="ollama/llama3.1")):
        Process(tasks={"t": Task(description="x", agent=agent)}).validate()


def test_the_script_fails_in_seconds_before_ray_starts(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent("""
        import sys
        from ray_orch import Agent, Process, Task
        writer = Agent(role="Writer", goal="Write", llm="gpt-4o-mini")
        try:
            Process(tasks={"draft": Task(description="Draft it", agent=writer)}).workflow()
        finally:
            import ray
            print("ray started:", ray.is_initialized(), "litellm imported:",
                  "litellm" in sys.modules)
    """))
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_API_KEY", "RAY_ADDRESS", "RAY_ORCH_RUNTIME_FILE")}
    env.update(PYTHONPATH=str(ROOT), HOME=str(tmp_path))
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode != 0
    assert "MissingAPIKeyError" in done.stderr and "OPENAI_API_KEY" in done.stderr
    assert "ray started: False litellm imported: False" in done.stdout
