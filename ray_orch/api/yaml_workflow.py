"""YAML workflows: agents, tasks and the process mode in one file, like PraisonAI's
agents.yaml, loaded into the same ``Agent`` / ``Task`` / ``Process`` objects::

    name: customer-service
    process: workflow            # sequential | workflow | hierarchical
    agents:
      support: {role: Support, goal: Handle inquiries}
    tasks:
      categorize:
        description: Categorize customer inquiry
        agent: support
        task_type: decision
        condition: {technical: [tech_support], billing: [billing_support]}

The file is checked by pydantic models (unknown keys are errors, types are checked) and
every reference (agents, context, next_tasks, condition targets) is resolved; each
problem is reported with its line: ``flow.yaml:7: tasks.categorize.agent: unknown agent
'suport' (agents: support, tech)``. Graph-level problems found by ``Process.validate``
(cycles, loops, ...) are mapped back to their line too.

Not expressible in YAML (use a Python driver): ``output_json`` / ``output_pydantic``
models, callable guardrails and tools, circuit breakers and custom Task subclasses.
String guardrails (rules judged by the agent's model) are supported.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ray_orch.api.process import Process
from ray_orch.core.errors import (
    DuplicateTaskError,
    InvalidTaskFieldError,
    UnknownTaskError,
    WorkflowDefinitionError,
)
from ray_orch.engine.graph import Mode
from ray_orch.policy.agent import Agent
from ray_orch.policy.task import Task

__all__ = ["AgentSpec", "TaskSpec", "WorkflowSpec", "load_workflow", "loads_workflow",
           "shell_variables"]

Loc = tuple[str | int, ...]


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


Names = Annotated[list[str], BeforeValidator(_one_or_many)]
LLMSpec = str | dict[str, Any] | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentSpec(_Strict):
    """One entry of ``agents:``; the fields of ``Agent`` (role defaults to the key)."""

    role: str | None = Field(None, min_length=1)
    goal: str = "Complete the task well"
    backstory: str = ""
    llm: LLMSpec = None
    base_url: str | None = None
    api_key: str | None = None
    instructions: str = ""
    name: str | None = None
    pool_size: int = Field(1, ge=1)
    max_concurrency: int = Field(64, ge=1)
    timeout: float = Field(120.0, gt=0)
    num_cpus: float = Field(0.0, ge=0)
    resources: dict[str, float] | None = None
    scheduling_strategy: Literal["DEFAULT", "SPREAD"] | None = None
    verbose: bool = False


class TaskSpec(_Strict):
    """One entry of ``tasks:``; the fields of ``Task``, with agents and tasks by name."""

    description: str = Field(min_length=1)
    agent: str | None = None
    expected_output: str = ""
    context: Names | None = None
    task_type: Literal["task", "decision", "loop"] = "task"
    condition: dict[str, Names] | None = None
    next_tasks: Names = Field(default_factory=list)
    loop_data: str | list[Any] | None = None
    max_iterations: int | None = Field(None, ge=1)
    max_retries: int = Field(3, ge=0)
    retry_delay: float = Field(0.2, ge=0)
    validation_steps: int = Field(2, ge=0)
    guardrails: Names | None = None
    guardrail: str | None = None
    fallback_agent: str | None = None
    async_execution: bool = False
    context_fields: list[str] | None = None
    context_budget: int | None = Field(None, ge=1)
    context_overflow: Literal["fail", "keep_recent", "summarize"] = "fail"
    handle_missing_context: bool = False
    condition_on_previous_failure: bool = False
    timeout: float | None = Field(None, gt=0)
    cache_ttl: float | None = Field(None, gt=0)
    max_visits: int | None = Field(None, ge=1)
    loop_ragged: Literal["error", "pad"] = "error"


class WorkflowSpec(_Strict):
    """A whole YAML workflow: the ``Process`` options, its agents and its tasks."""

    name: str | None = None
    process: Mode = "workflow"
    manager_llm: LLMSpec = None
    agents: dict[str, AgentSpec] = Field(default_factory=dict)
    tasks: dict[str, TaskSpec] = Field(min_length=1)
    on_failure: Literal["fail", "continue"] = "fail"
    max_visits: int = Field(10, ge=1)
    max_steps: int | None = Field(None, ge=1)
    max_manager_calls: int | None = Field(None, ge=1)
    checkpoint_dir: str | None = None
    cache: bool = False
    budget_tokens: int | None = Field(None, ge=1)
    budget_usd: float | None = Field(None, gt=0)


# Where each model's keys live: (key depth, section, model).
_SECTIONS: list[tuple[int, str | None, type[BaseModel]]] = [
    (1, None, WorkflowSpec), (3, "agents", AgentSpec), (3, "tasks", TaskSpec)]


# -- reading YAML with line numbers ------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false are booleans, so decision keys
    like ``yes:`` / ``no:`` / ``on:`` / ``off:`` stay strings."""


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def _read(text: str, source: str) -> tuple[Any, dict[Loc, int], list[tuple[Loc, int]]]:
    """Parse YAML; return the data, the line of every key / item, and duplicate keys."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f"{mark.line + 1}" if mark is not None else "?"
        problem = getattr(exc, "problem", None) or str(exc)
        raise WorkflowDefinitionError(f"{source}:{line}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {}
    duplicates: list[tuple[Loc, int]] = []

    def walk(node: yaml.Node, path: Loc) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                where = (*path, key)
                if key in seen:
                    duplicates.append((where, key_node.start_mark.line + 1))
                seen.add(key)
                lines[where] = key_node.start_mark.line + 1
                walk(value_node, where)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[(*path, i)] = item.start_mark.line + 1
                walk(item, (*path, i))

    if node is not None:
        lines[()] = node.start_mark.line + 1
        walk(node, ())
    return data, lines, duplicates


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _line(lines: dict[Loc, int], loc: Loc) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


class _Problems:
    """Collects line-precise problems and raises them as one typed error."""

    def __init__(self, source: str, lines: dict[Loc, int]) -> None:
        self.source = source
        self.lines = lines
        self.items: list[tuple[int, WorkflowDefinitionError]] = []

    def add(self, loc: Loc, message: str, cls: type[WorkflowDefinitionError] | None = None,
            *, line: int | None = None, field: str | None = None) -> None:
        task = str(loc[1]) if len(loc) >= 2 and loc[0] == "tasks" else None
        if field is None and (task is None or len(loc) >= 3):
            field = str(loc[2]) if task is not None else (str(loc[-1]) if loc else None)
        kind = cls or (InvalidTaskFieldError if task is not None else WorkflowDefinitionError)
        line = line or _line(self.lines, loc)
        text = f"{self.source}:{line}: {_dotted(loc)}: {message}"
        self.items.append((line, kind(text, task=task, field=field)))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        errors = [error for _, error in sorted(self.items, key=lambda item: item[0])]
        if len(errors) == 1:
            raise errors[0]
        listing = "\n".join(f"  - {p}" for p in errors)
        raise WorkflowDefinitionError(
            f"{self.source}: {len(errors)} problems in the workflow:\n{listing}",
            problems=errors)


# -- pydantic errors -> messages ---------------------------------------------------------


def _data_loc(data: Any, loc: tuple[Any, ...], kind: str) -> Loc:
    """The part of a pydantic error location that exists in the data (drops union tags
    like ``'str'``); a missing key is kept, to be named at its parent's line."""
    out: list[str | int] = []
    current = data
    for i, part in enumerate(loc):
        if (isinstance(current, dict) and part in current) or (
                isinstance(current, list) and isinstance(part, int) and part < len(current)):
            current = current[part]
        elif kind == "missing" and i == len(loc) - 1:
            current = None
        else:
            continue
        out.append(part)
    return tuple(out)


