"""The guide's sequential ETL example on Ray, against the stub (through both model clients)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from ray_orch import (
    Agent,
    OutputValidationError,
    Process,
    SerializationError,
    Task,
    TaskOutput,
)

pytestmark = pytest.mark.usefixtures("ray_session")


def etl(stub, client="auto"):
    llm = {**stub.llm, "client": client}
    extractor = Agent(role="Data Extractor", goal="Extract data from sources", llm=llm)
    transformer = Agent(role="Data Transformer", goal="Clean and transform data", llm=llm)
    loader = Agent(role="Data Loader", goal="Load data into destination", llm=llm)
    tasks = {
        "extract": Task(description="Extract data from API", agent=extractor,
                        expected_output="Raw JSON data"),
        "transform": Task(description="Clean and normalize data", agent=transformer,
                          context=["extract"], expected_output="Cleaned dataset"),
        "load": Task(description="Load into database", agent=loader, context=["transform"],
                     expected_output="Load confirmation"),
    }
    return tasks, [extractor, transformer, loader]


@pytest.mark.parametrize("client", ["auto", "litellm"])
def test_guide_sequential_etl_runs_on_ray_and_passes_context(stub, client):
    stub.add_rule(match="Extract data from API", reply='{"rows": [1, 2, 3]}')
    stub.add_rule(match="Clean and normalize", reply="cleaned: 3 rows")
    stub.add_rule(match="Load into database", reply="loaded 3 rows")
    tasks, agents = etl(stub, client)
    process = Process(tasks=tasks, agents=agents)

    results = process.sequential()

    assert [results[n].raw for n in ("extract", "transform", "load")] == [
        '{"rows": [1, 2, 3]}', "cleaned: 3 rows", "loaded 3 rows"]
    assert all(t.status == "completed" for t in tasks.values())
    assert tasks["load"].result is results["load"] or tasks["load"].result == results["load"]
    transform_prompt = stub.requests_matching("Clean and normalize")[0].prompt
    assert '{"rows": [1, 2, 3]}' in transform_prompt
    load_prompt = stub.requests_matching("Load into database")[0].prompt
    assert "cleaned: 3 rows" in load_prompt
    assert '{"rows"' not in load_prompt  # only its own context, not everything before
    # one request per task, in order
    order = [r.prompt for r in stub.requests]
    assert len(order) == 3
    assert "Extract" in order[0] and "Clean" in order[1] and "Load" in order[2]
    meta = results["extract"].metadata
    assert meta["retry_count"] == 0 and meta["tokens_used"] > 0
    assert meta["model"] == stub.model and meta["execution_time"] > 0
    assert results["extract"].agent == "Data Extractor"


def test_structured_output_is_parsed_and_invalid_replies_fail_typed(stub):
    class Raw(BaseModel):
        rows: list[int]
        source: str

    agent = Agent(role="Fetcher", goal="Fetch", llm=stub.llm)
    stub.add_rule(match="Fetch raw", reply={"rows": [4, 5], "source": "api"})
    stub.add_rule(match="Broken", fault="invalid_json")
    ok = Process(tasks={"fetch": Task(description="Fetch raw data", agent=agent,
                                      output_json=Raw)}, agents=[agent]).sequential()
    assert ok["fetch"].json_dict == {"rows": [4, 5], "source": "api"}
    assert isinstance(ok["fetch"].pydantic, Raw)

    tasks = {"bad": Task(description="Broken reply", agent=agent, output_pydantic=Raw,
                         validation_steps=1)}
    with pytest.raises(OutputValidationError) as info:
        Process(tasks=tasks, agents=[agent]).sequential()
    assert "bad" in str(info.value)
    assert tasks["bad"].status == "failed"


def test_async_execution_tasks_run_beside_neighbours(stub):
    stub.latency = 0.3
    agent = Agent(role="Analyst", goal="Analyze", llm=stub.llm, max_concurrency=8)
    tasks = {
        "a": Task(description="Analyze sales data", agent=agent, async_execution=True),
        "b": Task(description="Analyze marketing data", agent=agent, async_execution=True),
        "c": Task(description="Analyze support tickets", agent=agent, async_execution=True),
        "combine": Task(description="Combine all analyses", agent=agent,
                        context=["a", "b", "c"]),
    }
    Process(tasks=tasks, agents=[agent]).sequential()
    firsts = [r for r in stub.requests if "Combine" not in r.prompt]
    assert len(firsts) == 3
    latest_start = max(r.t_start for r in firsts)
    earliest_end = min(r.t_end for r in firsts)
    assert latest_start < earliest_end  # all three were in flight at once
    combine = stub.requests_matching("Combine all analyses")[0]
    assert combine.t_start >= max(r.t_end for r in firsts)


def test_task_output_round_trips():
    out = TaskOutput(raw="x", task_id="t", metadata={"retry_count": 1})
    assert TaskOutput(**out.model_dump()) == out
    assert TaskOutput(**out.dict()) == out
    assert TaskOutput.model_validate_json(out.to_json()) == out


def test_a_task_the_cluster_cannot_load_is_a_typed_error(stub, tmp_path, monkeypatch):
    # A guardrail from a module only this driver can import: pickled by reference here,
    # not loadable in the Supervisor.
    (tmp_path / "only_on_the_driver.py").write_text("def check(output):\n    return True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import only_on_the_driver

    agent = Agent(role="Writer", goal="Write", llm=stub.llm)
    tasks = {"a": Task(description="A", agent=agent, guardrail=only_on_the_driver.check)}
    with pytest.raises(SerializationError, match=r"only_on_the_driver.*py_modules"):
        Process(tasks=tasks, agents=[agent]).sequential()
    assert stub.count() == 0
