"""``AgentTeam`` (also ``Agents``, ``PraisonAIAgents``): PraisonAI's team, run on ``Process``.

A PraisonAI script moves here by changing its import line. The team turns PraisonAI's
conventions into a ray-orch workflow and runs it with ``Process``:

- ``process="sequential"``: one task after another, each seeing the previous answer;
- ``process="workflow"``: tasks with ``next_tasks`` or decisions (``task_type="decision"``,
  ``condition={answer: [task, ...]}``) run as a graph from the ``is_start`` task; without
  any of them, PraisonAI chains the tasks in order, and so does this;
- ``process="hierarchical"``: a manager model (``manager_llm``) assigns the tasks;
- no tasks: one task per agent, from its ``instructions`` (or role and goal), in order.

``start()`` / ``astart()`` return the final task's answer (``raw``), or with
``return_dict=True`` PraisonAI's ``{"task_status": {i: status}, "task_results": {i:
TaskOutput}}`` keyed by each task's position (PraisonAI's task ids). Callbacks and
``output_file`` run on the driver as each task's output arrives.
"""

from __future__ import annotations

import copy
import inspect
import logging
from typing import Any

from ray_orch.api.driver import DriverOptions, RunDriver
from ray_orch.api.process import Process
from ray_orch.api.team_state import TeamState, load_state, save_state
from ray_orch.api.team_tasks import (
    adapt_loop,
    adapt_routes,
    add_content,
    context_text,
    copied_task,
    fill_variables,
    plain_task,
    praison_flow,
    relink,
)
from ray_orch.core.errors import InvalidTaskFieldError
from ray_orch.core.events import Event
from ray_orch.core.output import TaskOutput
from ray_orch.engine.runspec import RunSpec
from ray_orch.policy.agent_chat import agent_guardrails
from ray_orch.policy.fields import PROCESS_KEYWORDS
from ray_orch.policy.outcomes import set_outcome
from ray_orch.policy.praison import (
    TEAM_NO_EFFECT,
    MultiAgentHooksConfig,
    no_effect,
    team_hooks,
)
from ray_orch.policy.task import Task

__all__ = ["AgentTeam", "Agents", "MultiAgentHooksConfig", "PraisonAIAgents"]

log = logging.getLogger("ray_orch.team")

_PROCESSES = ("sequential", "workflow", "hierarchical")
# Process keywords a team passes on (checkpoint_dir, budgets, on_failure, ...).
_PROCESS_KEYWORDS = {name for name in inspect.signature(Process.__init__).parameters
                     if name not in ("self", "tasks", "agents", "manager_llm", "name",
                                     "verbose", "cache")} | PROCESS_KEYWORDS
# PraisonAI's statuses for ray-orch's.
_STATUS = {"completed": "completed", "failed": "failed"}


