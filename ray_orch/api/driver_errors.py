"""What reaches the driver when a run fails in a way the engine did not type.

Every failure inside the Supervisor, or on its way back, reaches the driver as a
``RayOrchError`` subclass carrying the run id and the partial results, with the original
exception chained as ``__cause__``: Ray's own exceptions, and the loss of the Supervisor
itself (``SupervisorLostError``).
"""

from __future__ import annotations

import contextlib
from typing import Any

from ray_orch.core.errors import RayOrchError, RunError, SupervisorLostError
from ray_orch.core.output import TaskOutput

__all__ = ["as_run_error", "death_cause", "partial_results", "reap_lost_supervisor"]


def partial_results(store: Any, run_id: str) -> dict[str, TaskOutput]:
    """The outputs a lost run had recorded: its store's latest visit of each task
    (nothing without a store: the driver sees no outputs before the end)."""
    if store is None:
        return {}
    outputs: dict[str, TaskOutput] = {}
    with contextlib.suppress(Exception):  # a damaged store must not hide the real error
        saved = store.load_tasks(run_id)
        for key in sorted(saved, key=lambda k: int(k.partition("#")[2] or 1)):
            outputs[key.partition("#")[0]] = TaskOutput(**saved[key])
    return outputs


def as_run_error(exc: BaseException, *, run_id: str, store: Any, lost: bool,
                 completed: list[str] | None = None) -> RayOrchError:
    """``exc`` as the driver raises it (chain it with ``raise ... from exc``).

    Args:
        exc: what came back (or failed on the way back) from the Supervisor.
        run_id: the run's id.
        store: the run's store (``RunStore``) or None, for the partial results.
        lost: the Supervisor itself died.
        completed: tasks the driver heard complete (named in the message; their outputs
            are in ``results`` only when checkpoints hold them).

    Returns:
        ``exc`` itself with ``run_id`` set when it is already a ray-orch error; else a
        ``SupervisorLostError`` (Supervisor lost) or ``RunError`` naming it.
    """
    if isinstance(exc, RayOrchError):
        if isinstance(exc, RunError):
            exc.run_id = exc.run_id or run_id
        return exc
    results = partial_results(store, run_id)
    if lost:
        resume = (f"; resume it with workflow(resume='{run_id}')" if store is not None else
                  "; with Process(checkpoint_dir=...) a rerun resumes where it stopped")
        heard = f" (completed before: {', '.join(completed)})" if completed else ""
        return SupervisorLostError(
            f"run {run_id}: its Supervisor was lost mid-run: {death_cause(exc)}{heard}; "
            f"{len(results)} task result(s) recovered from checkpoints{resume}",
            run_id=run_id, results=results)
    return RunError(f"run {run_id} failed in the engine: {type(exc).__name__}: "
                    f"{str(exc)[:500]}", run_id=run_id, results=results)


_FIELDS = ("class_name", "actor_id", "pid", "name", "namespace", "ip")
_CAUSES = (  # what Ray's message says -> what it means, first match wins
    (("NODE_OUT_OF_MEMORY", "low on memory"), "its node ran out of memory (Ray's memory "
     "monitor killed it)"),
    (("node has died", "node was terminated", "NODE_DIED"), "its node died"),
    (("preempted",), "its node was preempted"),
    (("ray.kill",), "it was killed with ray.kill"),
    (("never ran", "cancelled before it started"), "it never started"),
    (("creation task",), "its creation failed"),
    (("SIGKILL", "unexpectedly exits", "connection error", "worker process has died"),
     "its process died (killed by a signal, such as the kernel's OOM killer, or crashed)"),
    (("is unavailable",), "it became unreachable (its process or node may be "
     "restarting, or the network dropped)"),
)


