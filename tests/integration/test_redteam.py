"""Red team: malformed definitions, guardrails, crashes and checkpoint privacy (issue #20).

Static mistakes (``redteam_cases.CASES``) run in one subprocess with no Ray session, so
"Ray did not start" is checked for real: each must raise its typed error naming the task
and field, with no model call. The faults below run on the shared Ray session.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from redteam_cases import CASES

from ray_orch import (
    Agent,
    GuardrailFailedError,
    LoopDataError,
    OutputValidationError,
    Process,
    RateLimitError,
    RayOrchError,
    StepLimitError,
    SupervisorLostError,
    Task,
    TaskFailedError,
)

HERE = Path(__file__).resolve().parent


# -- static mistakes: typed, named, before Ray and before any model call ----------------

@pytest.fixture(scope="module")
def outcomes() -> dict[str, dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parents[1]), str(HERE)]),
           "RAY_ORCH_PROGRESS": "0"}
    done = subprocess.run([sys.executable, str(HERE / "redteam_cases.py")], env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    return {o["id"]: o for o in map(json.loads, done.stdout.splitlines())}


def test_there_are_at_least_sixty_cases():
    assert len({case[0] for case in CASES}) == len(CASES) >= 60


@pytest.mark.parametrize(("case_id", "code", "error", "task", "field"), CASES,
                         ids=[case[0] for case in CASES])
def test_static_mistake_is_typed_named_and_early(outcomes, case_id, code, error, task, field):
    got = outcomes[case_id]
    assert got["error"] == error, (code, got["message"])
    assert got["is_ray_orch"]
    if task is not None:
        assert got["task"] == task, got["message"]
        assert f"'{task}'" in got["message"]
    assert field in got["fields"], got["message"]
    assert field.split("[")[0] in got["message"]
    assert got["requests"] == 0, "a model was called"
    assert not got["ray_running"], "Ray was started"


def test_unknown_keyword_suggests_the_closest_one():
    from ray_orch import UnknownKeywordError

    with pytest.raises(UnknownKeywordError) as err:
        Task(description="x", contex=["a"])
    assert err.value.suggestion == "context" and "did you mean 'context'" in str(err.value)
    with pytest.raises(UnknownKeywordError) as err:
        Agent(role="Writer", gaol="g")
    assert err.value.suggestion == "goal" and err.value.agent == "Writer"


def test_real_provider_options_and_extra_body_stay_accepted():
    agent = Agent(role="Writer", llm="openai/x", temperature=0.2, top_p=0.9, max_tokens=50,
                  seed=1, stop=["\n"], presence_penalty=0.1, frequency_penalty=0.1,
                  logit_bias={"1": 1}, response_format={"type": "text"}, n=1, user="u",
                  extra_body={"mirostat": 2})
    assert agent.llm_config.options["extra_body"] == {"mirostat": 2}
    assert agent.llm_config.options["temperature"] == 0.2


def test_cli_validate_refuses_what_workflow_refuses(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent("""
        from ray_orch import Agent, Process, Task
        a = Agent(role="W", llm="openai/x", base_url="http://127.0.0.1:9/v1")
        Process(tasks={"t": Task(description="x", agent=a)}).workflow(resume=True)
    """))
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
    done = subprocess.run([sys.executable, "-m", "ray_orch.cli", "validate", str(script)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "resume" in done.stderr + done.stdout


# -- decisions that route back through context -----------------------------------------

def _review_loop(agent: Agent) -> dict[str, Task]:
    return {"draft": Task(description="WRITE_DRAFT", agent=agent),
            "review": Task(description="CHECK_DRAFT", agent=agent, context=["draft"],
                           task_type="decision",
                           condition={"revise": ["draft"], "approved": ["done"]}),
            "done": Task(description="PUBLISH", agent=agent)}


def _prompts(stub, marker):
    return [r.prompt for r in stub.requests if marker in r.prompt]


def test_decision_routes_back_to_a_task_it_reads(ray_session, stub):
    stub.add_rule("WRITE_DRAFT", ["draft one", "draft two"])
    stub.add_rule("CHECK_DRAFT", ["revise", "approved"])
    agent = Agent(role="Writer", llm=stub.llm)
    tasks = _review_loop(agent)
    process = Process(tasks=tasks, agents=[agent])
    results = process.workflow()
    assert [t.status for t in tasks.values()] == ["completed"] * 3
    assert results["draft"].raw == "draft two"
    assert results["done"].raw == "ok"
    order = [next(m for m in ("WRITE_DRAFT", "CHECK_DRAFT", "PUBLISH") if m in r.prompt)
             for r in stub.requests]
    assert order == ["WRITE_DRAFT", "CHECK_DRAFT", "WRITE_DRAFT", "CHECK_DRAFT", "PUBLISH"]
    reviews = _prompts(stub, "CHECK_DRAFT")
    assert "draft one" in reviews[0] and "draft two" in reviews[1]  # the new draft is read
    assert "revise" in _prompts(stub, "WRITE_DRAFT")[1]  # the reviser sees the verdict
    assert "review -- revise --> draft" in process.graph()


def test_a_loop_that_never_ends_is_bounded(ray_session, stub):
    stub.add_rule("CHECK_DRAFT", "revise")
    agent = Agent(role="Writer", llm=stub.llm)
    tasks = _review_loop(agent)
    tasks["draft"].max_visits = 3
    with pytest.raises(StepLimitError) as err:
        Process(tasks=tasks, agents=[agent]).workflow()
    assert err.value.task == "draft" and "max_visits=3" in str(err.value)
    assert len(_prompts(stub, "WRITE_DRAFT")) == 3
    assert err.value.run_id


def test_a_review_loop_resumes_from_checkpoints(ray_session, stub, tmp_path):
    stub.add_rule("WRITE_DRAFT", ["draft one", "draft two"])
    stub.add_rule("CHECK_DRAFT", ["revise", "approved"])
    stub.add_rule("PUBLISH", fault="401", times=1)
    agent = Agent(role="Writer", llm=stub.llm)
    process = Process(tasks=_review_loop(agent), agents=[agent], checkpoint_dir=tmp_path)
    with pytest.raises(TaskFailedError) as err:
        process.workflow()
    assert err.value.task == "done"
    assert set(err.value.results) == {"draft", "review"}
    before = {m: len(_prompts(stub, m)) for m in ("WRITE_DRAFT", "CHECK_DRAFT")}
    results = process.workflow(resume=err.value.run_id)
    assert results["draft"].raw == "draft two" and results["done"].raw == "ok"
    assert {m: len(_prompts(stub, m)) for m in before} == before  # nothing re-asked
    assert len(_prompts(stub, "PUBLISH")) == 2


# -- guardrails and replies ------------------------------------------------------------

def raising_guard(output):
    raise ValueError("the check itself is broken")


def string_guard(output):
    return "FAIL: too short"


def test_a_guardrail_that_raises_fails_at_once(ray_session, stub):
    agent = Agent(role="Writer", llm=stub.llm)
    task = Task(description="Write", agent=agent, guardrails=[raising_guard], max_retries=3,
                validation_steps=3, fallback_agent=agent)
    with pytest.raises(GuardrailFailedError) as err:
        Process(tasks={"w": task}, agents=[agent]).workflow()
    assert err.value.guardrail == "raising_guard" and err.value.task == "w"
    assert isinstance(err.value.__cause__, ValueError)
    assert stub.count() == 1  # no retries, no fallback


def test_a_guardrail_returning_a_string_is_a_typed_error(stub):
    agent = Agent(role="Writer", llm=stub.llm)
    task = Task(description="Write", agent=agent, guardrails=[string_guard])
    with pytest.raises(GuardrailFailedError) as err:
        task.execute()
    assert "returned str" in str(err.value) and err.value.guardrail == "string_guard"
    assert stub.count() == 1


@pytest.mark.parametrize("guard_result", [True, (True, "better"), (False, "too short")])
def test_documented_guardrail_results_still_work(stub, guard_result):
    agent = Agent(role="Writer", llm=stub.llm)
    task = Task(description="Write", agent=agent, guardrails=[lambda out: guard_result],
                validation_steps=1)
    if guard_result is True or guard_result[0]:
        output = task.execute()
        assert output.raw == ("ok" if guard_result is True else "better")
    else:
        with pytest.raises(GuardrailFailedError, match="too short"):
            task.execute()
        assert stub.count() == 2


def test_an_empty_reply_is_invalid_output_and_retried(stub):
    stub.add_rule("Write", ["", "   ", "fine"])
    agent = Agent(role="Writer", llm=stub.llm)
    assert Task(description="Write", agent=agent, validation_steps=2).execute().raw == "fine"
    assert stub.count() == 3


def test_a_null_content_reply_never_completes_a_task(stub):
    from aiohttp import web

    def null_content(request):
        return web.json_response({"id": "x", "object": "chat.completion", "model": "stub",
                                  "choices": [{"index": 0, "finish_reason": "stop",
                                               "message": {"role": "assistant",
                                                           "content": None}}]})

    stub.handler = null_content
    agent = Agent(role="Writer", llm=stub.llm)
    with pytest.raises(OutputValidationError, match="empty"):
        Task(description="Write", agent=agent, validation_steps=1).execute()
    assert stub.count() == 2


def test_a_long_retry_after_is_not_shortened(stub):
    stub.retry_after = 120
    stub.add_rule(fault="429")
    agent = Agent(role="Writer", llm=stub.llm)
    with pytest.raises(RateLimitError) as err:
        Task(description="Write", agent=agent, max_retries=3, retry_delay=0).execute()
    assert err.value.retry_after == 120 and err.value.status_code == 429
    assert "120" in str(err.value)
    assert stub.count() == 1


# -- loops -----------------------------------------------------------------------------

def test_placeholders_a_dynamic_loop_cannot_fill_fail_typed(ray_session, stub):
    stub.add_rule("LIST_CITIES", "Paris\nRome")
    agent = Agent(role="Writer", llm=stub.llm)
    tasks = {"cities": Task(description="LIST_CITIES", agent=agent),
             "visit": Task(description="Visit {city}", agent=agent, task_type="loop",
                           context=["cities"])}
    with pytest.raises(LoopDataError) as err:
        Process(tasks=tasks, agents=[agent]).workflow()
    assert err.value.task == "visit" and err.value.field == "description"
    assert "city" in str(err.value)
    assert stub.count() == 1  # "{city}" never reached the model


def test_ragged_rows_are_padded_only_when_asked(ray_session, stub, tmp_path):
    data = tmp_path / "cities.csv"
    data.write_text("city,country\nParis,France\nRome\nOslo,Norway,extra\n")
    agent = Agent(role="Writer", llm=stub.llm)
    loop = Task(description="Visit {city} in {country}", agent=agent, task_type="loop",
                loop_data=str(data))
    with pytest.raises(LoopDataError, match=r"cities.csv' line 3"):
        Process(tasks={"visit": loop}, agents=[agent]).workflow()
    loop = Task(description="Visit {city} in [{country}]", agent=agent, task_type="loop",
                loop_data=str(data), loop_ragged="pad")
    process = Process(tasks={"visit": loop}, agents=[agent], checkpoint_dir=tmp_path / "ck")
    assert len(process.workflow()["visit"].iterations) == 3
    prompts = sorted(r.prompt for r in stub.requests)
    assert any("Visit Rome in []" in p for p in prompts)
    assert any("Visit Oslo in [Norway]" in p for p in prompts)


# -- checkpoints: any string, private files --------------------------------------------

def test_checkpoint_hashing_takes_any_string(ray_session, stub, tmp_path):
    agent = Agent(role="Writer", llm=stub.llm)
    task = Task(description="Say \udcff hello", agent=agent)
    results = Process(tasks={"t": task}, agents=[agent], checkpoint_dir=tmp_path).workflow()
    assert results["t"].raw == "ok"


def _modes(root: Path) -> dict[str, int]:
    return {str(p): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


def test_checkpoints_are_private_whatever_the_umask(ray_session, stub, tmp_path):
    from ray_orch.store.jsondir import JsonDirCheckpointStore

    agent = Agent(role="Writer", llm=stub.llm)
    previous = os.umask(0)
    try:
        Process(tasks={"t": Task(description="Write", agent=agent)}, agents=[agent],
                checkpoint_dir=tmp_path / "a" / "b").workflow()
        store = JsonDirCheckpointStore(tmp_path / "json")
        store.begin_run("r1", "demo", "abc")
        store.save_task("r1", "t", {"raw": "secret prompt output"})
    finally:
        os.umask(previous)
    for root in (tmp_path / "a", tmp_path / "json"):
        modes = _modes(root)
        assert len(modes) > 1
        for path, mode in modes.items():
            assert mode == (0o700 if Path(path).is_dir() else 0o600), (path, oct(mode))


# -- the Supervisor dying mid-run ------------------------------------------------------

def _kill_supervisor_mid_run(process: Process) -> None:
    """Kill the run's Supervisor once the driver has heard from it (a warm Supervisor that
    dies before its run sent anything is replaced, and the run goes on: not this case)."""
    import threading

    import ray

    tick = threading.Event()  # never set: its wait() is a bounded pause between looks
    for _ in range(3000):
        if process.events:
            break
        tick.wait(0.01)
    ray.kill(process._supervisor, no_restart=True)


def _agent_processes() -> int:
    count = 0
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(path, "rb") as f:
                count += b"ray::AgentActor" in f.read()
        except OSError:
            continue
    return count


def test_a_lost_supervisor_is_typed_and_leaks_nothing(ray_session, once_seen):
    import ray

    from actors.registry import get_registry
    from ray_orch.testing import StubLLMServer

    registry = get_registry()
    with StubLLMServer(latency=2.0) as stub:
        agent = Agent(role="Lost", llm=stub.llm, pool_size=2)
        baseline_members = len(ray.get(registry.members.remote()))
        baseline = _agent_processes()
        for _ in range(3):
            process = Process(tasks={"a": Task(description="A", agent=agent),
                                     "b": Task(description="B", agent=agent)},
                              agents=[agent])
            kill = functools.partial(_kill_supervisor_mid_run, process)
            with once_seen(stub, None, stub.count() + 1, kill), \
                    pytest.raises(SupervisorLostError) as err:
                process.workflow()
            assert isinstance(err.value, RayOrchError) and err.value.run_id
            assert type(err.value.__cause__).__name__ in ("ActorDiedError",
                                                          "ActorUnavailableError")
        assert len(ray.get(registry.members.remote())) <= baseline_members
    ray.get(registry.size.remote())  # the registry's kills have been issued
    assert _wait_for(lambda: _agent_processes() <= baseline), (_agent_processes(), baseline)


def _wait_for(check, seconds: float = 20.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_no_effect_keywords_warn_once(monkeypatch):
    from ray_orch import RayOrchWarning
    from ray_orch.policy import fields as _validate

    monkeypatch.setitem(_validate.NO_EFFECT_KEYWORDS, "Task", {"legacy_option"})
    monkeypatch.setattr(_validate, "_warned", set())
    with pytest.warns(RayOrchWarning, match="legacy_option"):
        Task(description="x", legacy_option=1)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Task(description="x", legacy_option=2)  # once per process


def test_a_lost_supervisor_with_a_checkpoint_heals_and_asks_nothing_twice(
        ray_session, stub, once_seen, tmp_path):
    # With a journal, the loss of the Supervisor is not an error: a new one resumes the
    # run (the standing-runtime issue); what completed before is not asked again.
    import ray

    stub.add_rule("SLOW_STEP", latency=30)
    agent = Agent(role="Keeper", llm=stub.llm)
    process = Process(tasks={"a": Task(description="FAST_STEP", agent=agent),
                             "b": Task(description="SLOW_STEP", agent=agent, context=["a"])},
                      agents=[agent], checkpoint_dir=tmp_path)
    killed = []

    def kill_once_a_is_reported():
        import threading

        tick = threading.Event()  # never set: a bounded pause between looks
        for _ in range(3000):
            if any(e.kind == "task_finished" and e.task == "a" for e in process.events):
                break
            tick.wait(0.01)
        stub.clear_rules()  # the resumed run's SLOW_STEP answers at once
        killed.append(process._supervisor)
        ray.kill(process._supervisor, no_restart=True)

    with once_seen(stub, "SLOW_STEP", 1, kill_once_a_is_reported):
        results = process.workflow()
    assert killed and process._supervisor is not killed[0]
    assert results["a"].raw == "ok" and results["b"].raw == "ok"
    assert stub.count("FAST_STEP") == 1
