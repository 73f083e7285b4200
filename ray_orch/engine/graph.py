"""The workflow graph and its static validation (before any LLM call).

Edges:
- ``context``: data dependencies (a task waits for them and sees their outputs);
- ``next_tasks`` and decision routes: control flow (a task that an earlier-defined task
  routes to runs only when something routes to it; routes back to an earlier task are
  loops);
- order edges added by the mode (sequential: each task waits for the ones before it,
  except ``async_execution`` tasks, which run beside their neighbours).

``validate`` finds every problem and raises one ``WorkflowDefinitionError`` that lists
them all; each problem is itself a typed error naming the task and the field.
"""

from __future__ import annotations

import difflib
import graphlib
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

from ray_orch.core.errors import (
    DuplicateTaskError,
    InvalidTaskFieldError,
    LoopDataError,
    MissingAgentError,
    UnboundedCycleError,
    UnknownTaskError,
    WorkflowDefinitionError,
)
from ray_orch.core.loops import fields_of, load_items
from ray_orch.core.prompt import placeholders
from ray_orch.policy.decide import describe_routes
from ray_orch.policy.fields import check_task_fields, refs
from ray_orch.policy.task import Task

__all__ = ["Graph", "Mode", "build_graph"]

Mode = Literal["sequential", "workflow", "hierarchical"]


@dataclass(kw_only=True)
class Node:
    """One task in the graph, with its edges resolved to names."""

    name: str
    task: Task
    deps: list[str] = field(default_factory=list)        # data (context)
    explicit_context: bool = False
    after: list[str] = field(default_factory=list)       # order only
    next: list[str] = field(default_factory=list)        # control
    routes: dict[str, list[str]] = field(default_factory=dict)
    previous: str | None = None                          # the task defined before this one
    controlled: bool = False                             # has incoming control edges
    loop_items: list[Any] | None = None                  # static loop data
    either: list[str] = field(default_factory=list)      # implicit deps of which one suffices