class AgentTeam(TeamState):
    """A team of agents and their tasks, run PraisonAI's way on Ray.

    Args:
        agents: the agents.
        tasks: a list of Tasks (PraisonAI's form) or ``{"name": Task}``; None: one task
            per agent, built from its instructions (or role and goal).
        process: ``"sequential"``, ``"workflow"`` or ``"hierarchical"``.
        manager_llm: the hierarchical manager's model (default: the default model).
        name: the team's name (the workflow's name in metrics and checkpoints).
        variables: ``{name: value}`` put into ``{name}`` placeholders of every task's
            description and expected output.
        llm / model: the model of every agent that names none.
        caching: cache every task's result (``Process(cache=True)``).
        verbose: print each task's progress (and the metrics URL).
        output: PraisonAI's display preset: ``"verbose"``, ``"debug"`` or ``"normal"``
            is ``verbose=True``; ``"silent"`` (and the rest) prints nothing.
        execution: PraisonAI's ``{"max_iter": n}`` (or an object with ``max_iter``): at
            most ``n`` task visits in a run (``Process(max_steps=n)``).
        guardrails: a guardrail (a function, a rule string, PraisonAI's presets) or a
            list of them, checked on every task's output after the task's own.
        hooks: a ``MultiAgentHooksConfig`` (or a dict of its fields): ``on_task_start(task,
            task_id)`` and ``on_task_complete(task, output)`` called on the driver (their
            exceptions logged, as PraisonAI's), ``completion_checker(task, raw)`` judging
            each answer (False: the task answers again, within its retries).
        **options: ``Process`` keywords (``checkpoint_dir``, ``on_failure``,
            ``budget_usd``, ...), or PraisonAI team keywords without effect here (warned
            once each).

    Raises:
        InvalidTaskFieldError: an unknown process or keyword, a task that is not a Task.

    Example:
        >>> from ray_orch import Agent, AgentTeam
        >>> team = AgentTeam(agents=[Agent(name="Writer", instructions="Write a haiku")])
        >>> [t.description for t in team.tasks.values()]
        ['Write a haiku']
    """

    def __init__(self, agents: list[Any] | None = None, *, tasks: Any = None,
                 process: str = "sequential", manager_llm: Any = None,
                 name: str | None = None, variables: dict[str, Any] | None = None,
                 llm: Any = None, model: Any = None, caching: Any = None,
                 verbose: Any = False, hooks: Any = None, output: Any = None,
                 execution: Any = None, guardrails: Any = None, **options: Any) -> None:
        if process not in _PROCESSES:
            raise InvalidTaskFieldError(f"AgentTeam process must be one of {_PROCESSES}, "
                                        f"not {process!r}", field="process")
        if llm is not None and model is not None:
            raise InvalidTaskFieldError("AgentTeam: give llm or model (its alias), not both",
                                        field="model")
        self.process_options = no_effect("AgentTeam", TEAM_NO_EFFECT, options,
                                         known=dict.fromkeys(_PROCESS_KEYWORDS))
        self.agents = list(agents or [])
        self.process = process
        self.manager_llm = manager_llm
        self.name = name or "team"
        self.variables = dict(variables or {})
        self.llm = model if model is not None else llm
        self.caching = bool(caching)
        self.verbose = bool(verbose) or _verbose_output(output)
        self.hooks = team_hooks(hooks)
        self.guardrails = agent_guardrails(guardrails, who="AgentTeam")
        max_iter = _max_iter(execution)
        if max_iter is not None:
            self.process_options.setdefault("max_steps", max_iter)
        self.tasks = self._number(tasks)
        self.last_process: Process | None = None
        self._ends_unmatched: set[str] = set()  # decisions given PraisonAI's end-on-no-match
        self._state_init()

    # -- building ----------------------------------------------------------------------

    def _number(self, tasks: Any) -> dict[Any, Task]:
        """PraisonAI's task ids: positions (or the dict's keys)."""
        if tasks is None:
            if not self.agents:
                raise InvalidTaskFieldError("AgentTeam needs agents, tasks, or both",
                                            field="agents")
            tasks = [_task_for(agent) for agent in self.agents]
            _unique_names(tasks)
            return dict(enumerate(tasks))
        if isinstance(tasks, dict):
            numbered = {key: task for key, task in tasks.items()}
            for key, task in numbered.items():
                if isinstance(task, Task) and task.name is None:
                    task.name = str(key)
        elif isinstance(tasks, (list, tuple)):
            numbered = dict(enumerate(tasks))
        else:
            raise InvalidTaskFieldError(f"AgentTeam tasks must be a list of Tasks, not "
                                        f"{type(tasks).__name__}", field="tasks")
        if not numbered:
            raise InvalidTaskFieldError("AgentTeam tasks is empty", field="tasks")
        for key, task in numbered.items():
            if not isinstance(task, Task):
                raise InvalidTaskFieldError(f"AgentTeam tasks[{key!r}] must be a Task, not "
                                            f"{type(task).__name__}", field="tasks")
        return numbered

    def _mode(self) -> str:
        if self.process != "workflow":
            return self.process
        routed = any(t.next_tasks or t.condition for t in self.tasks.values())
        return "workflow" if routed else "sequential"

    def _prepare(self, agents: dict[int, Any] | None = None) -> list[Task]:
        """The tasks in the order ``Process`` runs them, PraisonAI's conventions applied
        to copies (the user's tasks and agents are not changed); ``agents`` maps each
        agent's id to the copy the run uses."""
        originals = list(self.tasks.values())
        tasks = [copied_task(task, agents or {}) for task in originals]
        relink(tasks, {id(original): task for original, task in
                        zip(originals, tasks, strict=True)})
        self._run_keys = {id(task): key for key, task in zip(self.tasks, tasks, strict=True)}
        names = {t.id for t in tasks}
        for task in tasks:  # each returns an undo; a run's copies need none
            fill_variables(task, self.variables)
            context_text(task, names)
            self.hooks.apply(task, self._task_id(task))
            _with_guardrails(task, self.guardrails)
            plain_task(task, self.process)
            if adapt_routes(task):
                self._ends_unmatched.add(task.id)
            adapt_loop(task)
            praison_flow(task)
        if self._mode() == "workflow":
            starts = [t for t in tasks if getattr(t, "is_start", False)]
            if len(starts) > 1:
                raise InvalidTaskFieldError(
                    f"workflow has {len(starts)} is_start tasks "
                    f"({', '.join(t.id for t in starts)}); give it one", task=starts[1].id,
                    field="is_start")
            if starts:
                tasks.remove(starts[0])
                tasks.insert(0, starts[0])
        return tasks

    def _task_id(self, task: Task) -> Any:
        """The key the user gave ``task`` (or its run copy) in the team's tasks."""
        run_keys = getattr(self, "_run_keys", {})
        if id(task) in run_keys:
            return run_keys[id(task)]
        return next((key for key, t in self.tasks.items() if t is task), task.id)

    def _new_process(self) -> _TeamProcess:
        originals = list(self.agents)
        for task in self.tasks.values():
            if task.agent is not None and not any(task.agent is a for a in originals):
                originals.append(task.agent)
        copies = {id(agent): self._run_agent(agent) for task in self.tasks.values()
                  for agent in (task.agent, task.fallback_agent) if agent is not None}
        copies.update({id(agent): self._run_agent(agent) for agent in originals
                       if id(agent) not in copies})
        agents = [copies[id(agent)] for agent in originals]
        tasks = self._prepare(copies)
        options = dict(self.process_options)
        options.setdefault("progress", self.verbose or None)
        process = _TeamProcess(tasks, agents=agents, manager_llm=self.manager_llm,
                               name=self.name, verbose=self.verbose, cache=self.caching,
                               **options)
        process.team = self
        process.originals = {task.id: task for task in self.tasks.values()}
        return process

    def _run_agent(self, agent: Any) -> Any:
        """The agent a run uses: the user's own, or a copy with the team's ``llm`` when
        it names none (the user's agent is not changed)."""
        if self.llm is None or getattr(agent, "llm", 0) is not None:
            return agent
        copied = copy.copy(agent)
        copied.llm = self.llm
        copied._config = None
        return copied

    # -- running -----------------------------------------------------------------------

    def start(self, content: Any = None, return_dict: bool = False, **kwargs: Any) -> Any:
        """Run the team and return the final task's answer.

        Args:
            content: text added to every task's prompt (PraisonAI's ``content``).
            return_dict: return ``{"task_status": ..., "task_results": ...}`` instead.
            **kwargs: ``resume=`` / ``run_id=`` of ``Process`` runs; PraisonAI's
                ``output=`` (display mode) is accepted and has no effect.

        Returns:
            The final task's ``raw`` answer, or the dict.

        Raises:
            WorkflowDefinitionError: the team cannot run (before any model call).
            RunError: the run failed (``.results`` holds what completed).
        """
        from ray_orch.core.sync import run_sync

        process, restore = self._begin(content, kwargs)
        return run_sync(self._finish(process, restore, return_dict, kwargs))

    async def astart(self, content: Any = None, return_dict: bool = False,
                     **kwargs: Any) -> Any:
        """Async form of ``start()``."""
        process, restore = self._begin(content, kwargs)
        return await self._finish(process, restore, return_dict, kwargs)

    def _begin(self, content: Any, kwargs: dict[str, Any]) -> tuple[_TeamProcess, Any]:
        output = kwargs.pop("output", None)
        process = self._new_process()
        if output is not None:  # start(output=...): this run's display preset
            process.verbose = _verbose_output(output)
            process.progress = process.verbose or None
        self.last_process = process
        return process, add_content(process.task_list, content)

    async def _finish(self, process: _TeamProcess, restore: Any, return_dict: bool,
                      kwargs: dict[str, Any]) -> Any:
        try:
            # The public method (not _arun): `ray-orch run/validate` intercepts it.
            await getattr(process, "a" + self._mode())(**kwargs)
        finally:
            restore()
            for ran in process.task_list:  # PraisonAI's statuses, for scripts that read them
                set_outcome(process.originals[ran.id],
                            status=_STATUS.get(ran.status, "not started"), result=ran.result)
        return self._answer(return_dict)

    def run(self, content: Any = None, return_dict: bool = False, **kwargs: Any) -> Any:
        """PraisonAI's silent ``start()``: the same here."""
        return self.start(content, return_dict, **kwargs)

    def _answer(self, return_dict: bool) -> Any:
        results = {key: task.result for key, task in self.tasks.items()}
        if not return_dict:
            last = results[list(results)[-1]]
            if last is not None:
                return last.raw
        return {"task_status": {key: _STATUS.get(task.status, "not started")
                                for key, task in self.tasks.items()},
                "task_results": results}

    # -- PraisonAI's inspection methods ------------------------------------------------

    def get_task_status(self, task_id: Any) -> str | None:
        """A task's PraisonAI status (``"not started"``, ``"completed"``, ``"failed"``)."""
        task = self.tasks.get(task_id)
        return None if task is None else _STATUS.get(task.status, "not started")

    def get_all_tasks_status(self) -> dict[Any, str]:
        """Every task's PraisonAI status by id."""
        return {key: _STATUS.get(t.status, "not started") for key, t in self.tasks.items()}

    def get_task_result(self, task_id: Any) -> TaskOutput | None:
        """A task's output by id."""
        task = self.tasks.get(task_id)
        return None if task is None else task.result

    def __getstate__(self) -> dict[str, Any]:
        # A tool or callback that closes over the team sends only the state's name.
        return self._state_getstate()

    def __repr__(self) -> str:
        return f"AgentTeam(name={self.name!r}, process={self.process!r}, tasks={len(self.tasks)})"


