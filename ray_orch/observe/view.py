"""What a picture of a workflow shows: the graph as ``build_graph`` resolves it (so a
picture shows exactly the edges the scheduler follows) plus, after a run, each task's
status, time and the decision routes taken. ``visualize`` draws it as Mermaid text,
``picture_png`` as a PNG.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ray_orch.core.output import TaskOutput
from ray_orch.core.routing import DEFAULT_KEYS
from ray_orch.engine.graph import Graph, Mode, build_graph, name_tasks
from ray_orch.policy.task import Task

if TYPE_CHECKING:
    from ray_orch.api.process import Process

__all__ = ["STATUS_FILL", "STATUS_STYLE", "TAKEN", "TYPE_FILL", "Edge", "EdgeKind", "View",
           "loop_note", "task_role", "tools_note", "view_of"]

EdgeKind = Literal["context", "next", "route", "failure"]

_RAN = ("completed", "failed", "running")
#: Mermaid ``classDef`` styles by task status; the PNG uses their fills (``STATUS_FILL``).
STATUS_STYLE = {
    "completed": "fill:#c8e6c9,stroke:#2e7d32,color:#1b5e20",
    "failed": "fill:#ffcdd2,stroke:#c62828,color:#b71c1c",
    "skipped": "fill:#eeeeee,stroke:#9e9e9e,color:#616161,stroke-dasharray:4 3",
    "pending": "fill:#fff3cd,stroke:#f9a825,color:#795548",
    "running": "fill:#bbdefb,stroke:#1565c0,color:#0d47a1",
}
#: The fill colour of each status (from ``STATUS_STYLE``).
STATUS_FILL = {status: style.split(",")[0].split(":")[1] for status, style in
               STATUS_STYLE.items()}
#: The fill colour of each node type before a run.
TYPE_FILL = {"task": "#cfe2ff", "decision": "#ffe69c", "loop": "#e2d4f5"}
#: The colour of a decision route the last run took.
TAKEN = "#2e7d32"


@dataclass(kw_only=True)
class Edge:
    """One arrow of the picture."""

    src: str
    """The task it leaves."""
    dst: str
    """The task it enters."""
    kind: EdgeKind
    """Why: ``context`` (an input), ``next``, a decision's ``route``, or ``failure``."""
    label: str | None = None
    """What the arrow says, if anything."""
    key: str | None = None
    """A decision route's condition key."""


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


def view_of(source: Process | dict[str, Task] | Iterable[Task], mode: Mode | None) -> View:
    """What a picture of ``source`` shows: its graph in ``mode`` (the last run's, else
    ``workflow``) and, after a run, each task's status and output and the routes taken."""
    # A Process (duck-typed: this layer sits below the driver API) or plain tasks.
    process: Any = source if hasattr(source, "task_list") else None
    if process is not None:
        tasks = process.task_list
        last_graph = process._graph
        mode = mode or (last_graph.mode if last_graph is not None else "workflow")
        name = process.name
    else:
        tasks = name_tasks(source)  # type: ignore[arg-type]  # not a Process here
        mode = mode or "workflow"
        name = "workflow"
    # Drawing never needs agents or a model.
    graph = build_graph(tasks, mode, has_default_agent=True, needs_agents=False)
    view = View(name=name, graph=graph, edges=_edges(graph))
    if process is not None and process.last_result is not None:
        result = process.last_result
        view.ran = True
        view.statuses = {n: result.statuses.get(n, "skipped") for n in graph.order}
        view.outputs = dict(result.outputs)
        view.errors = dict(result.errors)
        view.skip_reasons = dict(result.skip_reasons)
        for event in process.events:
            route = event.data.get("route") if event.kind == "decision" else None
            # hierarchical assignments are reported as decisions too ("assign:<role>")
            if event.task and isinstance(route, str) and not route.startswith("assign:"):
                view.routes_taken.add((event.task, route))
    elif any(t.status != "pending" or t.result is not None for t in tasks):
        view.ran = True  # Tasks carry their status and result after a Process ran them
        view.statuses = {t.id: t.status for t in tasks}
        view.outputs = {t.id: t.result for t in tasks if t.result is not None}
        view.errors = {t.id: f"{type(t.error).__name__}: {t.error}" for t in tasks
                       if t.error is not None}
    for task_name, output in view.outputs.items():
        route = output.metadata.get("decision")
        if isinstance(route, str):
            view.routes_taken.add((task_name, route))
    return view


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
    """What a loop task iterates over (``loop over 3 items``), or None for other tasks."""
    node = graph.nodes[name]
    if node.task.task_type != "loop":
        return None
    if node.loop_items is not None:
        count = len(node.loop_items)
        return f"loop over {count} item{'s' if count != 1 else ''}"
    source = node.deps[0] if node.deps else "upstream"
    return f"loop over {source} output"


def task_role(task: Task) -> str | None:
    """The role of the task's agent, unless it only repeats the task's name."""
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
