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


DirOpt = Annotated[Path | None, typer.Option(
    "--dir", help="The checkpoint directory of the runs (the SQLite store's shorthand).")]
StoreOpt = Annotated[str | None, typer.Option(
    "--store", help="The run store: a directory or a postgresql:// DSN (default: --dir, "
    "else $RAY_ORCH_STORE, else ./checkpoints).")]


def _store_of(store: str | None, directory: Path | None) -> Any:
    """The run store the options name, opened (StoreError when it cannot be used)."""
    from ray_orch.store.factory import is_postgres, open_store, store_spec

    spec = store_spec(store, str(directory) if directory else None) or "checkpoints"
    if not is_postgres(spec) and "://" not in spec and not Path(spec).is_dir():
        _fail(f"{spec}: no such checkpoint directory", 2)
    return open_store(spec)


def _stored_runs(store: Any, pending: bool) -> None:
    """The runs of a run store (paused ones with their requests)."""
    from ray_orch.store.approvals import PauseStore

    if pending:
        for run in PauseStore(store).paused():
            typer.echo(f"{run['run_id']}  {run['workflow']} ({run['mode']})  paused")
            for request in run["requests"]:
                what = (f"tool {request['tool']}({request['arguments']})"
                        if request.get("tool") else "output: " + _one_line(
                            (request.get("output") or {}).get("raw")))
                typer.echo(f"  {request['id']}  task {request['task']}  {what}")
        return
    for record in store.list_runs():
        typer.echo(f"{record.run_id}  {record.workflow}  {record.status}")


@app.command()
def approve(run_id: Annotated[str, typer.Argument(help="The paused run.")],
            request: Annotated[str, typer.Argument(help="The request to answer.")],
            directory: DirOpt = None, store: StoreOpt = None,
            edit: Annotated[str | None, typer.Option(
                "--edit", help="Replace the output (or the tool's arguments, as JSON).")] = None,
            reject: Annotated[str | None, typer.Option(
                "--reject", help="Refuse, saying why.")] = None) -> None:
    """Answer a paused run's request (approve, --edit TEXT or --reject REASON) and continue it."""
    with _errors():
        if edit is not None and reject is not None:
            _fail("give --edit or --reject, not both", 2)
        from ray_orch.core.approvals import Approve, Reject, RunPaused, edit_from_text

        answer = (edit_from_text(edit, by="cli") if edit is not None else
                  Reject(reject, by="cli") if reject is not None else Approve(by="cli"))
        spec = _store_of(store, directory).spec
        try:
            results = continue_paused(spec, run_id, {request: answer})
        except RunPaused as paused:
            for asked in paused.requests:
                typer.echo(f"paused again: {asked.id}  task {asked.task}")
            raise typer.Exit(3) from None
        for name, output in results.items():
            typer.echo(f"{name}: {_one_line(output.raw)}")
        typer.echo(f"run {run_id} completed")