def _allowed(loc: Loc) -> list[str]:
    for depth, section, model in _SECTIONS:
        if len(loc) == depth and (section is None or loc[0] == section):
            return list(model.model_fields)
    return []


def _message(error: Any, loc: Loc) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed(loc)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown key '{loc[-1]}'{hint}; allowed: {', '.join(allowed)}"
    if kind == "missing":
        return "required key is missing"
    if kind in ("model_type", "dict_type"):
        return f"should be a mapping of keys to values (got {_show(value)})"
    msg = str(error["msg"])
    msg = msg[0].lower() + msg[1:] if msg else msg
    return f"{msg} (got {_show(value)})"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _pydantic_problems(exc: ValidationError, data: Any, problems: _Problems) -> None:
    grouped: dict[Loc, list[Any]] = {}
    for error in exc.errors(include_url=False):
        grouped.setdefault(_data_loc(data, error["loc"], error["type"]), []).append(error)
    for loc, errors in grouped.items():
        if len(errors) > 1 and all(e["type"] not in ("extra_forbidden", "missing")
                                   for e in errors):
            # a union (e.g. llm: str | mapping): say every form that would have fitted
            forms = " or ".join(dict.fromkeys(str(e["msg"]).removeprefix("Input should be ")
                                              for e in errors))
            problems.add(loc, f"should be {forms} (got {_show(errors[0].get('input'))})")
        else:
            for error in errors:
                problems.add(loc, _message(error, loc))


