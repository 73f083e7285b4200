"""Pictures of a workflow: Mermaid text and a PNG, before and after a run.

Both read the same view of the workflow: the graph as ``build_graph`` resolves it (so a
picture shows exactly the edges the scheduler follows) plus, after a run, each task's
status, time and the decision routes taken.

- task types are shapes: decision = rhombus, loop = subroutine box, task = box;
- ``context`` (data) edges are solid, ``next_tasks`` edges dashed, decision routes
  labelled with their condition key, ``condition_on_previous_failure`` dotted "on failure";
- after a run: nodes coloured by status with their execution time, edges actually
  followed highlighted, routes not taken faded.

``view`` builds what both draw; the Mermaid text is drawn here, the PNG in
``picture_png`` (it needs networkx and matplotlib, ``pip install 'ray-orch[viz]'``,
imported only when a PNG is drawn); ``render_png`` is importable from here too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ray_orch.engine.graph import Mode
from ray_orch.observe.picture_png import render_png
from ray_orch.observe.view import (
    STATUS_STYLE,
    TAKEN,
    Edge,
    View,
    loop_note,
    task_role,
    tools_note,
    view_of,
)
from ray_orch.policy.task import Task

if TYPE_CHECKING:
    from ray_orch.api.process import Process

__all__ = ["mermaid", "process_graph", "render_png", "visualize_workflow"]

GraphFormat = Literal["mermaid", "png"]

_SAFE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SAFE_LABEL = re.compile(r"^[A-Za-z0-9_]+( [A-Za-z0-9_]+)*$")
# Words the Mermaid flowchart grammar reserves; a node with such an id breaks the chart.
_RESERVED = {"end", "graph", "flowchart", "subgraph", "style", "class", "classdef",
             "linkstyle", "click", "call", "href", "direction", "default"}


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


def _edge_text(edge: Edge, src: str, dst: str) -> str:
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
    view = view_of(process_or_tasks, mode)
    graph = view.graph
    ids = _node_ids(graph.order)
    lines = ["flowchart LR", f"    %% {_comment(view.name)} (mode: {graph.mode})"]
    for name in graph.order:
        task = graph.nodes[name].task
        parts = [name] + [p for p in (task_role(task), tools_note(task), loop_note(graph, name))
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


def _run_styles(view: View, ids: dict[str, str]) -> list[str]:
    lines = []
    by_status: dict[str, list[str]] = {}
    for name in view.graph.order:
        status = view.statuses.get(name, "pending")
        by_status.setdefault(status if status in STATUS_STYLE else "pending", []).append(name)
    for status, names in by_status.items():
        lines.append(f"    classDef {status} {STATUS_STYLE[status]}")
        lines.append(f"    class {','.join(ids[n] for n in names)} {status}")
    taken = [str(i) for i, e in enumerate(view.edges) if view.taken(e)]
    faded = [str(i) for i, e in enumerate(view.edges) if not view.taken(e)]
    if taken:
        lines.append(f"    linkStyle {','.join(taken)} stroke:{TAKEN},stroke-width:3px")
    if faded:
        lines.append(f"    linkStyle {','.join(faded)} stroke:#bdbdbd")
    for name in view.graph.order:
        why = view.errors.get(name) or view.skip_reasons.get(name)
        if why:
            lines.append(f"    %% {name}: {_comment(why)[:200]}")
    return lines

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
