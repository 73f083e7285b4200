"""The engine's run keeps its state in its own records, without Ray: ``Run`` on the
in-process fakes of its ports writes nothing onto the tasks it is given (the route
descriptions are the graph's, the tool journal and overrides the run's)."""

from __future__ import annotations

import asyncio
import pickle

from ray_orch import Agent, Task, TaskOutput
from ray_orch.engine.graph import build_graph
from ray_orch.engine.run import Run, RunSpec
from ray_orch.store.factory import open_store
from ray_orch.testing.fakes import fake_services


class Counting(Task):
    """A user's execute() override (the guide's shape): its state is its own."""

    def execute(self, inputs=None) -> TaskOutput:
        return super().execute(inputs)


def _attributes(tasks: list[Task]) -> dict[str, bytes]:
    return {t.id: pickle.dumps(sorted(vars(t))) + pickle.dumps(
        {k: repr(v) for k, v in vars(t).items()}) for t in tasks}


def test_a_run_without_ray_writes_nothing_onto_its_tasks(stub, tmp_path):
    stub.add_rule(match="Pick a lane", reply="left")
    agent = Agent(role="Driver", goal="Drive", llm=stub.llm)
    tasks = [Task(name="pick", description="Pick a lane", agent=agent, task_type="decision",
                  condition={"left": ["go_left"], "right": ["go_right"]}),
             Counting(name="go_left", description="Go left", agent=agent),
             Task(name="go_right", description="Go right", agent=agent),
             Task(name="after", description="Then stop", agent=agent, context=["go_left"],
                  handle_missing_context=True)]
    graph = build_graph(tasks, "workflow", has_default_agent=False)
    before = _attributes(tasks)
    spec = RunSpec(run_id="r1", workflow="w", mode="workflow", tasks=tasks, graph=graph,
                   agents=[agent], metrics=False)
    events: list = []

    async def go():
        run = Run(spec, emit=events.append, services=fake_services(store=open_store(tmp_path)))
        assert run.graph is graph  # built once, by the caller: not again
        return run, await run.execute()

    run, result = asyncio.run(go())

    assert result.error is None, result.error
    assert result.statuses == {"pick": "completed", "go_left": "completed",
                               "go_right": "skipped", "after": "completed"}
    assert _attributes(tasks) == before
    # What used to be written onto the tasks is the run's own.
    assert list(graph.route_descriptions) == ["pick"]  # what each route leads to
    assert set(graph.route_descriptions["pick"]) == {"left", "right"}
    assert run.tool_journal is not None and run.tool_journal.run_id == result.run_id
    assert all(t.status == "pending" and t.result is None for t in tasks)  # no driver here