def continue_paused(store: str, run_id: str, answers: dict[str, Any]) -> dict[str, Any]:
    """Continue a paused run from its run store alone (``ray-orch approve``): its
    definition was stored, signed, when it started.

    Args:
        store: the run store's spec (a directory or a DSN).
        run_id: the paused run.
        answers: answers by request id.

    Returns:
        What its ``workflow()`` returns.

    Raises:
        ApprovalError: no paused run ``run_id`` in the store.
        StoreIntegrityError: its stored definition fails its authentication (changed,
            or signed with another key): nothing is unpickled, nothing runs.
        StoreError: the store cannot be used.
        RunPaused: it asks again (another request is pending).
    """
    from ray_orch.api.paused import paused_process
    from ray_orch.core.approvals import parse_answer

    process, mode = paused_process(store, run_id)
    answers = {k: parse_answer(v) for k, v in answers.items()}
    return getattr(process, mode)(resume=run_id, answers=answers)  # type: ignore[no-any-return]


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
           help="Agent members started now, for a first run to find warm.")] = 4,
       viewer: Annotated[bool, typer.Option(
           "--ui/--no-ui", help="Serve the run viewer too (its URL is printed).")] = True,
       store: Annotated[str | None, typer.Option(
           "--store", help="The runtime's run store (a directory or a postgresql:// DSN) "
           "for runs without their own and for detached runs' results.")] = None) -> None:
    """Start the standing runtime: a Ray head and ray-orch's control plane."""
    from ray_orch.api.standing import runtime_file
    from ray_orch.api.standing import up as start

    with _errors():
        try:
            info = start(address=address, port=port, dashboard_port=dashboard_port,
                         num_cpus=num_cpus, idle_ttl=idle_ttl, max_members=max_members,
                         prewarm=prewarm, viewer=viewer, store=store)
        except (RuntimeError, OSError, ConnectionError) as exc:
            _fail(str(exc), 1)
    typer.echo(f"ray-orch runtime up at {info.address}"
               + (f", dashboard {info.dashboard_url}" if info.dashboard_url else "")
               + f" ({runtime_file()})")
    if info.extra.get("viewer_url"):
        typer.echo(f"runs: {info.extra['viewer_url']}")
    elif info.extra.get("viewer_error"):
        typer.echo(f"warning: {info.extra['viewer_error']}", err=True)


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
def submit(file: FileArg, address: AddressOpt = None, store: Annotated[str | None, typer.Option(
        "--store", help="The run's store (a directory or a postgresql:// DSN), given to "
        "the job as $RAY_ORCH_STORE.")] = None) -> None:
    """Submit a .py or .yaml workflow as a detached run; prints the run id last."""
    from ray_orch.api.jobs import submit_file
    from ray_orch.api.yaml_workflow import shell_variables

    with _errors():
        typer.echo(submit_file(file, address=address, variables=shell_variables(file),
                               store=store))


@app.command()
def runs(address: AddressOpt = None,
         directory: Annotated[Path | None, typer.Option(
             "--dir", help="List the runs of this checkpoint directory instead.")] = None,
         store: Annotated[str | None, typer.Option(
             "--store", help="List the runs of this run store (a directory or a "
             "postgresql:// DSN) instead.")] = None,
         pending: Annotated[bool, typer.Option(
             "--pending", help="Only paused runs, with the requests they wait on "
             "(in --store / --dir, default $RAY_ORCH_STORE, else ./checkpoints).")] = False
         ) -> None:
    """List the detached runs and their states (--store / --dir / --pending: a run
    store's runs, paused ones with the requests they wait on)."""
    from ray_orch.api.jobs import list_runs

    with _errors():
        if directory is not None or store is not None or pending:
            _stored_runs(_store_of(store, directory), pending)
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




@app.command()
def ui(directory: Annotated[Path | None, typer.Option(
           "--dir", help="A checkpoint directory (default: ./checkpoints and the standing "
           "runtime's journal).")] = None,
       store: Annotated[str | None, typer.Option(
           "--store", help="A run store instead: a directory, sqlite:///DIR or a "
           "postgresql:// DSN.")] = None,
       port: Annotated[int, typer.Option(help="The port (0: any free one).")] = 0,
       host: Annotated[str, typer.Option(
           help="The address to bind; other than 127.0.0.1 shares your runs.")] = "127.0.0.1"
       ) -> None:
    """Serve the run viewer in a browser: runs, their graphs live, approvals. Prints its URL (with
    the session's token) and serves until interrupted."""
    import os
    import signal
    import sys
    import threading

    from ray_orch.ui import source_for
    from ray_orch.ui.server import UIServer

    with _errors():
        try:
            source = source_for(str(directory) if directory else None, store)
        except ValueError as exc:
            _fail(str(exc), 2)
        # Never ask on this terminal: a run continued here pauses durably again.
        sys.stdin = open(os.devnull)  # noqa: SIM115
        try:
            server = UIServer(source, host=host, port=port).start()
        except OSError as exc:
            _fail(f"cannot serve on {host}:{port}: {exc}", 1)
        if host not in ("127.0.0.1", "localhost", "::1"):
            typer.echo(f"warning: serving on {host}: anyone who can reach it and has the "
                       "token sees your runs", err=True)
        typer.echo(server.url)
        sys.stdout.flush()
        source.prewarm()  # a run waits for an answer: Ray starts now
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        server.stop()
