"""The ``ray-orch`` command: run, validate and draw workflows, and the offline demo.

FILE is a YAML workflow (``.yaml`` / ``.yml``, see ``ray_orch.api.yaml_workflow``) or a Python driver
script (``.py``, run as ``__main__``). Exit codes, for scripts:

    0    success
    1    the run failed (``RunError``) or the script raised
    2    the workflow is invalid (``WorkflowDefinitionError``) or the command was misused
    130  interrupted (Ctrl-C) or cancelled

Errors are one message on stderr, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import runpy
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from ray_orch.api.process import Process
from ray_orch.cli.base import (
    OUTPUT_WIDTH,
    FileArg,
    FormatChoice,
    ModeChoice,
    ModeOpt,
    app,
)
from ray_orch.cli.base import errors as _errors
from ray_orch.cli.base import fail as _fail
from ray_orch.cli.base import kind as _kind
from ray_orch.cli.base import one_line as _one_line
from ray_orch.core.errors import RayOrchError, RunError, WorkflowDefinitionError
from ray_orch.core.output import TaskOutput
from ray_orch.engine.graph import Mode

__all__ = ["app"]

_OUTPUT_WIDTH = OUTPUT_WIDTH

# -- running Python drivers -------------------------------------------------------------------


@dataclass(kw_only=True)
class _Call:
    process: Process
    mode: Mode


@dataclass(kw_only=True)
class _Script:
    """What a driver script did: the Process runs it asked for, and its globals."""

    calls: list[_Call] = field(default_factory=list)
    globals: dict[str, Any] = field(default_factory=dict)
    stopped: BaseException | None = None  # what ended the script early (validate / graph)


class _NotRun(dict):  # type: ignore[type-arg]
    """What a run returns under ``validate`` / ``graph``: empty outputs for any task."""

    def __missing__(self, key: str) -> TaskOutput:
        return TaskOutput(raw="", task_id=key)


class _ModelCallBlocked(BaseException):
    """Raised (past retry logic, hence BaseException) when a script calls a model while
    being validated or drawn."""


_RUNS: dict[str, Mode] = {"sequential": "sequential", "workflow": "workflow",
                          "hierarchical": "hierarchical", "asequential": "sequential",
                          "aworkflow": "workflow", "ahierarchical": "hierarchical"}


@contextlib.contextmanager
def _intercept(script: _Script, action: str) -> Iterator[None]:
    """Wrap ``Process``'s run methods for the duration of a driver script.

    ``action``: ``"run"`` records each run and runs it; ``"validate"`` validates instead
    of running (no Ray, no model); ``"plan"`` only records (for drawing).
    """
    from ray_orch.policy.agent import Agent

    saved: dict[tuple[type, str], Any] = {}

    def patch(cls: type, name: str, value: Any) -> None:
        saved[(cls, name)] = cls.__dict__[name]
        setattr(cls, name, value)

    def handle(process: Process, mode: Mode, **kwargs: Any) -> dict[str, TaskOutput] | None:
        script.calls.append(_Call(process=process, mode=mode))
        if action == "validate":
            process._check_run(mode, **kwargs)  # resume= and friends, as the run would
            process.validate(mode)
        return None if action == "run" else _NotRun()

    for name, mode in _RUNS.items():
        original = getattr(Process, name)
        if name.startswith("a"):
            async def arun(self: Process, *args: Any, _mode: Mode = mode,
                           _original: Any = original, **kwargs: Any) -> Any:
                stub = handle(self, _mode, **kwargs)
                return stub if stub is not None else await _original(self, *args, **kwargs)
            patch(Process, name, arun)
        else:
            def srun(self: Process, *args: Any, _mode: Mode = mode, _original: Any = original,
                     **kwargs: Any) -> Any:
                stub = handle(self, _mode, **kwargs)
                return stub if stub is not None else _original(self, *args, **kwargs)
            patch(Process, name, srun)
    if action != "run":
        def blocked(self: Any, *args: Any, **kwargs: Any) -> Any:
            raise _ModelCallBlocked(f"the script calls agent '{self.role}' directly")
        for name in ("chat", "achat", "acomplete"):
            patch(Agent, name, blocked)
    try:
        yield
    finally:
        for (cls, name), value in saved.items():
            setattr(cls, name, value)


def _run_script(file: Path, action: str, *, quiet: bool = False,
                script: _Script | None = None) -> _Script:
    """Run a driver script as ``__main__`` under ``_intercept(action)``.

    ``script`` is filled while the driver runs, so a run that fails is still reported.
    Under ``validate`` / ``plan``, an error after the script's runs were intercepted (it
    used the placeholder results) ends the script quietly; a workflow error never does.
    """
    script = script if script is not None else _Script()
    argv, path0 = sys.argv, list(sys.path)
    sys.argv = [str(file)]
    sys.path.insert(0, str(file.resolve().parent))
    out = contextlib.redirect_stdout(sys.stderr) if quiet else contextlib.nullcontext()
    lenient = action != "run"
    try:
        with _intercept(script, action), out:
            script.globals = runpy.run_path(str(file), run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0) and not (lenient and script.calls):
            _fail(f"{file} exited with status {exc.code}",
                  exc.code if isinstance(exc.code, int) else 1)
    except (KeyboardInterrupt, WorkflowDefinitionError):
        raise
    except _ModelCallBlocked as exc:
        script.stopped = exc
    except Exception as exc:
        if not (lenient and script.calls):
            if isinstance(exc, RayOrchError):
                raise
            _fail(f"{file} raised {type(exc).__name__}: {exc}", 1)
        script.stopped = exc
    finally:
        sys.argv, sys.path[:] = argv, path0
    return script


# -- reporting ------------------------------------------------------------------------------


def _summary(process: Process, mode: Mode, error: BaseException | None = None) -> dict[str, Any]:
    result = process.last_result
    tasks: dict[str, Any] = {}
    for task in process.task_list:
        output = result.outputs.get(task.id) if result else task.result
        status = result.statuses.get(task.id, "skipped") if result else task.status
        meta = output.metadata if output is not None else {}
        tasks[task.id] = {
            "status": status,
            "execution_time": meta.get("execution_time"),
            "agent": output.agent if output is not None else task.agent_role,
            "decision": meta.get("decision"),
            "output": output.raw if output is not None else None,
            "error": result.errors.get(task.id) if result else None,
            "skip_reason": result.skip_reasons.get(task.id) if result else None,
        }
    failed = error is not None or (result is not None and result.error is not None)
    return {"name": process.name, "mode": mode, "run_id": result.run_id if result else None,
            "status": "failed" if failed else "completed",
            "error": str(error) if error is not None else None, "tasks": tasks}


def _print_summary(summary: dict[str, Any]) -> None:
    run = f" run {summary['run_id']}" if summary["run_id"] else ""
    typer.echo(f"{summary['name']} ({summary['mode']}){run}: {summary['status']}")
    width = max((len(name) for name in summary["tasks"]), default=4)
    for name, info in summary["tasks"].items():
        seconds = info["execution_time"]
        took = f"{seconds:7.2f} s" if isinstance(seconds, (int, float)) else f"{'-':>7}  "
        if info["status"] == "completed":
            # a decision's output is its route; anything else shows its text
            detail = f"-> {info['decision']}" if info["decision"] else _one_line(info["output"])
        else:
            detail = _one_line(info["error"] or info["skip_reason"] or "")
        typer.echo(f"  {name:<{width}}  {info['status']:<9} {took}  {detail}".rstrip())


def _report(runs: list[dict[str, Any]], file: Path, as_json: bool,
            error: BaseException | None) -> None:
    if as_json:
        status = "failed" if error is not None or any(r["status"] == "failed" for r in runs) \
            else "completed"
        typer.echo(json.dumps({"file": str(file), "status": status,
                               "error": str(error) if error is not None else None,
                               "runs": runs}, indent=2, default=str))
        return
    for run in runs:
        _print_summary(run)


# -- commands -------------------------------------------------------------------------------


@app.command()
def run(file: FileArg, mode: ModeOpt = None,
        no_progress: Annotated[bool, typer.Option(
            "--no-progress", help="No live progress display.")] = False,
        as_json: Annotated[bool, typer.Option(
            "--json", help="Print the results as JSON on stdout.")] = False,
        stream: Annotated[bool, typer.Option(
            "--stream", help="Print the run's events live, model answers as they come.")
        ] = False) -> None:
    """Run a workflow: each task's status, time and output (or JSON with --json)."""
    with _errors():
        kind = _kind(file)
        if no_progress or stream:
            os.environ["RAY_ORCH_PROGRESS"] = "0"
        if stream:
            from ray_orch.api.live import streamed_runs

            with streamed_runs():
                run(file, mode=mode, no_progress=True, as_json=as_json, stream=False)
            return
        if kind == "yaml":
            from ray_orch.api.yaml_workflow import load_workflow

            process, chosen = load_workflow(file, mode=mode.value if mode else None)
            if no_progress:
                process.progress = False
            try:
                getattr(process, chosen)()
            except RunError as exc:
                _report([_summary(process, chosen, exc)], file, as_json, exc)
                raise
            _report([_summary(process, chosen)], file, as_json, None)
            return
        if mode is not None:
            _fail("--mode applies to YAML workflows; a .py driver picks its own mode", 2)
        script = _Script()
        try:
            _run_script(file, "run", quiet=as_json, script=script)
        except RunError as exc:
            _report([_summary(c.process, c.mode, exc) for c in script.calls], file,
                    as_json, exc)
            raise
        _report([_summary(c.process, c.mode) for c in script.calls], file, as_json, None)


