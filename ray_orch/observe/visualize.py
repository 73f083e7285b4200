"""Pictures of a workflow: Mermaid text and a PNG, before and after a run.

Both read the same view of the workflow: the graph as ``build_graph`` resolves it (so a
picture shows exactly the edges the scheduler follows) plus, after a run, each task's
status, time and the decision routes taken.

- task types are shapes: decision = rhombus, loop = subroutine box, task = box;
- ``context`` (data) edges are solid, ``next_tasks`` edges dashed, decision routes
  labelled with their condition key, ``condition_on_previous_failure`` dotted "on failure";
- after a run: nodes coloured by status with their execution time, edges actually
  followed highlighted, routes not taken faded.

The PNG needs networkx and matplotlib (``pip install 'ray-orch[viz]'``), imported only
when a PNG is drawn.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ray_orch.core.output import TaskOutput
from ray_orch.core.routing import DEFAULT_KEYS
from ray_orch.engine.graph import Graph, Mode, build_graph, name_tasks
from ray_orch.policy.task import Task

if TYPE_CHECKING:
    from ray_orch.api.process import Process

__all__ = ["mermaid", "process_graph", "render_png", "visualize_workflow"]

EdgeKind = Literal["context", "next", "route", "failure"]
GraphFormat = Literal["mermaid", "png"]

_RAN = ("completed", "failed", "running")
_STATUS_STYLE = {  # Mermaid classDefs; the PNG uses the fills
    "completed": "fill:#c8e6c9,stroke:#2e7d32,color:#1b5e20",
    "failed": "fill:#ffcdd2,stroke:#c62828,color:#b71c1c",
    "skipped": "fill:#eeeeee,stroke:#9e9e9e,color:#616161,stroke-dasharray:4 3",
    "pending": "fill:#fff3cd,stroke:#f9a825,color:#795548",
    "running": "fill:#bbdefb,stroke:#1565c0,color:#0d47a1",
}
_STATUS_FILL = {status: style.split(",")[0].split(":")[1] for status, style in
                _STATUS_STYLE.items()}
_TYPE_FILL = {"task": "#cfe2ff", "decision": "#ffe69c", "loop": "#e2d4f5"}
_TAKEN = "#2e7d32"
_SAFE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SAFE_LABEL = re.compile(r"^[A-Za-z0-9_]+( [A-Za-z0-9_]+)*$")
# Words the Mermaid flowchart grammar reserves; a node with such an id breaks the chart.
_RESERVED = {"end", "graph", "flowchart", "subgraph", "style", "class", "classdef",
             "linkstyle", "click", "call", "href", "direction", "default"}


@dataclass(kw_only=True)
class _Edge:
    src: str
    dst: str
    kind: EdgeKind
    label: str | None = None
    key: str | None = None  # the decision route's condition key


@dataclass(kw_only=True)
class _View:
    """The workflow as drawn: resolved graph plus what the last run did (if any)."""

    name: str
    graph: Graph
    edges: list[_Edge]
    ran: bool = False
    statuses: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, TaskOutput] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    skip_reasons: dict[str, str] = field(default_factory=dict)
    routes_taken: set[tuple[str, str]] = field(default_factory=set)

    def taken(self, edge: _Edge) -> bool:
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


def _view(source: Process | dict[str, Task] | Iterable[Task], mode: Mode | None) -> _View:
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
    view = _View(name=name, graph=graph, edges=_edges(graph))
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


def _edges(graph: Graph) -> list[_Edge]:
    edges: list[_Edge] = []
    for name in graph.order:
        node = graph.nodes[name]
        edges += [_Edge(src=dep, dst=name, kind="context") for dep in node.deps]
        if node.task.condition_on_previous_failure and node.previous:
            edges.append(_Edge(src=node.previous, dst=name, kind="failure", label="on failure"))
    for name in graph.order:
        node = graph.nodes[name]
        edges += [_Edge(src=name, dst=target, kind="next") for target in node.next]
        for key, targets in node.routes.items():
            label = key if key not in DEFAULT_KEYS else ("default" if key == "default"
                                                         else f"{key} (default)")
            edges += [_Edge(src=name, dst=t, kind="route", label=label, key=key)
                      for t in targets]
    return edges


def _loop_note(graph: Graph, name: str) -> str | None:
    node = graph.nodes[name]
    if node.task.task_type != "loop":
        return None
    if node.loop_items is not None:
        count = len(node.loop_items)
        return f"loop over {count} item{'s' if count != 1 else ''}"
    source = node.deps[0] if node.deps else "upstream"
    return f"loop over {source} output"


def _role(task: Task) -> str | None:
    role = task.agent_role
    return role if role and role != task.id else None


def _tools_note(task: Task) -> str | None:
    """The tools the task's agent can call (its own and the task's), by name."""
    from ray_orch.tools.mcp import MCP
    from ray_orch.tools.spec import combined_tools

    names: list[str] = []
    for item in combined_tools(task.agent, task):
        if isinstance(item, MCP):
            listed = [t["name"] for t in item.listed or []]
            names.append(f"MCP {item.name}" if not listed else ", ".join(listed))
        else:
            options = getattr(item, "__ray_orch_tool__", None)
            name = getattr(options, "name", None) or getattr(item, "__name__", repr(item))
            remote = " (remote)" if getattr(options, "remote", False) else ""
            names.append(f"{name}{remote}")
    return f"tools: {', '.join(names)}" if names else None


# -- Mermaid ------------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Text safe inside a quoted Mermaid label: entity codes for what the parser reads."""
    text = " ".join(str(text).split())
    for char, code in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;"),
                       ("`", "#96;"), ("&", "#38;")):
        text = text.replace(char, code)
    return text


