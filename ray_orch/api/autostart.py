"""A runtime that starts itself and stays: the first driver script that finds no runtime
starts the standing runtime (what ``ray-orch up`` starts) in the background, joins it,
and leaves it up for the next script, which then starts no Ray of its own.

The runtime goes down by itself once no driver has been connected for
``RAY_ORCH_AUTO_RUNTIME_IDLE`` seconds (default 900), or with ``ray-orch down``. A
watchdog process started with it polls Ray's job table for connected drivers and calls
``down`` when the time is up. Off with ``RAY_ORCH_AUTO_RUNTIME=0``, under ``CI``, in a
test process (pytest), when ``RAY_ADDRESS`` or ``Process(ray_init=...)`` say where or
how Ray runs, and inside the runtime's own jobs (they have ``RAY_ADDRESS``).

Two scripts started at once take a lock (``runtime.lock`` beside the runtime file): one
starts the runtime, the other waits for it and joins. A runtime file left by a runtime
that is gone is replaced.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ray_orch.store.checkpoint import make_private_dirs

__all__ = ["AUTO_ENV", "IDLE_ENV", "auto_runtime_wanted", "idle_limit", "start_auto_runtime"]

AUTO_ENV = "RAY_ORCH_AUTO_RUNTIME"
"""``0`` turns the self-starting runtime off (``1`` turns it on even under CI)."""
IDLE_ENV = "RAY_ORCH_AUTO_RUNTIME_IDLE"
"""Seconds without a connected driver before the runtime stops itself (default 900)."""
_STARTED_TIMEOUT = 300.0
_POLL_S = 5.0


def auto_runtime_wanted(init_kwargs: dict[str, Any]) -> bool:
    """Whether this driver should start (or wait for) a standing runtime of its own.

    Example:
        >>> import os
        >>> saved = os.environ.get(AUTO_ENV)
        >>> os.environ[AUTO_ENV] = "0"
        >>> auto_runtime_wanted({})
        False
        >>> os.environ[AUTO_ENV] = "1"
        >>> auto_runtime_wanted({"num_cpus": 2})  # ray_init= says how Ray runs
        False
        >>> _ = os.environ.pop(AUTO_ENV) if saved is None else os.environ.update({AUTO_ENV: saved})
    """
    setting = os.environ.get(AUTO_ENV, "").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return False
    if init_kwargs or os.environ.get("RAY_ADDRESS") or os.environ.get("RAY_JOB_ID"):
        return False
    if setting in ("1", "true", "yes", "on"):
        return True
    return not os.environ.get("CI") and "_pytest" not in sys.modules


def idle_limit() -> float:
    """``RAY_ORCH_AUTO_RUNTIME_IDLE`` in seconds (900 when unset or not a number > 0)."""
    try:
        value = float(os.environ.get(IDLE_ENV, "900"))
    except ValueError:
        return 900.0
    return value if value > 0 else 900.0


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    make_private_dirs(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def start_auto_runtime(*, echo: Any = None) -> Any:
    """Join the standing runtime, starting it in the background first if none is up.

    Returns:
        The runtime's ``RuntimeInfo`` (``extra["started_here"]`` when this call started
        it), or None when it could not be started (the caller then starts a private Ray,
        as before; the reason is printed once).
    """
    from ray_orch.api.standing import discover, runtime_file

    path = runtime_file()
    with _locked(path.with_name("runtime.lock")):
        info = discover()  # another script may have started it while this one waited
        if info is not None:
            return info
        log = path.with_name("auto-runtime.log")
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        env = {**os.environ, AUTO_ENV: "0"}  # the runtime's own processes start none
        proc = subprocess.Popen([sys.executable, "-m", "ray_orch.api.autostart"],
                                stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, env=env,
                                start_new_session=True, close_fds=True)
        os.close(fd)
        info = _wait_started(proc, path)
    if info is not None:
        info.extra["started_here"] = True  # this driver's run starts what it needs
    say = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    if info is None:
        lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
        cause = lines[-1][-300:] if lines else "no output"
        say(f"[ray-orch] could not start a standing runtime ({cause}; see {log}); this "
            "script starts its own Ray")
        return None
    minutes = idle_limit() / 60
    say(f"[ray-orch] started a standing runtime for this and later scripts; it stops "
        f"after {minutes:g} min without one (`ray-orch down` stops it now, "
        f"{AUTO_ENV}=0 turns this off)")
    return info


def _wait_started(proc: subprocess.Popen[bytes], path: Path) -> Any:
    from ray_orch.api.standing import discover

    deadline = time.monotonic() + _STARTED_TIMEOUT
    while time.monotonic() < deadline:
        if path.exists():
            info = discover()
            if info is not None:
                return info
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    return None


def _jobs_alive(own_job: str) -> int:
    """Drivers connected to the runtime (and running detached jobs), this one aside."""
    import ray

    return sum(1 for job in ray._private.state.jobs()  # type: ignore[attr-defined]
               if not job.get("IsDead") and job.get("JobID") != own_job)


def watch(idle_s: float, *, poll_s: float = _POLL_S) -> str:
    """Stay connected to the runtime until no driver has been for ``idle_s`` seconds,
    then stop it (``down``). Returns why it ended, one line."""
    import ray

    from ray_orch.api.standing import connect_to_runtime, down, read_runtime

    info = read_runtime()
    if info is None:
        return "no runtime to watch"
    if not ray.is_initialized():  # ``up(announce=True)`` left this process connected
        connect_to_runtime(info)
    own = ray.get_runtime_context().get_job_id()
    idle_since = time.monotonic()
    try:
        while True:
            time.sleep(poll_s)
            current = read_runtime()
            if current is None or current.address != info.address:
                return "the runtime was stopped or replaced"
            try:
                busy = _jobs_alive(own) > 0
            except Exception:  # the head is gone (ray-orch down, a crash)
                return "the runtime is gone"
            if busy:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= idle_s:
                break
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
    return down() + f" after {idle_s:g} s without a driver"


def main() -> int:
    """The background runtime: ``up`` (with ``ray-orch up``'s defaults; its head in this
    process, which leads a session of its own), its dashboard, then ``watch``."""
    from ray_orch.api.standing import dashboard_started, up, write_runtime

    # The waiting script connects while the control plane starts, and starts the
    # processes its first run needs itself (no prewarm to race with: only what it needs).
    info = up(announce=True, prewarm=0)
    info.extra["watchdog_pid"] = os.getpid()
    info.extra["auto"] = {"idle_shutdown_s": idle_limit()}
    write_runtime(info)
    print(f"runtime up at {info.address}", flush=True)
    dashboard_started(info)
    print(watch(idle_limit()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
