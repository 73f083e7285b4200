"""``ray-orch`` commands about runs that outlive a driver: the standing runtime (``up``,
``down``, ``status``), detached runs (``submit``, ``runs``, ``logs``, ``cancel``,
``attach``) and paused runs (``runs --pending``, ``approve``). Importing this module adds
them to the app (``ray_orch.cli`` does)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ray_orch.cli.base import FileArg, app
from ray_orch.cli.base import errors as _errors
from ray_orch.cli.base import fail as _fail
from ray_orch.cli.base import one_line as _one_line

__all__: list[str] = []


DirOpt = Annotated[Path, typer.Option("--dir", help="The checkpoint directory of the runs.")]


def _checkpoint_runs(directory: Path, pending: bool) -> None:
    """The runs of a checkpoint directory (paused ones with their requests)."""
    if not directory.is_dir():
        _fail(f"{directory}: no such checkpoint directory", 2)
    from ray_orch.store.approvals import PauseStore
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


def continue_paused(directory: str, run_id: str, answers: dict[str, Any]) -> dict[str, Any]:
    """Continue a paused run from its checkpoint store alone (``ray-orch approve``): its
    definition was stored when it paused.

    Returns:
        What its ``workflow()`` returns.

    Raises:
        ApprovalError: no paused run ``run_id`` in ``directory``.
        RunPaused: it asks again (another request is pending).
    """
    import ray.cloudpickle as pickle

    from ray_orch.api.process import Process
    from ray_orch.core.approvals import ApprovalError, parse_answer
    from ray_orch.store.approvals import PauseStore

    store = PauseStore(directory)
    try:
        found = store.spec(run_id)
    finally:
        store.close()
    if found is None:
        raise ApprovalError(f"no paused run {run_id!r} in {directory}", field="run")
    mode, packed = found
    spec = pickle.loads(packed)
    process = Process(tasks=spec.tasks, agents=spec.agents, manager_llm=spec.manager,
                      name=spec.workflow, checkpoint_dir=directory,
                      max_visits=spec.max_visits, max_steps=spec.max_steps,
                      on_failure=spec.on_failure, cache=spec.cache,
                      budget_tokens=spec.budget_tokens, budget_usd=spec.budget_usd,
                      metrics=spec.metrics)
    answers = {k: parse_answer(v) for k, v in answers.items()}
    return getattr(process, mode)(resume=run_id, answers=answers)  # type: ignore[no-any-return]


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
       max_members: Annotated[int | None, typer.Option(
           help="The most idle agent members kept (default: from the machine's cores "
           "and memory).")] = None,
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
    from ray_orch.api.yaml_workflow import shell_variables

    with _errors():
        typer.echo(submit_file(file, address=address, variables=shell_variables(file)))


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