@app.command()
def validate(file: FileArg, mode: ModeOpt = None) -> None:
    """Check a workflow statically (no Ray, no model calls).

    Checks names, agents, decisions, loops, cycles; a .py driver's runs are validated.
    """
    with _errors():
        if _kind(file) == "yaml":
            from ray_orch.api.yaml_workflow import load_workflow

            process, chosen = load_workflow(file, mode=mode.value if mode else None)
            _validated(file, process, chosen)
            return
        if mode is not None:
            _fail("--mode applies to YAML workflows; a .py driver picks its own mode", 2)
        script = _run_script(file, "validate")
        if not script.calls:
            _fail(f"{file}: the script ran no Process (sequential/workflow/hierarchical); "
                  "nothing to validate", 2)
        for call in script.calls:
            _validated(file, call.process, call.mode)
        if script.stopped is not None:
            typer.echo(f"note: the script stopped after its last run "
                       f"({type(script.stopped).__name__}: {script.stopped}); runs were "
                       "validated, not executed", err=True)


def _validated(file: Path, process: Process, mode: Mode) -> None:
    graph = process.validate(mode) if process._graph is None or process._graph.mode != mode \
        else process._graph
    agents = {id(t.agent) for t in process.task_list if t.agent is not None}
    typer.echo(f"ok: {file}: '{process.name}' ({mode}): {len(graph.order)} tasks, "
               f"{len(agents)} agents; starts: {', '.join(graph.starts())}")


