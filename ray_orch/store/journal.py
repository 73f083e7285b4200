"""The run journal: what a Supervisor writes to the run store, and reads back on
resume. Results are keyed by run id, task name and visit (never by position), each
written durably before anything downstream of it is dispatched; a task handed off
behind another acts only once the member that ran that one wrote its record
(``record_task(keep=True)``), and the Supervisor's record comes last.
"""

from __future__ import annotations

from typing import Any

from ray_orch.core.errors import ResumeError
from ray_orch.core.output import TaskOutput
from ray_orch.store.checkpoint import definition_hash
from ray_orch.store.port import RunStore

__all__ = ["Journal", "record_task", "typed"]


def _key(task: str, visit: int) -> str:
    # The first visit keeps the plain task name, so the guide's file-per-task layout and
    # readers of the store see the names they expect.
    return task if visit == 1 else f"{task}#{visit}"


def _unkey(key: str) -> tuple[str, int]:
    name, _, visit = key.partition("#")
    return name, int(visit) if visit else 1


def record_task(store: RunStore, run_id: str, task: str, visit: int, output: TaskOutput,
                *, keep: bool = False) -> None:
    """Write one completed visit of ``task`` (and the route it decided) to ``store``:
    by the Supervisor's journal, or (``keep``: never over a record already there) by the
    member that hands it to its follower first."""
    store.save_task(run_id, _key(task, visit), output.model_dump(mode="json"), keep=keep)
    route = output.metadata.get("decision")
    if route is not None:
        store.save_decision(run_id, task, visit, str(route))


class Journal:
    """Checkpoint reads and writes of one run.

    Args:
        store: the run store (:class:`~ray_orch.store.port.RunStore`).
        run_id: this run's id; with ``resume`` it may be ``"latest"``.
        workflow: the workflow's name.
        definition: ``Graph.definition()``; its hash detects drift on resume.
        resume: continue an earlier run instead of starting a new one.
        allow_drift: resume even if the workflow's definition changed.
    """

    def __init__(self, store: RunStore, *, run_id: str, workflow: str,
                 definition: dict[str, Any], resume: bool, allow_drift: bool) -> None:
        self.store = store
        where = store.location
        if resume and run_id == "latest":
            record = self.store.latest_run(workflow)
            if record is None:
                raise ResumeError(f"no run of workflow '{workflow}' to resume in {where}")
            run_id = record.run_id
        if resume and self.store.get_run(run_id) is None:
            raise ResumeError(f"run '{run_id}' has no checkpoint in {where}")
        self.run_id = run_id
        # A new run is created only if it does not exist yet, in one transaction, with
        # what readers (the run viewer) draw: the definition this run executes.
        self.record = self.store.begin_run(run_id, workflow, definition_hash(definition),
                                           allow_drift=allow_drift, fresh=not resume,
                                           graph=definition)

    def restored(self, loops: list[str], max_visits: int, *,
                 tasks: dict[str, Any] | None = None
                 ) -> tuple[dict[tuple[str, int], TaskOutput],
                            dict[tuple[str, int], dict[int, TaskOutput]]]:
        """Completed task visits, and iterations of the given loop tasks, so far; with
        ``tasks`` (by name), typed as fresh outputs are (:func:`typed`).

        Raises:
            CheckpointCorruptError: a record failed its integrity check.
        """
        outputs = {_unkey(k): TaskOutput(**v)
                   for k, v in self.store.load_tasks(self.run_id).items()}
        iterations: dict[tuple[str, int], dict[int, TaskOutput]] = {}
        for name in loops:
            for visit in range(1, max_visits + 1):
                if (name, visit) in outputs:
                    continue
                done = self.store.load_iterations(self.run_id, _key(name, visit))
                if not done:
                    break
                iterations[(name, visit)] = {i: TaskOutput(**v) for i, v in done.items()}
        for (name, _), output in outputs.items():
            if tasks and name in tasks:
                typed(tasks[name], output)
        for (name, _), by_index in iterations.items():
            for output in by_index.values():
                if tasks and name in tasks:
                    typed(tasks[name], output)
        return outputs, iterations

    def task_done(self, task: str, visit: int, output: TaskOutput) -> None:
        record_task(self.store, self.run_id, task, visit, output)

    def iteration_done(self, task: str, visit: int, index: int, output: TaskOutput) -> None:
        self.store.save_iteration(self.run_id, _key(task, visit), index,
                                  output.model_dump(mode="json"))

    def finish(self, status: str) -> None:
        # The store stays open: its connections serve this process's next run.
        self.store.finish_run(self.run_id, status)


def typed(task: Any, output: TaskOutput) -> TaskOutput:
    """A restored output as a fresh one is: ``.pydantic`` the task's model (the journal
    keeps JSON), ``.json_dict`` a dict; a loop's iterations too.

    Example:
        >>> from pydantic import BaseModel
        >>> class Ticket(BaseModel):
        ...     category: str
        >>> class T:
        ...     def output_schema(self): return Ticket
        >>> typed(T(), TaskOutput(raw="", pydantic={"category": "billing"})).pydantic.category
        'billing'
    """
    for iteration in output.iterations or []:  # a restored loop's own iterations
        if isinstance(iteration, TaskOutput):
            typed(task, iteration)
    schema = task.output_schema() if hasattr(task, "output_schema") else None
    data = output.json_dict if isinstance(output.json_dict, dict) else output.pydantic
    if schema is None or not isinstance(data, dict) or isinstance(output.pydantic, schema):
        return output
    try:
        output.pydantic = schema.model_validate(data)
    except ValueError:
        return output  # a definition changed since (allow_drift): the JSON stays as it was
    if output.json_dict is None:
        output.json_dict = dict(data)
    return output