# -- ${ENV} in model settings --------------------------------------------------------------

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def shell_variables(path: str | os.PathLike[str]) -> dict[str, str]:
    """For a YAML workflow about to be submitted as a detached run: checked first (a
    typed error with its ``file:line``, before anything is submitted), then the
    variables it names (``${VAR}``) as this shell has them, for the job: the runtime
    may have started before they were set. Other files: ``{}``."""
    path = Path(path)
    if path.suffix not in (".yaml", ".yml"):
        return {}
    load_workflow(path)
    names = env_references(path.read_text())
    return {name: os.environ[name] for name in names if name in os.environ}


def env_references(text: str) -> list[str]:
    """The environment variables a workflow file names (``${VAR}``, ``${VAR:-default}``),
    in order: what a detached run of it takes from the submitting shell.

    Example:
        >>> env_references("llm: {base_url: '${BASE}', api_key: '${KEY:-none}'}")
        ['BASE', 'KEY']
    """
    return list(dict.fromkeys(match.group(1) for match in _ENV.finditer(text)))


def _expand(value: Any, loc: Loc, problems: _Problems) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in strings (recursively in mappings)."""
    if isinstance(value, dict):
        return {k: _expand(v, (*loc, k), problems) for k, v in value.items()}
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        problems.add(loc, f"environment variable {name} is not set (write ${{{name}:-value}} "
                          "for a default)")
        return match.group(0)

    return _ENV.sub(sub, value)


# -- building ----------------------------------------------------------------------------


def _check_names(data: dict[str, Any], problems: _Problems) -> None:
    """Every agent and task reference resolves (read from the raw data, so these are
    reported together with type errors elsewhere in the file)."""
    agent_map, task_map = data.get("agents"), data.get("tasks")
    agents = [str(k) for k in agent_map] if isinstance(agent_map, dict) else []
    tasks = [str(k) for k in task_map] if isinstance(task_map, dict) else []

    def unknown(kind: str, name: str, known: list[str]) -> str:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown {kind} '{name}'{hint} ({kind}s: {', '.join(known) or 'none defined'})"

    def names(value: Any, loc: Loc) -> list[tuple[Loc, str]]:
        if isinstance(value, str):
            return [(loc, value)]
        if isinstance(value, list):
            return [((*loc, i), v) for i, v in enumerate(value) if isinstance(v, str)]
        return []

    for tname, task in (task_map or {}).items() if isinstance(task_map, dict) else ():
        if not isinstance(task, dict):
            continue
        where: Loc = ("tasks", str(tname))
        for fieldname in ("agent", "fallback_agent"):
            ref = task.get(fieldname)
            if isinstance(ref, str) and ref not in agents:
                problems.add((*where, fieldname), unknown("agent", ref, agents))
        refs = names(task.get("context"), (*where, "context"))
        refs += names(task.get("next_tasks"), (*where, "next_tasks"))
        condition = task.get("condition")
        if isinstance(condition, dict):
            for key, targets in condition.items():
                refs += names(targets, (*where, "condition", key))
        for loc, ref in refs:
            if ref not in tasks:
                problems.add(loc, unknown("task", ref, tasks), UnknownTaskError)


def _path(value: str, base: Path) -> str:
    path = Path(os.path.expanduser(value))
    return str(path if path.is_absolute() else base / path)


def _build(spec: WorkflowSpec, base: Path, source: str, problems: _Problems) -> Process:
    agents: dict[str, Agent] = {}
    for key, a in spec.agents.items():
        llm = _expand(a.llm, ("agents", key, "llm"), problems)
        base_url = _expand(a.base_url, ("agents", key, "base_url"), problems)
        api_key = _expand(a.api_key, ("agents", key, "api_key"), problems)
        agents[key] = Agent(role=a.role or key, goal=a.goal, backstory=a.backstory, llm=llm,
                            base_url=base_url, api_key=api_key, instructions=a.instructions,
                            name=a.name, pool_size=a.pool_size, max_concurrency=a.max_concurrency,
                            timeout=a.timeout, num_cpus=a.num_cpus, resources=a.resources,
                            scheduling_strategy=a.scheduling_strategy, verbose=a.verbose)
    tasks: dict[str, Task] = {}
    for key, t in spec.tasks.items():
        loop_data: Any = t.loop_data
        if isinstance(loop_data, str):
            loop_data = _path(loop_data, base)
        tasks[key] = Task(
            description=t.description, agent=agents.get(t.agent) if t.agent else None,
            expected_output=t.expected_output, context=t.context,
            condition=dict(t.condition) if t.condition is not None else None,
            next_tasks=t.next_tasks, loop_data=loop_data, max_iterations=t.max_iterations,
            max_retries=t.max_retries, retry_delay=t.retry_delay,
            validation_steps=t.validation_steps, guardrails=list(t.guardrails or []) or None,
            guardrail=t.guardrail,
            fallback_agent=agents.get(t.fallback_agent) if t.fallback_agent else None,
            task_type=t.task_type, async_execution=t.async_execution,
            context_fields=t.context_fields, context_budget=t.context_budget,
            context_overflow=t.context_overflow,
            handle_missing_context=t.handle_missing_context,
            condition_on_previous_failure=t.condition_on_previous_failure, timeout=t.timeout,
            cache_ttl=t.cache_ttl, max_visits=t.max_visits, loop_ragged=t.loop_ragged)
    manager = _expand(spec.manager_llm, ("manager_llm",), problems)
    checkpoint = _path(spec.checkpoint_dir, base) if spec.checkpoint_dir else None
    return Process(tasks=tasks, agents=list(agents.values()), manager_llm=manager,
                   name=spec.name or Path(source).stem, on_failure=spec.on_failure,
                   max_visits=spec.max_visits, max_steps=spec.max_steps,
                   max_manager_calls=spec.max_manager_calls, checkpoint_dir=checkpoint,
                   cache=spec.cache, budget_tokens=spec.budget_tokens,
                   budget_usd=spec.budget_usd)


_FIELD = re.compile(r"^(\w+)(?:\[(?:'([^']*)'|(\d+))\])?$")


def _graph_loc(error: WorkflowDefinitionError, lines: dict[Loc, int]) -> Loc:
    """Where in the file a problem found by ``Process.validate`` lives."""
    if error.task is None:
        # manager model / agents problems of hierarchical mode: point at the setting
        for key in (error.field, "manager_llm" if error.field == "llm" else None, "process"):
            if key and (key,) in lines:
                return (key,)
        return ()
    loc: Loc = ("tasks", error.task)
    match = _FIELD.match(error.field or "")
    if match:
        name, key, index = match.groups()
        loc = (*loc, name)
        if key is not None:
            loc = (*loc, key)
        elif index is not None:
            loc = (*loc, int(index))
    return loc


def _relocate(error: WorkflowDefinitionError, source: str,
              lines: dict[Loc, int]) -> WorkflowDefinitionError:
    def one(err: WorkflowDefinitionError) -> WorkflowDefinitionError:
        line = _line(lines, _graph_loc(err, lines))
        return type(err)(f"{source}:{line}: {err}", task=err.task, field=err.field)

    if not error.problems:
        return one(error)
    problems = [one(p) for p in error.problems]
    listing = "\n".join(f"  - {p}" for p in problems)
    return type(error)(f"{source}: {len(problems)} problems in the workflow:\n{listing}",
                       task=error.task, field=error.field, problems=problems)


def loads_workflow(text: str, *, source: str = "<string>", base_dir: str | Path = ".",
                   mode: Mode | None = None, validate: bool = True) -> tuple[Process, Mode]:
    """Load a workflow from YAML text (``load_workflow`` for a file).

    Args:
        text: the YAML document.
        source: the name used in error messages (``source:LINE: ...``).
        base_dir: relative ``loop_data`` / ``checkpoint_dir`` paths start here.
        mode: run in this mode instead of the file's ``process:``.
        validate: also run ``Process.validate(mode)`` (graph checks: cycles, loops,
            agents) and report its problems with their lines.

    Returns:
        ``(process, mode)``: call ``getattr(process, mode)()`` to run it.

    Raises:
        WorkflowDefinitionError: every problem found, each with its line; a single
            problem is raised as its own type (``InvalidTaskFieldError`` for a bad task
            field or unknown agent, ``UnknownTaskError`` for an unknown task name).

    Example:
        >>> process, mode = loads_workflow('''
        ... tasks:
        ...   hello: {description: Say hello}
        ... ''', validate=False)
        >>> mode, list(process.tasks)
        ('workflow', ['hello'])
    """
    data, lines, duplicates = _read(text, source)
    problems = _Problems(source, lines)
    for where, line in duplicates:
        if len(where) == 2 and where[0] == "tasks":
            problems.add(where, f"two tasks are named '{where[1]}'", DuplicateTaskError,
                         line=line, field="name")
        else:
            problems.add(where, f"duplicate key '{where[-1]}' (the later one would silently "
                                "win)", line=line)
    from ray_orch.api.praison_yaml import convert, is_praison

    if is_praison(data):  # PraisonAI's agents.yaml (roles: ...)
        data, lines = convert(data, lines, problems)
        problems.lines = lines
    if not isinstance(data, dict):
        problems.add((), f"a workflow is a mapping with 'agents:' and 'tasks:', not "
                         f"{type(data).__name__}")
        problems.raise_if_any()
    _check_names(data, problems)
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        _pydantic_problems(exc, data, problems)
        problems.raise_if_any()
        raise  # unreachable: a ValidationError always has errors
    problems.raise_if_any()
    process = _build(spec, Path(base_dir), source, problems)
    problems.raise_if_any()
    chosen: Mode = mode or spec.process
    if validate:
        try:
            process.validate(chosen)
        except WorkflowDefinitionError as exc:
            raise _relocate(exc, source, lines) from None
    return process, chosen


def load_workflow(path: str | os.PathLike[str], *, mode: Mode | None = None,
                  validate: bool = True) -> tuple[Process, Mode]:
    """Load a YAML workflow file into a ``Process`` (real ``Agent`` and ``Task`` objects).

    ``${VAR}`` and ``${VAR:-default}`` in ``llm``, ``base_url``, ``api_key`` and
    ``manager_llm`` are read from the environment; relative ``loop_data`` and
    ``checkpoint_dir`` paths are relative to the file.

    Args:
        path: the ``.yaml`` file.
        mode: run in this mode instead of the file's ``process:``.
        validate: also check the graph (``Process.validate``) before returning.

    Returns:
        ``(process, mode)``.

    Raises:
        WorkflowDefinitionError: with ``file.yaml:LINE:`` before each problem.
        FileNotFoundError: there is no such file.

    Example:
        >>> import tempfile, textwrap
        >>> path = tempfile.mktemp(suffix=".yaml")
        >>> _ = open(path, "w").write(textwrap.dedent('''
        ...     agents:
        ...       writer: {role: Writer, goal: Write}
        ...     tasks:
        ...       draft: {description: Draft a note, agent: writer}
        ...     '''))
        >>> process, mode = load_workflow(path)
        >>> mode, [t.id for t in process.task_list]
        ('workflow', ['draft'])
    """
    file = Path(path)
    text = file.read_text(encoding="utf-8")
    return loads_workflow(text, source=str(path), base_dir=file.parent, mode=mode,
                          validate=validate)