def _node_ids(order: list[str]) -> dict[str, str]:
    ids: dict[str, str] = {}
    used: set[str] = set()
    for name in order:
        ident = name
        if not _SAFE_ID.match(name) or name.lower() in _RESERVED:
            ident = "t_" + re.sub(r"[^A-Za-z0-9_]", "_", name)
        base, n = ident, 2
        while ident in used:
            ident, n = f"{base}_{n}", n + 1
        used.add(ident)
        ids[name] = ident
    return ids


def _edge_text(edge: _Edge, src: str, dst: str) -> str:
    arrow = {"context": "-->", "route": "-->", "next": "-.->", "failure": "-.->"}[edge.kind]
    if edge.label is None:
        return f"{src} {arrow} {dst}"
    if edge.kind == "route" and _SAFE_LABEL.match(edge.label):
        return f"{src} -- {edge.label} --> {dst}"
    return f'{src} {arrow}|"{_escape(edge.label)}"| {dst}'


def mermaid(process_or_tasks: Process | dict[str, Task] | Iterable[Task],
            mode: Mode | None = None) -> str:
    """Mermaid flowchart text of a workflow (after a run: statuses, times, path taken).

    Args:
        process_or_tasks: a ``Process``, the guide's ``{"name": Task}`` dict, or a list.
        mode: the mode whose edges to draw; default: the mode the process last ran or
            validated in, else ``"workflow"``.

    Returns:
        ``flowchart LR`` text; paste it into any Mermaid renderer (GitHub renders it in
        a ```` ```mermaid ```` block).

    Raises:
        WorkflowDefinitionError: a name in the workflow resolves to no task.

    Example:
        >>> from ray_orch import Task
        >>> tasks = {"extract": Task(description="Extract"),
        ...          "load": Task(description="Load", context=["extract"])}
        >>> print(mermaid(tasks))  # doctest: +NORMALIZE_WHITESPACE
        flowchart LR
            %% workflow (mode: workflow)
            extract["extract"]
            load["load"]
            extract --> load
    """
    view = _view(process_or_tasks, mode)
    graph = view.graph
    ids = _node_ids(graph.order)
    lines = ["flowchart LR", f"    %% {_comment(view.name)} (mode: {graph.mode})"]
    for name in graph.order:
        task = graph.nodes[name].task
        parts = [name] + [p for p in (_role(task), _tools_note(task), _loop_note(graph, name))
                          if p]
        if view.ran:
            status = view.statuses.get(name, "pending")
            seconds = view.seconds(name)
            parts.append(f"{status} · {seconds:.2f} s" if seconds is not None else status)
        label = "<br/>".join(_escape(p) for p in parts)
        shape = {"decision": ('{"', '"}'), "loop": ('[["', '"]]')}.get(task.task_type,
                                                                      ('["', '"]'))
        lines.append(f"    {ids[name]}{shape[0]}{label}{shape[1]}")
    for edge in view.edges:
        lines.append("    " + _edge_text(edge, ids[edge.src], ids[edge.dst]))
    if view.ran:
        lines += _run_styles(view, ids)
    return "\n".join(lines) + "\n"


def _comment(text: str) -> str:
    return " ".join(str(text).split()).replace("%%", "%")


