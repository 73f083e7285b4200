"""Run budgets, LLM-judged guardrails, JSONL loops and Ctrl-C, on Ray against the stub."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

from ray_orch import Agent, BudgetExceededError, GuardrailFailedError, Process, Task

pytestmark = pytest.mark.usefixtures("ray_session")
HERE = Path(__file__).resolve().parent


def test_token_budget_stops_dispatch_lets_in_flight_finish_and_keeps_results(stub):
    stub.latency = 0.2
    agent = Agent(role="Spender", goal="Spend", llm=stub.llm, max_concurrency=2)
    tasks = {f"t{i}": Task(description=f"Costly step {i} " + "word " * 40, agent=agent)
             for i in range(10)}
    with pytest.raises(BudgetExceededError, match="tokens used of a budget of 100") as info:
        Process(tasks=tasks, agents=[agent], budget_tokens=100).workflow()
    done = info.value.results
    used = sum(out.metadata["tokens_used"] for out in done.values())
    per_task = used / len(done)
    # dispatch stopped once the budget was crossed; what was in flight then finished
    assert used >= 100 and used - per_task < 100 + 2 * per_task
    assert len(done) < 10
    assert stub.count("Costly step") == len(done)  # every dispatched task finished
    assert all(out.raw == "ok" for out in done.values())
    statuses = {t.status for name, t in tasks.items() if name not in done}
    assert statuses == {"pending"}


def test_string_guardrail_is_judged_by_the_model_and_fed_back(stub):
    stub.add_rule(match="Check this output against the rule",
                  reply=[{"passes": False, "reason": "it is rude"}, {"passes": True}])
    stub.add_rule(match="Reply to the customer", reply=["go away", "thank you for waiting"])
    agent = Agent(role="Support", goal="Help", llm=stub.llm)
    task = Task(description="Reply to the customer", agent=agent,
                guardrails=["The reply must be polite"])
    out = Process(tasks={"reply": task}, agents=[agent]).workflow()["reply"]
    assert out.raw == "thank you for waiting"
    assert out.metadata["retry_count"] == 1
    retry_prompt = stub.requests_matching("Reply to the customer")[1].prompt
    assert "The reply must be polite" in retry_prompt and "it is rude" in retry_prompt

    stub.clear_rules()
    stub.add_rule(match="Check this output against the rule", reply={"passes": False,
                                                                     "reason": "never"})
    task = Task(description="Reply again", agent=agent, guardrails=["Be perfect"],
                validation_steps=1)
    with pytest.raises(GuardrailFailedError, match="Be perfect"):
        Process(tasks={"reply": task}, agents=[agent]).workflow()


def test_loop_over_a_jsonl_file(stub, tmp_path):
    path = tmp_path / "tickets.jsonl"
    path.write_text("\n".join(json.dumps({"ticket": t, "priority": p})
                              for t, p in [("T-1", "high"), ("T-2", "low")]) + "\n")
    stub.add_rule(match="Triage ticket", reply=lambda r: r.prompt.split("Triage ticket ")[1][:3])
    agent = Agent(role="Triage", goal="Sort", llm=stub.llm)
    tasks = {"triage": Task(description="Triage ticket {ticket} ({priority})", agent=agent,
                            task_type="loop", loop_data=str(path))}
    out = Process(tasks=tasks, agents=[agent]).workflow()["triage"]
    assert [o.raw for o in out.iterations] == ["T-1", "T-2"]


def test_ctrl_c_cancels_the_run_and_keeps_completed_results(stub, tmp_path):
    stub.add_rule(match="Record c0s0", reply="quick")
    stub.add_rule(match="Record", latency=60)
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
           "PYTHONPATH": f"{HERE}{os.pathsep}{HERE.parents[1]}"}
    directory = tmp_path / "ckpt"
    proc = subprocess.Popen([sys.executable, str(HERE / "durability_driver.py"), stub.base_url,
                             str(directory), "ctrl-c-run"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while stub.count("Record c0s1") < 1:  # c0s0 finished, slow work is in flight
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-2000:]
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in err or "RunCancelledError" in err
    from ray_orch.store.sqlite import SQLiteCheckpointStore

    store = SQLiteCheckpointStore(directory)
    assert set(store.load_tasks("ctrl-c-run")) == {"c0s0"}
    assert store.get_run("ctrl-c-run").status == "cancelled"
