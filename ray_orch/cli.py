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
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ray_orch.api.process import Process
from ray_orch.core.errors import RayOrchError, RunCancelledError, RunError, WorkflowDefinitionError
from ray_orch.core.output import TaskOutput
from ray_orch.engine.graph import Mode

__all__ = ["app"]

app = typer.Typer(
    name="ray-orch", add_completion=False, no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Orchestrate LLM agents on Ray: run, validate and draw workflows (.yaml or .py).")

_YAML = (".yaml", ".yml")
_OUTPUT_WIDTH = 100


class ModeChoice(str, Enum):
    sequential = "sequential"
    workflow = "workflow"
    hierarchical = "hierarchical"


class FormatChoice(str, Enum):
    mermaid = "mermaid"
    png = "png"


FileArg = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="A .yaml workflow or a .py driver script.")]
ModeOpt = Annotated[ModeChoice | None, typer.Option(
    "--mode", "-m", help="Use this mode instead of the YAML file's `process:`.")]


class _Exit(Exception):
    """Ends a command with a message on stderr and an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _fail(message: str, code: int) -> NoReturn:
    raise _Exit(message, code)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Typed errors -> one line on stderr and the documented exit code."""
    try:
        yield
    except _Exit as exc:
        _die(str(exc), exc.code)
    except KeyboardInterrupt:
        _die("interrupted; the run was cancelled (completed results are kept in "
             "checkpoints when checkpoint_dir is set)", 130)
    except RunCancelledError as exc:
        _die(str(exc), 130)
    except WorkflowDefinitionError as exc:
        _die(str(exc), 2)
    except (RayOrchError, ImportError) as exc:
        _die(str(exc), 1)