def _run_styles(view: _View, ids: dict[str, str]) -> list[str]:
    lines = []
    by_status: dict[str, list[str]] = {}
    for name in view.graph.order:
        status = view.statuses.get(name, "pending")
        by_status.setdefault(status if status in _STATUS_STYLE else "pending", []).append(name)
    for status, names in by_status.items():
        lines.append(f"    classDef {status} {_STATUS_STYLE[status]}")
        lines.append(f"    class {','.join(ids[n] for n in names)} {status}")
    taken = [str(i) for i, e in enumerate(view.edges) if view.taken(e)]
    faded = [str(i) for i, e in enumerate(view.edges) if not view.taken(e)]
    if taken:
        lines.append(f"    linkStyle {','.join(taken)} stroke:{_TAKEN},stroke-width:3px")
    if faded:
        lines.append(f"    linkStyle {','.join(faded)} stroke:#bdbdbd")
    for name in view.graph.order:
        why = view.errors.get(name) or view.skip_reasons.get(name)
        if why:
            lines.append(f"    %% {name}: {_comment(why)[:200]}")
    return lines


# -- PNG ----------------------------------------------------------------------------------


def _require_viz() -> tuple[Any, Any]:
    try:
        import matplotlib
        import networkx
    except ImportError as exc:
        raise ImportError(
            f"drawing a PNG needs networkx and matplotlib ({exc.name} is not installed): "
            "pip install 'ray-orch[viz]'") from exc
    return networkx, matplotlib


@dataclass(kw_only=True)
class _Layout:
    """Where things go in the PNG: columns by dependency depth, rows ordered to reduce
    crossings. An edge that skips columns runs through one waypoint per column it
    crosses (a Sugiyama-style dummy node), so it never cuts through a task."""

    pos: dict[str, tuple[float, float]]
    chains: dict[tuple[str, str], list[str]]  # (src, dst) -> [src, waypoints..., dst]
    back: set[tuple[str, str]]                # edges that close a cycle (drawn curved)
    columns: int
    rows: int


def _layout(nx: Any, graph: Graph, edges: list[_Edge]) -> _Layout:
    successors: dict[str, list[str]] = {n: [] for n in graph.order}
    for edge in edges:
        if edge.dst not in successors[edge.src]:
            successors[edge.src].append(edge.dst)
    back = _back_edges(graph, successors)
    dag = nx.DiGraph()
    dag.add_nodes_from(graph.order)
    dag.add_edges_from((s, d) for s, ds in successors.items() for d in ds if (s, d) not in back)
    layer: dict[str, int] = {}
    for depth, generation in enumerate(nx.topological_generations(dag)):
        for name in generation:
            layer[name] = depth
    chains: dict[tuple[str, str], list[str]] = {}
    for src, targets in successors.items():
        for dst in targets:
            chain = [src]
            if (src, dst) not in back:
                for depth in range(layer[src] + 1, layer[dst]):
                    waypoint = f"\0{src}\0{dst}\0{depth}"
                    layer[waypoint] = depth
                    chain.append(waypoint)
            chains[(src, dst)] = [*chain, dst]
    columns = max(layer.values(), default=0) + 1
    column_of: list[list[str]] = [[] for _ in range(columns)]
    for name in layer:  # definition order first, then waypoints
        column_of[layer[name]].append(name)
    up: dict[str, list[str]] = {n: [] for n in layer}
    down: dict[str, list[str]] = {n: [] for n in layer}
    for (src, dst), chain in chains.items():
        if (src, dst) in back:
            continue
        for a, b in itertools.pairwise(chain):
            down[a].append(b)
            up[b].append(a)
    # A few barycentre sweeps, down then up: enough for workflow-sized graphs.
    for sweep in range(4):
        forward = sweep % 2 == 0
        order = range(1, columns) if forward else range(columns - 2, -1, -1)
        for depth in order:
            near = column_of[depth - 1] if forward else column_of[depth + 1]
            index = {n: i for i, n in enumerate(near)}
            links = up if forward else down
            current = {n: i for i, n in enumerate(column_of[depth])}

            def centre(name: str, index: dict[str, int] = index, links: dict[str, list[str]]
                       = links, current: dict[str, int] = current) -> float:
                ranks = [index[n] for n in links[name] if n in index]
                return sum(ranks) / len(ranks) if ranks else float(current[name])

            column_of[depth].sort(key=centre)
    pos: dict[str, tuple[float, float]] = {}
    for depth, column in enumerate(column_of):
        for k, name in enumerate(column):
            pos[name] = (float(depth), (len(column) - 1) / 2 - k)
    rows = max((len(c) for c in column_of), default=1)
    return _Layout(pos=pos, chains=chains, back=back, columns=columns, rows=rows)