@app.command()
def graph(file: FileArg, format: Annotated[FormatChoice, typer.Option(
              "--format", "-f", help="mermaid text or a png picture.")] = FormatChoice.mermaid,
          output: Annotated[Path | None, typer.Option(
              "--output", "-o", help="Write here (default: mermaid to stdout, png to "
              "workflow_visualization.png).")] = None,
          mode: Annotated[ModeChoice | None, typer.Option(
              "--mode", "-m", help="Draw the edges of this mode (default: the file's)."
          )] = None) -> None:
    """Draw a workflow as Mermaid text or a PNG (no run, no model calls)."""
    from ray_orch.observe.visualize import mermaid, render_png

    with _errors():
        target, chosen = _graph_source(file, mode.value if mode else None)
        if format is FormatChoice.png:
            path = render_png(target, output or "workflow_visualization.png", mode=chosen)
            typer.echo(str(path))
            return
        text = mermaid(target, mode=chosen)
        if output is None:
            typer.echo(text, nl=False)
        else:
            output.write_text(text, encoding="utf-8")
            typer.echo(str(output))


def _graph_source(file: Path, mode: Mode | None) -> tuple[Any, Mode]:
    if _kind(file) == "yaml":
        from ray_orch.api.yaml_workflow import load_workflow

        process, chosen = load_workflow(file, mode=mode, validate=False)
        return process, chosen
    script = _run_script(file, "plan", quiet=True)
    if script.calls:
        call = script.calls[-1]
        return call.process, mode or call.mode
    processes = [v for v in script.globals.values() if isinstance(v, Process)]
    if processes:
        return processes[-1], mode or "workflow"
    tasks = script.globals.get("tasks")
    if tasks:
        return tasks, mode or "workflow"
    _fail(f"{file}: found no Process run, Process object or `tasks` to draw", 2)


@app.command(add_help_option=False,
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def demo(ctx: typer.Context) -> None:
    """Run the guide's customer-service workflow offline (options: ray-orch demo --help)."""
    with _errors():
        try:
            from ray_orch import demo as demo_module
        except ImportError as exc:
            _fail(f"the demo is not available in this install ({exc})", 1)
        code = demo_module.main(list(ctx.args))
        if isinstance(code, int) and code:
            raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        from ray_orch import __version__

        typer.echo(f"ray-orch {__version__}")
        raise typer.Exit()


@app.command("job-run", hidden=True)
def job_run(file: FileArg, run_id: Annotated[str, typer.Option(help="The run id.")]) -> None:
    """A submitted run's driver (the Ray job's entrypoint): run FILE, store its report."""
    from ray_orch.api.jobs import cancel_on_sigterm, store_result

    cancel_on_sigterm()  # `ray-orch cancel` stops the run on its Supervisor too
    error: BaseException | None = None
    script = _Script()
    try:
        with _errors():
            os.environ["RAY_ORCH_PROGRESS"] = "0"
            if _kind(file) == "yaml":
                from ray_orch.api.yaml_workflow import load_workflow

                process, chosen = load_workflow(file)
                script.calls.append(_Call(process=process, mode=chosen))
                try:
                    getattr(process, chosen)()
                except BaseException as exc:  # a failure, or cancelled (SIGTERM)
                    error = exc
                    raise
            else:
                try:
                    _run_script(file, "run", script=script)
                except BaseException as exc:
                    error = exc
                    raise
    finally:
        runs = [_summary(c.process, c.mode, error) for c in script.calls]
        outputs = {name: output.model_dump(mode="json") for c in script.calls[-1:]
                   for name, output in c.process.results.items()}
        store_result(run_id, {"run_id": run_id, "file": str(file),
                              "status": "failed" if error else "completed",
                              "error": (str(error) or type(error).__name__) if error else None,
                              "outputs": outputs,
                              "runs": runs})



@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version.")] = False
          ) -> None:
    """Orchestrate LLM agents on Ray."""

