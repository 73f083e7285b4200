"""The standing runtime's Ray head, started with Ray's node API rather than ``ray start``.

``ray start --head`` (like ``ray.init()``) starts the GCS, then the dashboard, waits for the
dashboard to publish its URL, and only then starts the raylet: the dashboard, the slowest
process to start (2-3 s of CPU here), sits on the critical path of every start. Here the
node comes up without it (GCS, raylet, agents: a driver can connect), and the dashboard is
started after, beside the control plane (``Head.start_dashboard``). No Ray Client server
either (nothing of ray-orch's speaks ``ray://``), nor the autoscaler's monitor (a single
local node never scales), nor a CLI to import.

Two ways to run it:
- in this process (``start_head(..., here=True)``): the self-starting runtime's background
  process, a session leader that stays up as the runtime's watchdog;
- as ``python -m ray_orch.api.head SPEC`` in a session of its own (``ray-orch up``): it
  prints ``up ADDRESS`` once the node is up, then starts the dashboard, prints
  ``dashboard URL`` and exits (nothing of the node is tied to it).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["Head", "HeadSpec", "start_head"]

_DASHBOARD_TIMEOUT = 180.0
_NICE = 10


@dataclass(kw_only=True)
class HeadSpec:
    """Where the head listens and keeps its files."""

    port: int
    """The GCS port (on 127.0.0.1)."""
    dashboard_port: int
    """The dashboard's port (job submission)."""
    agent_port: int
    """The dashboard agent's listen port."""
    temp_dir: str
    """Ray's temp dir: sockets and logs."""
    num_cpus: int | None = None
    """The node's CPUs (Ray's default: all)."""


def _node(spec: HeadSpec) -> Any:
    """Ray's head ``Node`` for ``spec``, up without its dashboard (started by
    ``Head.start_dashboard``). Its processes outlive this one, as ``ray start``'s do."""
    from ray._private.node import Node
    from ray._private.parameter import RayParams
    from ray._private.utils import write_ray_address

    class _Head(Node):  # type: ignore[misc]
        def start_api_server(self, **_: Any) -> None:  # called before the raylet: later
            self._webui_url = f"127.0.0.1:{spec.dashboard_port}"

    params = RayParams(node_ip_address="127.0.0.1", node_name="127.0.0.1",
                       gcs_server_port=spec.port, temp_dir=spec.temp_dir,
                       num_cpus=spec.num_cpus, include_dashboard=True,
                       dashboard_host="127.0.0.1",
                       dashboard_port=spec.dashboard_port,  # type: ignore[arg-type]
                       dashboard_agent_listen_port=spec.agent_port, no_monitor=True)
    node = _Head(params, head=True, shutdown_at_exit=False, spawn_reaper=False)
    # As ``ray start`` does: the session's own record of its GCS, which Ray's job
    # supervisor reads for its jobs' RAY_ADDRESS (else it greps ``ps`` for any GCS on the
    # machine, and a job could join another runtime).
    write_ray_address(node.gcs_address, spec.temp_dir)
    return node


def _node_or_none(spec: HeadSpec) -> Any:
    """``_node(spec)``; when it fails, say why and stop this process's group: the
    processes the node started (this process leads a session of its own) and itself."""
    try:
        return _node(spec)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os.killpg(0, signal.SIGKILL)
        raise


def _dashboard(node: Any, *, nice: int = 0) -> str:
    """Start ``node``'s dashboard; returns its URL once it published it. ``nice``: its
    processes run at that lower CPU priority (the self-started runtime's: only job
    submission needs them, and their 2-3 s of start-up CPU must not slow the first run
    starting beside them)."""
    from ray._private.node import Node

    if nice:  # Linux keeps a nice value per thread; a process inherits the forking thread's
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                           os.getpriority(os.PRIO_PROCESS, 0) + nice)

    Node.start_api_server(node, include_dashboard=True, raise_on_failure=True)
    return f"http://{node.webui_url}"


class Head:
    """A head that is up (drivers can connect); its dashboard may still be starting."""

    def __init__(self, address: str, *, session: int, started: Any) -> None:
        self.address = address
        """The GCS address (``127.0.0.1:PORT``)."""
        self.session = session
        """The session id of the head's processes."""
        self.dashboard_url: str | None = None
        """Where the dashboard answers, once it does: the URL it published (None
        before)."""
        self._started = started  # the node (here) or the head's process
        self._thread: threading.Thread | None = None
        self._error: str | None = None

    def start_dashboard(self) -> None:
        """Start the dashboard in the background (the head's process does on its own)."""
        if isinstance(self._started, subprocess.Popen) or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run_dashboard, daemon=True,
                                        name="ray-orch-dashboard")
        self._thread.start()

    def _run_dashboard(self) -> None:
        try:
            self.dashboard_url = _dashboard(self._started, nice=_NICE)
        except Exception as exc:
            self._error = f"{type(exc).__name__}: {exc}"

    def wait_dashboard(self, timeout: float = _DASHBOARD_TIMEOUT) -> None:
        """Block until the dashboard answers.

        Raises:
            RuntimeError: it failed to start, or did not in ``timeout`` seconds.
        """
        self.start_dashboard()
        if isinstance(self._started, subprocess.Popen):
            url = _first_line(self._started.stdout, "dashboard ")  # where it really is
            try:
                code = self._started.wait(timeout)
            except subprocess.TimeoutExpired:
                code = None
            if code != 0 or url is None:
                self._error = f"the head's process ended with {code}"
            else:
                self.dashboard_url = url
        elif self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._error = f"not up after {timeout:g} s"
        if self._error:
            raise RuntimeError(f"the Ray dashboard did not start ({self._error})")


def start_head(spec: HeadSpec, *, env: dict[str, str], log: Path, here: bool) -> Head:
    """Start a Ray head on 127.0.0.1 and return once drivers can connect.

    Args:
        spec: its ports and temp dir.
        env: the environment of the head's processes (its workers').
        log: where the head's process writes its output (``here=False``).
        here: start it in this process, which must lead a session of its own (its
            processes are then in it, for ``down``) and whose environment becomes ``env``;
            else in a new process, in a new session.

    Raises:
        RuntimeError: it did not start (the log's tail says why).
    """
    if here:
        os.environ.update(env)
        node = _node_or_none(spec)
        return Head(node.gcs_address, session=os.getsid(0), started=node)
    with open(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        proc = subprocess.Popen([sys.executable, "-m", "ray_orch.api.head",
                                 json.dumps(asdict(spec))], stdout=subprocess.PIPE,
                                stderr=out, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    address = _first_line(proc.stdout, "up ")
    if address is None:
        proc.wait()
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the Ray head did not start (exit {proc.returncode}):\n{tail}")
    return Head(address, session=proc.pid, started=proc)


def _first_line(stream: IO[bytes] | None, prefix: str) -> str | None:
    """The rest of the first line of ``stream`` that starts with ``prefix`` (None: it
    ended first)."""
    for raw in stream or ():
        line = raw.decode(errors="replace").strip()
        if line.startswith(prefix):
            return line[len(prefix):]
    return None


def main(argv: list[str]) -> int:
    """``python -m ray_orch.api.head SPEC``: start the head, say ``up ADDRESS``, start
    the dashboard, say ``dashboard URL``, exit."""
    said = os.fdopen(os.dup(1), "w")  # not inherited: only this process answers on it
    os.dup2(2, 1)  # what Ray prints, here or in the processes it starts, goes to the log
    node = _node_or_none(HeadSpec(**json.loads(argv[0])))
    print(f"up {node.gcs_address}", file=said, flush=True)
    print(f"dashboard {_dashboard(node)}", file=said, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
