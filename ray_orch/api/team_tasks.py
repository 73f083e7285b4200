"""PraisonAI's conventions applied to a team run's copies of its tasks: ``{{variables}}``,
plain-text context, exit routes, a decision's or a loop's PraisonAI meaning, the start
content, and the copies themselves (a run never changes the user's tasks)."""

from __future__ import annotations

from typing import Any

from ray_orch.core.routing import DEFAULT_KEYS
from ray_orch.policy.praison import use_input_file
from ray_orch.policy.task import Task

__all__ = ["EXIT_ROUTES", "adapt_loop", "adapt_routes", "add_content", "context_text",
           "copied_task", "fill_variables", "plain_task", "praison_flow", "relink"]

#: Route targets that end a PraisonAI workflow.
EXIT_ROUTES = ("exit", "end", "stop", "")


def fill_variables(task: Task, variables: dict[str, Any]) -> Any:
    """Put the task's ``variables`` (over the team's) into ``{{name}}`` (PraisonAI's
    syntax) and ``{name}`` placeholders of its description and expected output.

    Returns:
        The undo (the run's text stays out of the user's task afterwards).
    """
    merged = {**variables, **(getattr(task, "variables", None) or {})}
    before = (task.description, task.expected_output)
    for key, value in merged.items():
        for pattern in ("{{" + key + "}}", "{" + key + "}"):
            task.description = task.description.replace(pattern, str(value))
            task.expected_output = task.expected_output.replace(pattern, str(value))

    def undo() -> None:
        task.description, task.expected_output = before
    return undo


def context_text(task: Task, names: set[str]) -> Any:
    """PraisonAI takes a string in ``context`` that names no task as input text: it is
    added to the prompt. A string close to a task's name stays, for validation to name
    with its suggestion (a typo is not input text).

    Returns:
        The undo.
    """
    import difflib

    if not isinstance(task.context, list):
        return lambda: None
    texts = [ref for ref in task.context if isinstance(ref, str) and ref not in names
             and not difflib.get_close_matches(ref.lower(), [n.lower() for n in names],
                                               n=1, cutoff=0.75)]
    if not texts:
        return lambda: None
    before = (task.context, task.description)
    task.context = [ref for ref in task.context if not any(ref is t for t in texts)]
    task.description += "\n\nInput Content:\n" + "\n".join(texts)

    def undo() -> None:
        task.context, task.description = before
    return undo


def adapt_routes(task: Task) -> bool:
    """PraisonAI ends a workflow on a route to ``"exit"`` (or to no task): here a route
    with no targets ends that branch. A decision whose answer matches no route ends the
    workflow there too (PraisonAI finds no next task): it gets a ``default`` route to no
    task. Returns whether it got one."""
    added = False
    if task.condition:
        task.condition = {key: [t for t in _targets(value) if t not in EXIT_ROUTES]
                          for key, value in task.condition.items()}
        if task.task_type == "decision" and not any(k in task.condition for k in DEFAULT_KEYS):
            task.condition["default"] = []
            added = True
    task.next_tasks = [t for t in task.next_tasks if not (isinstance(t, str) and t in EXIT_ROUTES)]
    return added


def plain_task(task: Task, mode: str) -> Any:
    """What PraisonAI runs as a plain task, for one run: a decision without a
    ``condition`` (the model's answer is the output; its ``next_tasks`` follow), and,
    outside a workflow, a loop given no ``input_file`` (PraisonAI's sequential process
    runs it once, its ``condition`` unused).

    Returns:
        The undo.
    """
    before = (task.task_type, task.condition)
    if task.task_type == "decision" and not task.condition:
        task.task_type = "task"
    elif task.task_type == "loop" and mode != "workflow" and task.loop_data is None and \
            getattr(task, "input_file", None) is None:
        task.task_type, task.condition = "task", None

    def undo() -> None:
        task.task_type, task.condition = before
    return undo


def praison_flow(task: Task) -> Any:
    """PraisonAI's flow, for one run: a task reads whichever of its ``context`` tasks
    ran (one a decision did not route to is left out, not a reason to skip it). (A
    decision follows only its route: the scheduler's rule for every workflow.)

    Returns:
        The undo.
    """
    before = task.handle_missing_context
    if task.context:
        task.handle_missing_context = True

    def undo() -> None:
        task.handle_missing_context = before
    return undo


def _targets(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    return [] if value is None else [value]


def adapt_loop(task: Task) -> None:
    """A PraisonAI loop reads ``input_file`` (``tasks.csv`` by default) at run time; its
    ``condition`` routes out once every item is done: here its ``next_tasks``; a route
    back to itself is its own iteration over the items."""
    if task.task_type != "loop":
        return
    if task.loop_data is None and not task.context:
        use_input_file(task, getattr(task, "input_file", None) or "tasks.csv")
    if task.condition:
        # A route back to the loop itself ("more records to process": [the loop]) is
        # its own iteration, which runs every item (bounded by max_iterations).
        for targets in task.condition.values():
            task.next_tasks += [t for t in targets if t not in task.next_tasks
                                and t is not task and t != task.id]
        task.condition = None


def add_content(tasks: list[Task], content: Any) -> Any:
    """PraisonAI's ``start(content)``: text every task sees (``tasks`` are the run's
    copies); returns the undo."""
    if not content:
        return lambda: None
    text = content if isinstance(content, str) else "\n".join(map(str, content))
    before = {id(task): task.description for task in tasks}
    for task in tasks:
        task.description = f"{task.description}\n\nContext:\n{text}"

    def restore() -> None:
        for task in tasks:
            task.description = before[id(task)]
    return restore


def copied_task(task: Task, agents: dict[int, Any]) -> Task:
    """A run's copy of a user's task: its own containers (PraisonAI's conventions change
    them) and the run's agents."""
    copied = object.__new__(type(task))  # not copy.copy: pickling's state drops callbacks
    copied.__dict__.update(vars(task))
    for name in ("context", "next_tasks", "guardrails", "tools"):
        value = getattr(task, name)
        if isinstance(value, list):
            setattr(copied, name, list(value))
    if isinstance(task.condition, dict):
        copied.condition = dict(task.condition)
    copied.agent = agents.get(id(task.agent), task.agent)
    copied.fallback_agent = agents.get(id(task.fallback_agent), task.fallback_agent)
    return copied


def relink(tasks: list[Task], copies: dict[int, Task]) -> None:
    """Task objects named by the copies (``context``, ``next_tasks``, routes) become
    their copies too."""
    def swap(value: Any) -> Any:
        if isinstance(value, list):
            return [copies.get(id(item), item) for item in value]
        return copies.get(id(value), value)

    for task in tasks:
        if isinstance(task.context, list):
            task.context = swap(task.context)
        task.next_tasks = swap(task.next_tasks)
        if isinstance(task.condition, dict):
            task.condition = {key: swap(value) for key, value in task.condition.items()}
