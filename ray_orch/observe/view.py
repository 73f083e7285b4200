"""What a picture of a workflow shows: the graph as ``build_graph`` resolves it (so a
picture shows exactly the edges the scheduler follows) plus, after a run, each task's
status, time and the decision routes taken. ``visualize`` draws it as Mermaid text,
``picture_png`` as a PNG.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ray_orch.core.events import Event
from ray_orch.core.output import TaskOutput
from ray_orch.core.routing import DEFAULT_KEYS
from ray_orch.engine.graph import Graph, Mode, build_graph, name_tasks
from ray_orch.engine.runspec import RunResult
from ray_orch.policy.task import Task

__all__ = ["STATUS_FILL", "STATUS_STYLE", "TAKEN", "TYPE_FILL", "Drawable", "Edge", "EdgeKind",
           "HasPicture", "RunPicture", "View", "graph_data", "graph_of_definition",
           "loop_note", "task_role", "tools_note", "view_of"]


@dataclass(kw_only=True)
class RunPicture:
    """What a picture of a workflow is drawn from: its graph and, after a run, the run's
    records (observe takes these, never a ``Process``)."""

    graph: Graph
    """The workflow as ``build_graph`` resolved it."""
    name: str = "workflow"
    """The workflow's name (the PNG's title)."""
    result: RunResult | None = None
    """The last run's result (statuses, outputs, errors), if it ran."""
    events: list[Event] = field(default_factory=list)
    """The last run's events (the decision routes taken)."""


class HasPicture(Protocol):
    """Anything that can say what to draw (``Process`` is one)."""

    def picture(self, mode: Mode | None = None) -> RunPicture:
        """The graph of ``mode`` (default: the last run's) and the last run's records."""
        ...


Drawable = RunPicture | HasPicture | dict[str, Task] | Iterable[Task]
"""What the drawing functions take: a picture, a ``Process``, or the guide's tasks."""

EdgeKind = Literal["context", "next", "route", "failure"]

_RAN = ("completed", "failed", "running")
STATUS_STYLE = {  # Mermaid classDefs; the PNG uses the fills
    "completed": "fill:#c8e6c9,stroke:#2e7d32,color:#1b5e20",
    "failed": "fill:#ffcdd2,stroke:#c62828,color:#b71c1c",
    "skipped": "fill:#eeeeee,stroke:#9e9e9e,color:#616161,stroke-dasharray:4 3",
    "pending": "fill:#fff3cd,stroke:#f9a825,color:#795548",
    "running": "fill:#bbdefb,stroke:#1565c0,color:#0d47a1",
}
STATUS_FILL = {status: style.split(",")[0].split(":")[1] for status, style in
                STATUS_STYLE.items()}
TYPE_FILL = {"task": "#cfe2ff", "decision": "#ffe69c", "loop": "#e2d4f5"}
TAKEN = "#2e7d32"


@dataclass(kw_only=True)
class Edge:
    src: str
    dst: str
    kind: EdgeKind
    label: str | None = None
    key: str | None = None  # the decision route's condition key


@dataclass(kw_only=True)
class View:
    """The workflow as drawn: resolved graph plus what the last run did (if any)."""

    name: str
    graph: Graph
    edges: list[Edge]
    ran: bool = False
    statuses: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, TaskOutput] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    skip_reasons: dict[str, str] = field(default_factory=dict)
    routes_taken: set[tuple[str, str]] = field(default_factory=set)

    def taken(self, edge: Edge) -> bool:
        """Whether the last run followed this edge."""
        if not self.ran:
            return False
        src, dst = self.statuses.get(edge.src), self.statuses.get(edge.dst)
        if edge.kind == "route":
            return (edge.src, edge.key or "") in self.routes_taken
        if edge.kind == "failure":
            return src == "failed" and dst in _RAN
        return src == "completed" and dst in _RAN

    def seconds(self, name: str) -> float | None:
        output = self.outputs.get(name)
        value = output.metadata.get("execution_time") if output is not None else None
        return float(value) if isinstance(value, (int, float)) else None



# -- building the view -------------------------------------------------------------------


def view_of(source: Drawable, mode: Mode | None) -> View:
    if not isinstance(source, RunPicture) and callable(getattr(source, "picture", None)):
        source = source.picture(mode)  # type: ignore[union-attr]
    if isinstance(source, RunPicture):
        picture = source
        if mode is not None and picture.graph.mode != mode:
            picture = RunPicture(name=picture.name, graph=_drawn(
                [picture.graph.nodes[n].task for n in picture.graph.order], mode))
        view = View(name=picture.name, graph=picture.graph, edges=_edges(picture.graph))
        if picture.result is not None:
            _ran(view, picture.result, picture.events)
    else:
        tasks = name_tasks(source)  # type: ignore[arg-type]
        graph = _drawn(tasks, mode or "workflow")
        view = View(name="workflow", graph=graph, edges=_edges(graph))
        if any(t.status != "pending" or t.result is not None for t in tasks):
            view.ran = True  # a Task's views show its last run
            view.statuses = {t.id: t.status for t in tasks}
            view.outputs = {t.id: t.result for t in tasks if t.result is not None}
            view.errors = {t.id: f"{type(t.error).__name__}: {t.error}" for t in tasks
                           if t.error is not None}
    for task_name, output in view.outputs.items():
        route = output.metadata.get("decision")
        if isinstance(route, str):
            view.routes_taken.add((task_name, route))
    return view


def _drawn(tasks: list[Task], mode: Mode) -> Graph:
    # Drawing never needs agents or a model.
    return build_graph(tasks, mode, has_default_agent=True, needs_agents=False)