Agents = AgentTeam
PraisonAIAgents = AgentTeam


class _TeamProcess(Process):
    """A Process of the team's run copies of its tasks; its runs' drivers are
    ``_TeamDriver``s."""

    team: AgentTeam
    originals: dict[str, Task]
    """The user's tasks by name (the process runs copies of them)."""

    def _new_driver(self, spec: RunSpec, options: DriverOptions) -> RunDriver:
        return _TeamDriver(spec, tasks=self.task_list, options=options, process=self)


class _TeamDriver(RunDriver):
    """A run that shows callbacks PraisonAI's view of outputs, keeps the team's state
    in its actor and snapshots it into the checkpoint directory."""

    def __init__(self, spec: RunSpec, *, tasks: list[Task], options: DriverOptions,
                 process: _TeamProcess) -> None:
        super().__init__(spec, tasks=tasks, options=options)
        # The team's state snapshot lives beside an SQLite store's file (a directory
        # store only; a PostgreSQL run keeps no snapshot).
        self._state_dir = process.checkpoint_dir
        self.team = process.team
        agents = process.agents + [t.agent for t in process.task_list]
        self._names = {getattr(a, "role", None): getattr(a, "name", None) for a in agents}

    def _ready_state(self) -> None:
        from ray_orch.api.runtime import ensure_ray

        ensure_ray(runtime_env=self.options.runtime_env, **self.options.ray_init)
        directory = self._state_dir
        restored = load_state(directory) if self.spec.resume and directory else None
        self.team._start_state(restored)

    async def run(self, *, live: Any = None) -> dict[str, TaskOutput]:
        self._ready_state()
        try:
            outputs = await super().run(live=live)
        finally:
            await self._snapshot()  # after the callbacks, which may have changed it
        for name, output in outputs.items():
            self._as_praison(output, self._by_name.get(name))
        return outputs

    def output_view(self) -> Any:
        return self._as_praison

    def _as_praison(self, output: TaskOutput, task: Task | None) -> TaskOutput:
        """PraisonAI's view of an output: its agent by name (not role); an ``output_json``
        task's output is JSON only (``json_dict``, no ``pydantic``)."""
        if task is not None and task.output_json is not None and task.output_pydantic is None:
            output.pydantic = None
        name = self._names.get(output.agent)
        if isinstance(name, str):
            output.agent = name
        return output

    def on_event(self, event: Event) -> None:
        if event.kind == "run_started" and event.data.get("metrics_url") and \
                not (self.options.verbose or self.team.process_options.get("metrics")):
            # PraisonAI prints nothing of the kind: the URL only when asked for.
            event = event.model_copy(update={"data": {k: v for k, v in event.data.items()
                                                      if k != "metrics_url"}})
        super().on_event(event)
        if event.kind == "task_ready" and event.task in self._by_name:
            task = self._by_name[event.task]
            self.team.hooks.started(task, self.team._task_id(task))
        if event.kind == "decision" and event.data.get("route") == "default" and \
                event.task in self.team._ends_unmatched:
            log.warning("decision task '%s': its answer matched none of its routes; the "
                        "workflow ends there (as PraisonAI's does)", event.task)
        elif event.kind == "task_finished" and self._state_dir:
            self.later(self._snapshot())

    async def _snapshot(self) -> None:
        store = self.team._store()
        if store is not None and self._state_dir:
            save_state(await store.all.remote(), self._state_dir)