def _back_edges(graph: Graph, successors: dict[str, list[str]]) -> set[tuple[str, str]]:
    """Edges that close a cycle (a decision routing back), found by DFS from the starts."""
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}  # 1 = on the DFS stack, 2 = done
    for root in graph.starts() + graph.order:
        if root in state:
            continue
        stack = [(root, iter(successors[root]))]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) == 1:
                back.add((node, child))
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(successors[child])))
    return back


def _wrap(name: str, width: int = 11) -> str:
    """Break long task names at ``_``, ``-`` and spaces so they fit in a node."""
    lines: list[str] = []
    for token in re.split(r"(?<=[_\-\s])", name):
        if lines and len(lines[-1]) + len(token) <= width:
            lines[-1] += token
        else:
            lines.append(token)
    return "\n".join(line.strip() for line in lines if line.strip()) or name


def render_png(process_or_tasks: Process | dict[str, Task] | Iterable[Task],
               path: str | Path = "workflow_visualization.png",
               mode: Mode | None = None) -> Path:
    """Draw the workflow as a PNG: columns left to right in dependency order.

    Nodes are shaped by task type (box, diamond for decisions, hexagon for loops) and,
    after a run, coloured by status with their execution time; the edges the run followed
    are drawn thick and green.

    Args:
        process_or_tasks: a ``Process``, the guide's ``{"name": Task}`` dict, or a list.
        path: where to write the PNG.
        mode: as for ``mermaid()``.

    Returns:
        The path written.

    Raises:
        ImportError: networkx or matplotlib is missing (``pip install 'ray-orch[viz]'``).
        WorkflowDefinitionError: a name in the workflow resolves to no task.

    Example:
        >>> import tempfile
        >>> from unittest.mock import Mock
        >>> from ray_orch import Task
        >>> path = render_png({"a": Task(description="A", agent=Mock())},
        ...                   tempfile.mktemp(suffix=".png"))
        >>> path.stat().st_size > 0
        True
    """
    nx, _ = _require_viz()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    view = _view(process_or_tasks, mode)
    graph = view.graph
    lay = _layout(nx, graph, view.edges)
    g = nx.DiGraph()
    g.add_nodes_from(lay.pos)
    for chain in lay.chains.values():
        g.add_edges_from(itertools.pairwise(chain))
    fig = Figure(figsize=(max(6.0, 2.8 * lay.columns), max(3.5, 1.5 * lay.rows + 1.2)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_axis_off()
    size = 3800
    sizes = [size if n in graph.nodes else 0 for n in g.nodes]

    shapes = {"task": "s", "decision": "D", "loop": "h"}
    for task_type, shape in shapes.items():
        names = [n for n in graph.order if graph.nodes[n].task.task_type == task_type]
        if not names:
            continue
        colours = [_STATUS_FILL.get(view.statuses.get(n, "pending"), _STATUS_FILL["pending"])
                   if view.ran else _TYPE_FILL[task_type] for n in names]
        nx.draw_networkx_nodes(g, lay.pos, nodelist=names, node_shape=shape, node_size=size,
                               node_color=colours, edgecolors="#424242", linewidths=1.2, ax=ax)

    styles: dict[str, Any] = {"context": "solid", "route": "solid", "next": "dashed",
                              "failure": "dotted"}
    for edge in view.edges:
        taken = view.taken(edge)
        chain = lay.chains[(edge.src, edge.dst)]
        segments = list(itertools.pairwise(chain))
        for i, segment in enumerate(segments):
            last = i == len(segments) - 1
            target = graph.nodes.get(segment[1])
            nx.draw_networkx_edges(
                g, lay.pos, edgelist=[segment], nodelist=list(g.nodes), node_size=sizes,
                node_shape=shapes[target.task.task_type] if target is not None else "o",
                arrows=True, arrowstyle="-|>" if last else "-", arrowsize=16,
                style=styles[edge.kind], ax=ax, width=3.0 if taken else 1.3,
                edge_color=_TAKEN if taken else ("#c62828" if edge.kind == "failure"
                                                 else "#616161"),
                alpha=0.35 if view.ran and not taken else 1.0,
                connectionstyle="arc3,rad=0.35" if (edge.src, edge.dst) in lay.back
                else "arc3,rad=0.0")
    route_labels: dict[tuple[str, str], list[str]] = {}
    for edge in view.edges:
        if edge.label:
            route_labels.setdefault((edge.src, edge.dst), []).append(edge.label)
    for (src, dst), texts in route_labels.items():
        chain = lay.chains[(src, dst)]
        nx.draw_networkx_edge_labels(
            g, lay.pos, edge_labels={(chain[0], chain[1]): " / ".join(texts)}, font_size=8,
            ax=ax, font_color="#5d4037", label_pos=0.5 if len(chain) == 2 else 0.4,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85},
            connectionstyle="arc3,rad=0.35" if (src, dst) in lay.back else "arc3,rad=0.0")

    labels = {}
    for name in graph.order:
        text = _wrap(name)
        note = _loop_note(graph, name)
        if note:
            text += f"\n({note})"
        tools = _tools_note(graph.nodes[name].task)
        if tools:
            text += f"\n[{tools}]"
        seconds = view.seconds(name)
        if view.ran and seconds is not None:
            text += f"\n{seconds:.2f} s"
        labels[name] = text
    nx.draw_networkx_labels(g, lay.pos, labels=labels, font_size=8, ax=ax)

    handles: list[Any] = []
    if view.ran:
        shown = dict.fromkeys(view.statuses.get(n, "pending") for n in graph.order)
        handles += [Patch(facecolor=_STATUS_FILL.get(s, _STATUS_FILL["pending"]),
                          edgecolor="#424242", label=s) for s in shown]
        handles.append(Line2D([], [], color=_TAKEN, linewidth=3, label="path taken"))
    else:
        present = dict.fromkeys(graph.nodes[n].task.task_type for n in graph.order)
        handles += [Patch(facecolor=_TYPE_FILL[t], edgecolor="#424242", label=t)
                    for t in present if t in _TYPE_FILL]
    handles += [Line2D([], [], color="#616161", linestyle=styles[k], label=text)
                for k, text in (("context", "context / route"), ("next", "next_tasks"))
                if any(e.kind == k for e in view.edges)]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                  fontsize=8, frameon=False)
    ax.set_title(f"{view.name} ({graph.mode})", fontsize=10)
    ax.margins(0.12)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    return out


