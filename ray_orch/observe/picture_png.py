"""The workflow as a PNG: columns left to right in dependency order (``render_png``).

It draws the same view as the Mermaid text (``view``): task types as shapes, edges by
kind, and after a run the statuses, times and the path taken. It needs networkx and
matplotlib (``pip install 'ray-orch[viz]'``), imported only when a PNG is drawn.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray_orch.engine.graph import Graph, Mode
from ray_orch.observe.view import (
    STATUS_FILL,
    TAKEN,
    TYPE_FILL,
    Edge,
    View,
    loop_note,
    tools_note,
    view_of,
)
from ray_orch.policy.task import Task

if TYPE_CHECKING:
    from ray_orch.api.process import Process

__all__ = ["render_png"]

_SHAPES = {"task": "s", "decision": "D", "loop": "h"}
_LINE_STYLES: dict[str, Any] = {"context": "solid", "route": "solid", "next": "dashed",
                                "failure": "dotted"}
_NODE_SIZE = 3800


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


def _layout(nx: Any, graph: Graph, edges: list[Edge]) -> _Layout:
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

    view = view_of(process_or_tasks, mode)
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
    _draw_nodes(nx, g, lay, view, ax)
    _draw_edges(nx, g, lay, view, ax)
    _draw_labels(nx, g, lay, view, ax)
    _draw_legend(view, ax)
    ax.set_title(f"{view.name} ({graph.mode})", fontsize=10)
    ax.margins(0.12)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    return out


def _draw_nodes(nx: Any, g: Any, lay: _Layout, view: View, ax: Any) -> None:
    """Draw the tasks, one shape per task type, filled by status (after a run) or type.

    Args:
        nx: the networkx module.
        g: the drawn graph (tasks and waypoints).
        lay: where each goes.
        view: the workflow and what the last run did.
        ax: the matplotlib axes.
    """
    graph = view.graph
    for task_type, shape in _SHAPES.items():
        names = [n for n in graph.order if graph.nodes[n].task.task_type == task_type]
        if not names:
            continue
        colours = [STATUS_FILL.get(view.statuses.get(n, "pending"), STATUS_FILL["pending"])
                   if view.ran else TYPE_FILL[task_type] for n in names]
        nx.draw_networkx_nodes(g, lay.pos, nodelist=names, node_shape=shape,
                               node_size=_NODE_SIZE, node_color=colours,
                               edgecolors="#424242", linewidths=1.2, ax=ax)


def _draw_edges(nx: Any, g: Any, lay: _Layout, view: View, ax: Any) -> None:
    """Draw each edge through its waypoints, the arrow head on its last segment.

    Args:
        nx: the networkx module.
        g: the drawn graph (tasks and waypoints).
        lay: where each goes.
        view: the workflow and what the last run did (taken edges thick and green,
            the others faded).
        ax: the matplotlib axes.
    """
    graph = view.graph
    sizes = [_NODE_SIZE if n in graph.nodes else 0 for n in g.nodes]
    for edge in view.edges:
        taken = view.taken(edge)
        chain = lay.chains[(edge.src, edge.dst)]
        segments = list(itertools.pairwise(chain))
        for i, segment in enumerate(segments):
            last = i == len(segments) - 1
            target = graph.nodes.get(segment[1])
            nx.draw_networkx_edges(
                g, lay.pos, edgelist=[segment], nodelist=list(g.nodes), node_size=sizes,
                node_shape=_SHAPES[target.task.task_type] if target is not None else "o",
                arrows=True, arrowstyle="-|>" if last else "-", arrowsize=16,
                style=_LINE_STYLES[edge.kind], ax=ax, width=3.0 if taken else 1.3,
                edge_color=TAKEN if taken else ("#c62828" if edge.kind == "failure"
                                                 else "#616161"),
                alpha=0.35 if view.ran and not taken else 1.0,
                connectionstyle="arc3,rad=0.35" if (edge.src, edge.dst) in lay.back
                else "arc3,rad=0.0")


def _draw_labels(nx: Any, g: Any, lay: _Layout, view: View, ax: Any) -> None:
    """Label the routes on their first segment, and the tasks with their notes and times.

    Args:
        nx: the networkx module.
        g: the drawn graph (tasks and waypoints).
        lay: where each goes.
        view: the workflow and what the last run did.
        ax: the matplotlib axes.
    """
    graph = view.graph
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
        note = loop_note(graph, name)
        if note:
            text += f"\n({note})"
        tools = tools_note(graph.nodes[name].task)
        if tools:
            text += f"\n[{tools}]"
        seconds = view.seconds(name)
        if view.ran and seconds is not None:
            text += f"\n{seconds:.2f} s"
        labels[name] = text
    nx.draw_networkx_labels(g, lay.pos, labels=labels, font_size=8, ax=ax)


def _draw_legend(view: View, ax: Any) -> None:
    """The legend: statuses and the path taken after a run, else the task types; then
    the edge styles present.

    Args:
        view: the workflow and what the last run did.
        ax: the matplotlib axes.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    graph = view.graph
    handles: list[Any] = []
    if view.ran:
        shown = dict.fromkeys(view.statuses.get(n, "pending") for n in graph.order)
        handles += [Patch(facecolor=STATUS_FILL.get(s, STATUS_FILL["pending"]),
                          edgecolor="#424242", label=s) for s in shown]
        handles.append(Line2D([], [], color=TAKEN, linewidth=3, label="path taken"))
    else:
        present = dict.fromkeys(graph.nodes[n].task.task_type for n in graph.order)
        handles += [Patch(facecolor=TYPE_FILL[t], edgecolor="#424242", label=t)
                    for t in present if t in TYPE_FILL]
    handles += [Line2D([], [], color="#616161", linestyle=_LINE_STYLES[k], label=text)
                for k, text in (("context", "context / route"), ("next", "next_tasks"))
                if any(e.kind == k for e in view.edges)]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                  fontsize=8, frameon=False)