def death_cause(exc: BaseException) -> str:
    """Why Ray says an actor (the Supervisor) died, in one line: what it means, Ray's own
    words, where it ran and how to read its log. Ray's ``ActorDiedError`` keeps its cause
    only in its message (the fields of ``ActorDiedErrorContext``, one a line).

    Example:
        >>> death_cause(RuntimeError(""))
        'RuntimeError, and Ray gave no cause (see the Ray logs of the session)'
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    fields: dict[str, str] = {}
    said: list[str] = []
    for line in lines:
        key, sep, value = line.partition(": ")
        if sep and key in _FIELDS:
            fields[key] = value
        elif line != "The actor died unexpectedly before finishing this task.":
            said.append(line)
    words = " ".join(said)
    meaning = next((text for needles, text in _CAUSES
                    if any(n.lower() in words.lower() for n in needles)), None)
    if getattr(exc, "preempted", False):
        meaning = "its node was preempted"
    where = ", ".join(f"{k} {fields[k]}" for k in ("pid", "ip") if k in fields)
    log = (f"; its log: `ray logs actor --id {fields['actor_id']}`"
           if "actor_id" in fields else "")
    if not words:
        return (f"{type(exc).__name__}, and Ray gave no cause"
                f"{f' ({where})' if where else ''}{log or ' (see the Ray logs of the session)'}")
    ray = f"[{type(exc).__name__}{f', {where}' if where else ''}: {words[:500]}]{log}"
    return f"{meaning} {ray}" if meaning else ray


async def reap_lost_supervisor(registry: Any, supervisor: Any) -> None:
    """Have the registry stop every member the dead Supervisor held (leased or kept)."""
    with contextlib.suppress(Exception):  # the registry may be gone too (driver exit)
        await registry.reclaim.remote(supervisor._actor_id.hex())


def interrupted(run_id: str | None, *, mode: str, checkpoint_dir: str | None,
                verbose: bool) -> KeyboardInterrupt:
    """The ``KeyboardInterrupt`` a driver raises on Ctrl-C once its run is cancelled:
    its message names the run and the exact way to resume it. Uncaught, it prints that
    one line (the traceback too when ``verbose``) and the process exits with status 130
    (128 + SIGINT, what a shell reports for a program Ctrl-C ended) once its exit
    handlers (Ray's shutdown among them) have run; a script that catches
    ``KeyboardInterrupt`` still can.

    Example:
        >>> str(interrupted("r1", mode="workflow", checkpoint_dir="ck", verbose=True))
        "run r1 interrupted (Ctrl-C) and cancelled; completed tasks are kept in ck: resume it with workflow(resume='r1') (or ray-orch run FILE --resume r1)"
    """
    if checkpoint_dir:
        how = (f"completed tasks are kept in {checkpoint_dir}: resume it with "
               f"{mode}(resume='{run_id}') (or ray-orch run FILE --resume {run_id})")
    else:
        how = ("its results are not kept: give Process(checkpoint_dir=...) to resume "
               "where a run stopped")
    error = KeyboardInterrupt(f"run {run_id or '(not started)'} interrupted (Ctrl-C) and "
                              f"cancelled; {how}")
    _exit_on_interrupts()
    error.ray_orch_line = True  # type: ignore[attr-defined]
    error.ray_orch_verbose = verbose  # type: ignore[attr-defined]
    return error


INTERRUPTED_EXIT = 130
"""The exit status of a driver that an uncaught ray-orch interrupt ends (Ctrl-C)."""


def _exit_on_interrupts() -> None:
    """An uncaught interrupt of ours prints its one line (its traceback too when
    verbose), runs the exit handlers and exits with ``INTERRUPTED_EXIT``. Python would
    end such a process by SIGINT, but with Ray connected its finalization exits with
    status 1, which reads as an ordinary failure; any other exception is printed as
    before."""
    import sys

    previous = sys.excepthook
    if getattr(previous, "ray_orch", False):
        return

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if not (isinstance(value, KeyboardInterrupt) and getattr(value, "ray_orch_line",
                                                                 False)):
            previous(kind, value, tb)
            return
        if getattr(value, "ray_orch_verbose", False):
            import traceback

            traceback.print_exception(kind, value, tb)
        else:
            print(f"KeyboardInterrupt: {value}", file=sys.stderr, flush=True)
        _exit_now(INTERRUPTED_EXIT)

    hook.ray_orch = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def _exit_now(status: int) -> None:
    """Run the exit handlers (Ray's shutdown, log flushes), flush, and exit ``status``."""
    import atexit
    import os
    import sys

    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