# -- the guide's function and Process.graph() ---------------------------------------------


def visualize_workflow(tasks: Process | dict[str, Task] | Iterable[Task],
                       path: str | Path = "workflow_visualization.png") -> Path:
    """The guide's ``visualize_workflow(tasks)``: write the workflow picture as a PNG.

    Works before a run (task types, decision keys, loops) and after one (the Tasks then
    carry their status and result: colours, times and the path taken). ``context`` may
    hold task names or Task objects.

    Args:
        tasks: the ``{"name": Task}`` dict (or a list of Tasks, or a Process).
        path: where to write the PNG (the guide's ``workflow_visualization.png``).

    Returns:
        The path written.

    Raises:
        ImportError: networkx or matplotlib is missing (``pip install 'ray-orch[viz]'``).

    Example:
        >>> import tempfile
        >>> from unittest.mock import Mock
        >>> from ray_orch import Task
        >>> tasks = {"a": Task(description="A", agent=Mock()),
        ...          "b": Task(description="B", agent=Mock(), context=["a"])}
        >>> visualize_workflow(tasks, tempfile.mktemp(suffix=".png")).suffix
        '.png'
    """
    return render_png(tasks, path)


def process_graph(process: Process, format: GraphFormat = "mermaid",
                  path: str | Path | None = None) -> str | Path:
    """What ``Process.graph()`` returns: Mermaid text, or the path of a PNG.

    Args:
        process: the process (after a run the picture shows statuses and the path taken).
        format: ``"mermaid"`` or ``"png"``.
        path: for PNG, where to write it (default ``workflow_visualization.png``); for
            Mermaid, a file to also write the text to.

    Returns:
        The Mermaid text (``format="mermaid"``) or the PNG's path (``format="png"``).

    Raises:
        ValueError: an unknown format.

    Example:
        >>> from unittest.mock import Mock
        >>> from ray_orch import Process, Task
        >>> process = Process(tasks={"a": Task(description="A", agent=Mock())})
        >>> "flowchart" in process_graph(process)
        True
    """
    if format == "mermaid":
        text = mermaid(process)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text
    if format == "png":
        return render_png(process, path or "workflow_visualization.png")
    raise ValueError(f"format must be 'mermaid' or 'png', not {format!r}")