def _ran(view: View, result: RunResult, events: list[Event]) -> None:
    """What the run did, onto the view."""
    view.ran = True
    view.statuses = {n: result.statuses.get(n, "skipped") for n in view.graph.order}
    view.outputs = dict(result.outputs)
    view.errors = dict(result.errors)
    view.skip_reasons = dict(result.skip_reasons)
    for event in events:
        route = event.data.get("route") if event.kind == "decision" else None
        # hierarchical assignments are reported as decisions too ("assign:<role>")
        if event.task and isinstance(route, str) and not route.startswith("assign:"):
            view.routes_taken.add((event.task, route))


def _edges(graph: Graph) -> list[Edge]:
    edges: list[Edge] = []
    for name in graph.order:
        node = graph.nodes[name]
        edges += [Edge(src=dep, dst=name, kind="context") for dep in node.deps]
        if node.task.condition_on_previous_failure and node.previous:
            edges.append(Edge(src=node.previous, dst=name, kind="failure", label="on failure"))
    for name in graph.order:
        node = graph.nodes[name]
        edges += [Edge(src=name, dst=target, kind="next") for target in node.next]
        for key, targets in node.routes.items():
            label = key if key not in DEFAULT_KEYS else ("default" if key == "default"
                                                         else f"{key} (default)")
            edges += [Edge(src=name, dst=t, kind="route", label=label, key=key)
                      for t in targets]
    return edges


def loop_note(graph: Graph, name: str) -> str | None:
    node = graph.nodes[name]
    if node.task.task_type != "loop":
        return None
    if node.loop_items is not None:
        count = len(node.loop_items)
        return f"loop over {count} item{'s' if count != 1 else ''}"
    source = node.deps[0] if node.deps else "upstream"
    return f"loop over {source} output"


def task_role(task: Task) -> str | None:
    role = task.agent_role
    return role if role and role != task.id else None


def tools_note(task: Task) -> str | None:
    """The tools the task's agent can call (its own and the task's), by name."""
    from ray_orch.tools.mcp import MCP
    from ray_orch.tools.spec import combined_tools, tool_options, unwrap_tool

    names: list[str] = []
    for item in combined_tools(task.agent, task):
        if isinstance(item, MCP):
            listed = [t["name"] for t in item.listed or []]
            names.append(f"MCP {item.name}" if not listed else ", ".join(listed))
        else:
            options = tool_options(item)
            name = options.name or getattr(unwrap_tool(item), "__name__", repr(item))
            remote = " (remote)" if options.remote else ""
            names.append(f"{name}{remote}")
    return f"tools: {', '.join(names)}" if names else None


def graph_data(source: Drawable,
               mode: Mode | None = None) -> dict[str, Any]:
    """The workflow graph as plain data (the run viewer draws it): the nodes in the
    scheduler's order and the same edges the Mermaid and PNG pictures draw.

    Returns:
        ``{"name", "mode", "nodes": [{"id", "type", "role", "note", "tools",
        "description"}], "edges": [{"src", "dst", "kind", "label", "key"}]}``.

    Example:
        >>> from ray_orch.policy.task import Task
        >>> data = graph_data({"a": Task(description="A"),
        ...                    "b": Task(description="B", context=["a"])})
        >>> [(e["src"], e["dst"], e["kind"]) for e in data["edges"]]
        [('a', 'b', 'context')]
    """
    view = view_of(source, mode)
    graph = view.graph
    nodes = [{"id": name, "type": graph.nodes[name].task.task_type,
              "role": task_role(graph.nodes[name].task), "note": loop_note(graph, name),
              "tools": tools_note(graph.nodes[name].task),
              "description": graph.nodes[name].task.description}
             for name in graph.order]
    edges = [{"src": e.src, "dst": e.dst, "kind": e.kind, "label": e.label, "key": e.key}
             for e in view.edges]
    return {"name": view.name, "mode": graph.mode, "nodes": nodes, "edges": edges}


def graph_of_definition(definition: dict[str, Any], name: str = "workflow"
                        ) -> dict[str, Any]:
    """``graph_data`` of a stored run, from its ``Graph.definition()`` (the checkpoint
    store keeps it): the same nodes and edges, but for ``on failure`` edges and tools,
    which a definition does not record.

    Example:
        >>> from ray_orch.engine.graph import build_graph
        >>> from ray_orch.policy.task import Task
        >>> tasks = {"a": Task(description="A"), "b": Task(description="B", context=["a"])}
        >>> stored = build_graph(name_tasks(tasks), "workflow", has_default_agent=True,
        ...                      needs_agents=False).definition()
        >>> graph_of_definition(stored)["edges"] == graph_data(tasks)["edges"]
        True
    """
    tasks: dict[str, Any] = definition.get("tasks") or {}
    nodes, edges = [], []
    for task_name, task in tasks.items():
        agent = task.get("agent")
        role = agent.get("role") if isinstance(agent, dict) else agent
        nodes.append({"id": task_name, "type": task.get("type", "task"),
                      "role": role if role and role != task_name else None,
                      "note": "loop" if task.get("type") == "loop" else None, "tools": None,
                      "description": task.get("description", "")})
        edges += [{"src": dep, "dst": task_name, "kind": "context", "label": None,
                   "key": None} for dep in task.get("deps") or []]
    for task_name, task in tasks.items():
        edges += [{"src": task_name, "dst": target, "kind": "next", "label": None,
                   "key": None} for target in task.get("next") or []]
        for key, targets in (task.get("routes") or {}).items():
            label = key if key not in DEFAULT_KEYS else ("default" if key == "default"
                                                         else f"{key} (default)")
            edges += [{"src": task_name, "dst": t, "kind": "route", "label": label,
                       "key": key} for t in targets]
    return {"name": name, "mode": definition.get("mode", "workflow"), "nodes": nodes,
            "edges": edges}
