"""Crash-safe checkpoint/resume and the cluster-wide result cache, on Ray."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
from durability_driver import build

from ray_orch import (
    Agent,
    CheckpointCorruptError,
    Process,
    ResumeError,
    Task,
    TaskFailedError,
)
from ray_orch.store.sqlite import SQLiteCheckpointStore

pytestmark = pytest.mark.usefixtures("ray_session")
HERE = Path(__file__).resolve().parent


def echo(request):
    return "done " + re.search(r"Record (\w+)", request.prompt).group(1)


def completed_in(directory, run_id):
    store = SQLiteCheckpointStore(directory)
    try:
        return set(store.load_tasks(run_id))
    finally:
        store.close()


def task_of(request) -> str:
    return re.search(r"Record (\w+)", request.prompt).group(1)


@pytest.mark.slow
def test_sigkill_the_driver_at_several_points_then_resume(stub, tmp_path):
    stub.latency = 0.05
    stub.add_rule(match="Record", reply=echo)
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
           "PYTHONPATH": f"{HERE}{os.pathsep}{HERE.parents[1]}"}
    directory, run_id = str(tmp_path / "ckpt"), "crash-run-1"
    args = [sys.executable, str(HERE / "durability_driver.py"), stub.base_url, directory, run_id]
    rounds: list[tuple[float, set[str]]] = []  # (killed at, checkpointed tasks then)
    for kill_after in (5, 20, 35):
        proc = subprocess.Popen([*args, "resume"] if rounds else args, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.monotonic()
        while proc.poll() is None and (not os.path.exists(directory) or
                                       len(completed_in(directory, run_id)) < kill_after):
            assert time.monotonic() - started < 90, "driver made no progress"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rounds.append((time.time(), completed_in(directory, run_id)))
    assert 0 < len(rounds[0][1]) < len(rounds[-1][1]) < 50  # killed mid-run each time
    final = subprocess.run([*args, "resume"], env=env, timeout=120, capture_output=True,
                           text=True)
    assert final.returncode == 0, final.stderr[-2000:]

    for killed_at, done in rounds:
        asked_later = {task_of(r) for r in stub.requests if r.t_start > killed_at}
        assert not asked_later & done, "a checkpointed task ran again after a resume"
    store = SQLiteCheckpointStore(directory)
    results = store.load_tasks(run_id)
    assert store.get_run(run_id).status == "completed"
    # final results equal an uninterrupted run's
    clean, agents = build(stub.base_url)
    expected = Process(tasks=clean, agents=agents, metrics=False).workflow()
    assert {k: v["raw"] for k, v in results.items()} == {k: v.raw for k, v in expected.items()}


def small_workflow(stub, description="Summarise the notes"):
    agent = Agent(role="Scribe", goal="Write", llm=stub.llm)
    tasks = {"first": Task(description=description, agent=agent),
             "second": Task(description="Polish the summary", agent=agent, context=["first"])}
    return tasks, [agent]


def test_resume_skips_completed_and_refuses_drift(stub, tmp_path):
    stub.add_rule(match="Polish the summary", fault="401")
    tasks, agents = small_workflow(stub)
    process = Process(tasks=tasks, agents=agents, checkpoint_dir=tmp_path, name="resumable")
    with pytest.raises(TaskFailedError):
        process.workflow(run_id="r1")
    assert stub.count("Summarise the notes") == 1
    stub.clear_rules()
    results = Process(tasks=tasks, agents=agents, checkpoint_dir=tmp_path,
                      name="resumable").workflow(resume=True)
    assert stub.count("Summarise the notes") == 1  # not asked again
    assert sorted(results) == ["first", "second"]

    changed, agents2 = small_workflow(stub, description="Summarise the notes briefly")
    with pytest.raises(ResumeError, match="allow_drift"):
        Process(tasks=changed, agents=agents2, checkpoint_dir=tmp_path,
                name="resumable").workflow(resume="r1")
    Process(tasks=changed, agents=agents2, checkpoint_dir=tmp_path,
            name="resumable").workflow(resume="r1", allow_drift=True)


def test_corrupt_checkpoint_is_reported_not_loaded(stub, tmp_path):
    tasks, agents = small_workflow(stub)
    Process(tasks=tasks, agents=agents, checkpoint_dir=tmp_path, name="c").workflow(run_id="r2")
    db = tmp_path / "ray_orch.sqlite"
    with sqlite3.connect(db) as conn:
        table = next(name for (name,) in conn.execute(
            "select name from sqlite_master where type='table'") if "task" in name)
        column = next(c[1] for c in conn.execute(f"pragma table_info({table})")
                      if c[1] in ("payload", "data", "output", "value"))
        conn.execute(f"update {table} set {column} = replace({column}, 'ok', 'KO')")
    with pytest.raises(CheckpointCorruptError, match=r"first|second"):
        Process(tasks=tasks, agents=agents, checkpoint_dir=tmp_path,
                name="c").workflow(resume="r2")


def test_cache_second_run_makes_no_calls_and_ttl_expiry_calls_again(stub):
    agent = Agent(role="Cacher", goal="Answer", llm=stub.llm)

    def run(ttl):
        tasks = {"q": Task(description="What is the cached capital of Peru?", agent=agent,
                           cache_ttl=ttl),
                 "r": Task(description="Restate it", agent=agent, context=["q"],
                           cache_ttl=ttl)}
        return Process(tasks=tasks, agents=[agent]).workflow()

    first = run(60)
    assert stub.count() == 2 and first["q"].metadata["cache"] == "miss"
    second = run(60)
    assert stub.count() == 2  # zero LLM calls
    assert second["q"].metadata["cache"] == "hit" and second["q"].raw == first["q"].raw


def test_cache_ttl_expires(stub):
    agent = Agent(role="Cacher", goal="Answer", llm=stub.llm)

    def run():
        tasks = {"q": Task(description="What is the short-lived answer?", agent=agent,
                           cache_ttl=0.5)}
        return Process(tasks=tasks, agents=[agent]).workflow()

    run()
    run()
    assert stub.count() == 1
    time.sleep(0.6)  # waiting out the TTL is the behaviour under test
    run()
    assert stub.count() == 2