def _die(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _kind(file: Path) -> str:
    suffix = file.suffix.lower()
    if suffix in _YAML:
        return "yaml"
    if suffix == ".py":
        return "py"
    _fail(f"{file}: expected a .yaml/.yml workflow or a .py driver script", 2)


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


def _one_line(text: str | None, width: int = _OUTPUT_WIDTH) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"


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


DirOpt = Annotated[Path, typer.Option("--dir", help="The checkpoint directory of the runs.")]


def _checkpoint_runs(directory: Path, pending: bool) -> None:
    """The runs of a checkpoint directory (paused ones with their requests)."""
    if not directory.is_dir():
        _fail(f"{directory}: no such checkpoint directory", 2)
    from ray_orch.store.pauses import PauseStore
    from ray_orch.store.sqlite import SQLiteCheckpointStore

    if pending:
        store = PauseStore(directory)
        for run in store.paused():
            typer.echo(f"{run['run_id']}  {run['workflow']} ({run['mode']})  paused")
            for request in run["requests"]:
                what = (f"tool {request['tool']}({request['arguments']})"
                        if request.get("tool") else "output: " + _one_line(
                            (request.get("output") or {}).get("raw")))
                typer.echo(f"  {request['id']}  task {request['task']}  {what}")
        store.close()
        return
    with SQLiteCheckpointStore(directory) as checkpoints:
        for record in checkpoints.list_runs():
            typer.echo(f"{record.run_id}  {record.workflow}  {record.status}")


@app.command()
def approve(run_id: Annotated[str, typer.Argument(help="The paused run.")],
            request: Annotated[str, typer.Argument(help="The request to answer.")],
            directory: DirOpt = Path("checkpoints"),
            edit: Annotated[str | None, typer.Option(
                "--edit", help="Replace the output (or the tool's arguments, as JSON).")] = None,
            reject: Annotated[str | None, typer.Option(
                "--reject", help="Refuse, saying why.")] = None) -> None:
    """Answer a paused run's request (approve, --edit TEXT or --reject REASON) and continue it."""
    with _errors():
        if edit is not None and reject is not None:
            _fail("give --edit or --reject, not both", 2)
        from ray_orch.api.paused import continue_paused
        from ray_orch.core.approvals import Approve, Edit, Reject, RunPaused

        answer = (Edit(_maybe_json(edit), by="cli") if edit is not None else
                  Reject(reject, by="cli") if reject is not None else Approve(by="cli"))
        try:
            results = continue_paused(str(directory), run_id, {request: answer})
        except RunPaused as paused:
            for asked in paused.requests:
                typer.echo(f"paused again: {asked.id}  task {asked.task}")
            raise typer.Exit(3) from None
        for name, output in results.items():
            typer.echo(f"{name}: {_one_line(output.raw)}")
        typer.echo(f"run {run_id} completed")


def _maybe_json(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text


# -- the standing runtime (ray_orch.api.standing) and detached runs (ray_orch.api.jobs) --


@app.command()
def up(address: Annotated[str | None, typer.Option(
           help="Join this Ray cluster instead of starting a head on 127.0.0.1.")] = None,
       port: Annotated[int | None, typer.Option(help="The head's GCS port.")] = None,
       dashboard_port: Annotated[int | None, typer.Option(
           help="The dashboard's port (job submission).")] = None,
       num_cpus: Annotated[int | None, typer.Option(help="The head's CPUs.")] = None,
       idle_ttl: Annotated[float, typer.Option(
           help="Seconds idle agent members and Supervisors are kept.")] = 600.0,
       max_members: Annotated[int, typer.Option(
           help="The most idle agent members kept.")] = 64,
       prewarm: Annotated[int, typer.Option(
           help="Agent members started now, for a first run to find warm.")] = 4) -> None:
    """Start the standing runtime: a Ray head and ray-orch's control plane."""
    from ray_orch.api.standing import runtime_file
    from ray_orch.api.standing import up as start

    with _errors():
        try:
            info = start(address=address, port=port, dashboard_port=dashboard_port,
                         num_cpus=num_cpus, idle_ttl=idle_ttl, max_members=max_members,
                         prewarm=prewarm)
        except (RuntimeError, OSError, ConnectionError) as exc:
            _fail(str(exc), 1)
    typer.echo(f"ray-orch runtime up at {info.address}"
               + (f", dashboard {info.dashboard_url}" if info.dashboard_url else "")
               + f" ({runtime_file()})")


@app.command()
def down() -> None:
    """Stop everything `ray-orch up` started."""
    from ray_orch.api.standing import down as stop

    typer.echo(stop())


@app.command()
def status(as_json: Annotated[bool, typer.Option(
        "--json", help="Print the status as JSON.")] = False) -> None:
    """Show the standing runtime: endpoints, pools, members, Supervisors and runs."""
    from ray_orch.api.standing import status as get_status

    report = get_status()
    if report["up"] and report.get("dashboard_url"):
        from ray_orch.api.jobs import list_runs

        with contextlib.suppress(Exception):  # the runs are extra: never fail status
            report["runs"] = list_runs(address=report["dashboard_url"])
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    elif not report["up"]:
        typer.echo(f"no ray-orch runtime is up ({report['runtime_file']})")
        raise typer.Exit(1)
    else:
        from ray_orch.api.jobs import format_status

        typer.echo(format_status(report))


AddressOpt = Annotated[str | None, typer.Option(
    help="The dashboard (job submission) address; default: the standing runtime's.")]


@app.command()
def submit(file: FileArg, address: AddressOpt = None) -> None:
    """Submit a .py or .yaml workflow as a detached run; prints the run id last."""
    from ray_orch.api.jobs import submit_file

    with _errors():
        typer.echo(submit_file(file, address=address))


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


@app.command()
def runs(address: AddressOpt = None,
         directory: Annotated[Path | None, typer.Option(
             "--dir", help="List the runs of this checkpoint directory instead.")] = None,
         pending: Annotated[bool, typer.Option(
             "--pending", help="Only paused runs, with the requests they wait on "
             "(in --dir, default ./checkpoints).")] = False) -> None:
    """List the detached runs and their states (--dir / --pending: a checkpoint
    directory's runs, paused ones with the requests they wait on)."""
    from ray_orch.api.jobs import list_runs

    with _errors():
        if directory is not None or pending:
            _checkpoint_runs(directory or Path("checkpoints"), pending)
            return
        for row in list_runs(address=address):
            typer.echo(f"{row['run_id']}  {row['status']:<9} {row['entrypoint']}")


@app.command()
def logs(run: str, address: AddressOpt = None, follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Stream until the run ends.")] = False) -> None:
    """Print a detached run's output (its events and log lines)."""
    from ray_orch.api.jobs import run_logs

    with _errors():
        for chunk in run_logs(run, address=address, follow=follow):
            typer.echo(chunk, nl=False)


@app.command()
def cancel(run: str, address: AddressOpt = None) -> None:
    """Cancel a detached run."""
    from ray_orch.api.jobs import cancel_run

    with _errors():
        typer.echo(f"{run}: {'cancelled' if cancel_run(run, address=address) else 'not running'}")


@app.command()
def attach(run: str, address: AddressOpt = None) -> None:
    """Stream a detached run's output until it ends, then print its results."""
    from ray_orch.api.jobs import attach_run

    with _errors():
        code = attach_run(run, address=address, echo=lambda text: typer.echo(text, nl=False))
    if code:
        raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        from ray_orch import __version__

        typer.echo(f"ray-orch {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version.")] = False
          ) -> None:
    """Orchestrate LLM agents on Ray."""


if __name__ == "__main__":  # pragma: no cover
    app()