# -- PraisonAI's conventions -------------------------------------------------------------

def _task_for(agent: Any) -> Task:
    """PraisonAI's ``Agent.generate_task()``: a task from an agent's instructions."""
    instructions = getattr(agent, "instructions", "") or ""
    description = instructions or (f"Execute task as {getattr(agent, 'role', 'Assistant')} "
                                   f"with goal: {getattr(agent, 'goal', '')}")
    return Task(name=getattr(agent, "name", None), description=description,
                expected_output="Complete the assigned task successfully", agent=agent)


def _with_guardrails(task: Task, guardrails: list[Any]) -> Any:
    """The team's guardrails after the task's own, for one run; returns the undo."""
    before = task.guardrails
    if guardrails:
        task.guardrails = [*task.guardrails, *guardrails]

    def undo() -> None:
        task.guardrails = before
    return undo


def _verbose_output(output: Any) -> bool:
    """Whether PraisonAI's ``output=`` preset shows progress."""
    return isinstance(output, str) and output.strip().lower() in ("verbose", "debug",
                                                                   "normal")


def _max_iter(execution: Any) -> int | None:
    """PraisonAI's ``execution`` ``max_iter`` (a dict, or a config object), if given.

    Raises:
        InvalidTaskFieldError: a max_iter that is not a positive int.
    """
    if execution is None or isinstance(execution, str):
        return None
    value = execution.get("max_iter") if isinstance(execution, dict) else \
        getattr(execution, "max_iter", None)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidTaskFieldError(f"AgentTeam execution max_iter must be a positive int, "
                                    f"not {value!r}", field="execution")
    return value


def _unique_names(tasks: list[Task]) -> None:
    """Tasks built from agents of one name (two unnamed ``Agent(instructions=...)``, both
    "Assistant") get ``name``, ``name_2``, ... as PraisonAI's numbered tasks never clash."""
    seen: dict[str, int] = {}
    for task in tasks:
        base = task.id
        seen[base] = seen.get(base, 0) + 1
        if seen[base] > 1:
            task.name = f"{base}_{seen[base]}"