@dataclass(kw_only=True)
class Graph:
    """A validated workflow."""

    mode: Mode
    """How the tasks run: ``"sequential"``, ``"workflow"`` or ``"hierarchical"``."""
    nodes: dict[str, Node]
    """Every task's node, by name."""
    order: list[str]
    """The task names in definition order."""
    route_descriptions: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per decision: what each route key leads to (the targets' descriptions), for an
    offline decision whose text does not describe its keys (``policy/decide.py``)."""

    def starts(self) -> list[str]:
        """Tasks that run without being routed to."""
        if self.mode != "workflow":
            return list(self.order)
        starts = [name for name in self.order if not self.nodes[name].controlled]
        return starts or self.order[:1]

    def work_units(self) -> tuple[int, list[str]]:
        """How many units of work the run has (a task, or one item of a loop over static
        data), and the loops over an upstream output (counted 1 each until their items
        are known): the progress bar's total."""
        nodes = [self.nodes[name] for name in self.order]
        pending = [n.name for n in nodes if n.task.task_type == "loop" and n.loop_items is None]
        units = sum(len(n.loop_items) if n.task.task_type == "loop" and n.loop_items is not None
                    else 1 for n in nodes)
        return units, pending

    def loop_sizes(self) -> dict[str, int]:
        """The item count of every loop over static data, by task name (a pool leases
        the members its loop needs before the items queue)."""
        return {name: len(n.loop_items) for name, n in self.nodes.items()
                if n.task.task_type == "loop" and n.loop_items is not None}

    def upstream(self) -> dict[str, list[str]]:
        """What each task waited for (data, order and control edges: ``next_tasks`` and
        decision routes), for critical-path analysis."""
        ups = {name: list(dict.fromkeys(n.deps + n.after)) for name, n in self.nodes.items()}
        for name, node in self.nodes.items():
            for target in node.next + [t for ts in node.routes.values() for t in ts]:
                if name not in ups[target]:
                    ups[target].append(name)
        return ups

    def definition(self) -> dict[str, Any]:
        """A plain description of the workflow (what a checkpoint's hash covers)."""
        out: dict[str, Any] = {"mode": self.mode, "tasks": {}}
        for name in self.order:
            node, task = self.nodes[name], self.nodes[name].task
            schema = task.output_schema()
            out["tasks"][name] = {
                "class": type(task).__qualname__, "description": task.description,
                "expected_output": task.expected_output, "type": task.task_type,
                "deps": node.deps, "after": node.after, "next": node.next,
                "routes": node.routes, "agent": _agent_ident(task.agent),
                "fallback": _agent_ident(task.fallback_agent),
                "schema": schema.model_json_schema() if schema else None,
                "loop_items": node.loop_items if node.loop_items is None
                else _items_hash(node.loop_items),
                "context_fields": task.context_fields,
            }
        return out


def _items_hash(items: list[Any]) -> str:
    try:
        text = json.dumps(items, sort_keys=True, default=str)
    except TypeError:  # keys that cannot be sorted together (None beside str)
        from ray_orch.store.checkpoint import string_keys

        text = json.dumps(string_keys(items), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _agent_ident(agent: Any) -> Any:
    if agent is None:
        return None
    role = getattr(agent, "role", None)
    return {"role": role if isinstance(role, str) else type(agent).__name__,
            "goal": getattr(agent, "goal", None) if isinstance(getattr(agent, "goal", None), str)
            else None}


def name_tasks(tasks: dict[str, Task] | Iterable[Task]) -> list[Task]:
    """Give every task its name (dict keys win) and return them in definition order."""
    if isinstance(tasks, dict):
        named = []
        for key, task in tasks.items():
            if isinstance(task, Task):
                task.name = key
            named.append(task)
        return named
    return list(tasks)


def build_graph(tasks: list[Task], mode: Mode, *, has_default_agent: bool,
                needs_agents: bool = True) -> Graph:
    """Resolve every edge and validate the workflow.

    Args:
        tasks: named tasks in definition order.
        mode: how the process runs them.
        has_default_agent: a task without an agent can still run (a default model exists).
        needs_agents: False in hierarchical mode (the manager assigns agents).

    Raises:
        WorkflowDefinitionError: listing every problem found (each in ``.problems``).
    """
    problems: list[WorkflowDefinitionError] = []
    nodes, order = _collect_nodes(tasks, problems)
    resolve = _Resolver(nodes=nodes, order=order, problems=problems)
    previous: str | None = None
    last_barrier: str | None = None
    for name in order:
        node, task = nodes[name], nodes[name].task
        node.previous = previous
        check_task_fields(name, task, problems)
        last_barrier = _mode_edges(node, mode, resolve, order=order, previous=previous,
                                   last_barrier=last_barrier)
        if mode != "workflow" and task.context is None and previous is not None:
            _after_failure_edges(node, nodes, previous)
        _check_node(node, previous, needs_agents=needs_agents,
                    has_default_agent=has_default_agent, problems=problems)
        previous = name
    _mark_controlled(nodes, order)
    graph = Graph(mode=mode, nodes=nodes, order=order)
    if not problems:
        _check_cycles(graph, problems)
        # No reachability check is needed: the first task always starts, and a task is
        # gated only by a route from a task defined before it, so every task is reachable.
    if problems:
        _raise_problems(problems)
    by_name = {name: node.task for name, node in nodes.items()}
    # An offline decision whose text does not describe its keys describes them by what
    # they lead to (policy/decide.py); carried to the members with the run's graph.
    graph.route_descriptions = {name: describe_routes(node.routes, by_name)
                                for name, node in nodes.items() if node.routes}
    return graph


def _collect_nodes(tasks: list[Task], problems: list[WorkflowDefinitionError]
                   ) -> tuple[dict[str, Node], list[str]]:
    """One node per task, skipping (as problems) what is not a Task and duplicate names.

    Args:
        tasks: named tasks in definition order.
        problems: where problems found are appended.

    Returns:
        The nodes by name, and the names in definition order.
    """
    nodes: dict[str, Node] = {}
    order: list[str] = []
    for task in tasks:
        if not isinstance(task, Task):
            problems.append(InvalidTaskFieldError(
                f"tasks must be Task objects; got {type(task).__name__}", field="tasks"))
            continue
        if task.id in nodes:
            problems.append(DuplicateTaskError(f"two tasks are named '{task.id}'", task=task.id,
                                               field="name"))
            continue
        nodes[task.id] = Node(name=task.id, task=task)
        order.append(task.id)
    return nodes, order


class _Resolver:
    """Resolves a task reference (a name or a Task) to a node's name."""

    def __init__(self, *, nodes: dict[str, Node], order: list[str],
                 problems: list[WorkflowDefinitionError]) -> None:
        self.nodes, self.order, self.problems = nodes, order, problems
        self.by_object = {id(node.task): name for name, node in nodes.items()}

    def __call__(self, owner: str, fieldname: str, ref: Any) -> str | None:
        """The name ``ref`` denotes.

        Args:
            owner: the task whose field holds the reference.
            fieldname: that field (named in the problem if the reference is unknown).
            ref: a task name or a Task.

        Returns:
            The node's name, or None (an unknown task is appended to the problems; a
            wrong type is left to ``check_task_fields``).
        """
        if isinstance(ref, Task):
            name = self.by_object.get(id(ref))
            if name is None:
                self.problems.append(UnknownTaskError(
                    f"task '{owner}': {fieldname} names Task '{ref.id}', which is not part of "
                    "this process", task=owner, field=fieldname))
            return name
        if isinstance(ref, str):
            if ref not in self.nodes:
                close = [n for n in self.nodes if n.lower() == ref.lower()] or \
                    difflib.get_close_matches(ref, list(self.nodes), n=1, cutoff=0.75)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.problems.append(UnknownTaskError(
                    f"task '{owner}': {fieldname} names unknown task '{ref}'{hint}; known: "
                    f"{', '.join(self.order)}", task=owner, field=fieldname))
                return None
            return ref
        return None  # a wrong type: task_problems names it


def _mode_edges(node: Node, mode: Mode, resolve: _Resolver, *, order: list[str],
                previous: str | None, last_barrier: str | None) -> str | None:
    """Set a node's context edges and the edges its mode adds.

    Args:
        node: the node (its task's ``context``, ``next_tasks`` and routes are resolved).
        mode: workflow (control edges), sequential (order edges) or hierarchical.
        resolve: resolves references to names.
        order: every name in definition order.
        previous: the task defined before this one.
        last_barrier: in sequential mode, the last task that was not ``async_execution``.

    Returns:
        The last barrier after this node.
    """
    name, task = node.name, node.task
    if task.context is not None:
        node.explicit_context = True
        node.deps = [r for r in (resolve(name, "context", ref)
                                 for ref in refs(task.context)) if r]
    if mode == "workflow":
        node.next = [r for r in (resolve(name, "next_tasks", ref)
                                 for ref in refs(task.next_tasks)) if r]
        if isinstance(task.condition, dict) and task.task_type in ("decision", "loop"):
            for key in task.condition:
                targets = [resolve(name, f"condition['{key}']", ref)
                           for ref in refs(task.condition[key], one=True)]
                node.routes[key] = [t for t in targets if t]
    elif mode == "sequential":
        if task.context is None and previous is not None:
            implicit = last_barrier if task.async_execution else previous
            node.deps = [implicit] if implicit else []
        if task.async_execution:
            node.after = [last_barrier] if last_barrier else []
        else:
            node.after = [n for n in order[:order.index(name)] if n not in node.deps]
            last_barrier = name
    else:  # hierarchical: no explicit context means "after the task before"
        if task.context is None and previous is not None and not task.async_execution:
            node.deps = [previous]
    return last_barrier


def _after_failure_edges(node: Node, nodes: dict[str, Node], previous: str) -> None:
    """Adjust implicit context around ``condition_on_previous_failure`` (not in workflow mode).

    Args:
        node: a node without explicit context.
        nodes: every node by name.
        previous: the task defined before this one.
    """
    if node.task.condition_on_previous_failure:
        # It runs because `previous` failed: there is no output of it to read.
        node.deps = [d for d in node.deps if d != previous]
    elif node.deps == [previous] and nodes[previous].task.condition_on_previous_failure \
            and (primary := nodes[previous].previous):
        # After a primary/fallback pair: read whichever of the two produced output.
        node.deps = [primary, previous]
        node.either = list(node.deps)


def _check_node(node: Node, previous: str | None, *, needs_agents: bool,
                has_default_agent: bool, problems: list[WorkflowDefinitionError]) -> None:
    """Order a fallback after its primary; check the node's agent and loop data.

    Args:
        node: the node, its edges set.
        previous: the task defined before this one.
        needs_agents: whether every task needs an agent.
        has_default_agent: whether a task without one can still run.
        problems: where problems found are appended.
    """
    name, task = node.name, node.task
    if task.condition_on_previous_failure and previous is None:
        problems.append(InvalidTaskFieldError(
            f"task '{name}': condition_on_previous_failure needs a task before it",
            task=name, field="condition_on_previous_failure"))
    if task.condition_on_previous_failure and previous and previous not in node.after \
            and previous not in node.deps:
        node.after.append(previous)
    if needs_agents and task.agent is None and not has_default_agent:
        problems.append(MissingAgentError(
            f"task '{name}' has no agent and no default model is configured; give it "
            "agent=..., or set RAY_ORCH_MODEL", task=name, field="agent"))
    if task.task_type == "loop" and (task.loop_data is None or isinstance(
            task.loop_data, (str, os.PathLike, list, tuple))):
        _check_loop(node, problems)


def _mark_controlled(nodes: dict[str, Node], order: list[str]) -> None:
    """Mark the nodes that run only when routed to.

    A task runs without being routed to unless a task defined before it routes to it;
    a route back to an earlier task (revise -> draft) is a loop, not a gate.

    Args:
        nodes: every node by name, their control edges set.
        order: the names in definition order.
    """
    position = {name: i for i, name in enumerate(order)}
    for node in nodes.values():
        for target in node.next + [t for ts in node.routes.values() for t in ts]:
            if position[node.name] < position[target]:
                nodes[target].controlled = True


def _raise_problems(problems: list[WorkflowDefinitionError]) -> NoReturn:
    """Raise the one problem found, or one ``WorkflowDefinitionError`` listing them all.

    Args:
        problems: the problems found (at least one).
    """
    if len(problems) == 1:
        raise problems[0]
    listing = "\n".join(f"  - {p}" for p in problems)
    raise WorkflowDefinitionError(f"{len(problems)} problems in the workflow:\n{listing}",
                                  problems=problems)


def _check_loop(node: Node, problems: list[WorkflowDefinitionError]) -> None:
    task = node.task
    if task.loop_data is None:
        if not node.deps:
            problems.append(LoopDataError(
                f"task '{node.name}': a loop needs loop_data (a CSV/JSON/JSONL path or a list) "
                "or a context task whose output lists the items", task=node.name,
                field="loop_data"))
        return
    try:
        items = load_items(task.loop_data, task=node.name, ragged=task.loop_ragged)
    except LoopDataError as exc:
        problems.append(exc)
        return
    node.loop_items = items
    if isinstance(task.max_iterations, int) and task.max_iterations >= 1 and \
            len(items) > task.max_iterations:
        problems.append(LoopDataError(
            f"task '{node.name}': loop_data has {len(items)} items, more than max_iterations="
            f"{task.max_iterations}", task=node.name, field="max_iterations"))
    unknown = placeholders(task.description) - fields_of(items)
    if unknown:
        problems.append(LoopDataError(
            f"task '{node.name}': description placeholders {sorted(unknown)} have no matching "
            f"column in loop_data (columns: {sorted(fields_of(items) - {'index', 'item'})})",
            task=node.name, field="description"))


def _check_cycles(graph: Graph, problems: list[WorkflowDefinitionError]) -> None:
    data = graphlib.TopologicalSorter({n: set(node.deps + node.after)
                                       for n, node in graph.nodes.items()})
    try:
        data.prepare()
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        problems.append(UnboundedCycleError(
            f"context dependencies form a cycle: {cycle}; a task cannot wait for its own "
            "output", task=exc.args[1][0], field="context"))
        return
    # A control cycle must pass through a decision, or nothing can ever leave it.
    plain = {n: set(node.next) for n, node in graph.nodes.items()
             if node.task.task_type != "decision"}
    sorter = graphlib.TopologicalSorter({n: {m for m in succ if m in plain}
                                         for n, succ in plain.items()})
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        problems.append(UnboundedCycleError(
            f"next_tasks form a cycle with no decision in it: {cycle}; it would never end "
            "(route the back-edge through a decision task)", task=exc.args[1][0],
            field="next_tasks"))
