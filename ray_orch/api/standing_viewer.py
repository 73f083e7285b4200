"""The run viewer beside the standing runtime: ``ray-orch up`` starts ``ray-orch ui`` over
the runtime's journal as a process of its own (its URL, token included, goes to the
private runtime file), and ``down`` stops it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["spawn_viewer", "stop_viewer", "viewer_started"]


def spawn_viewer(state_dir: str, journal_dir: str, env: dict[str, str]
                  ) -> subprocess.Popen[bytes]:
    """Start ``ray-orch ui`` over the runtime's journal, in a session of its own
    (``down`` stops it by its pid); ``viewer_started`` waits for its URL. Its output
    goes to ``viewer.out`` / ``viewer.log`` in the runtime's private ``state_dir``."""
    state = Path(state_dir)
    for name in ("viewer.out", "viewer.log"):
        with contextlib.suppress(FileNotFoundError):
            (state / name).unlink()
    # Private, as everything in the state dir: the first holds the token.
    stdout_fd = os.open(state / "viewer.out", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    stderr_fd = os.open(state / "viewer.log", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(stdout_fd, "wb") as stdout, os.fdopen(stderr_fd, "wb") as stderr:
        return subprocess.Popen([sys.executable, "-m", "ray_orch.cli", "ui", "--dir",
                                 journal_dir], stdout=stdout, stderr=stderr,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)


def viewer_started(state_dir: str, proc: subprocess.Popen[bytes],
                   timeout: float = 120.0) -> dict[str, Any]:
    """``viewer_url`` and ``viewer_pid`` once the viewer printed its URL, or
    ``viewer_error``."""
    state = Path(state_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        line = (state / "viewer.out").read_text().partition("\n")
        if line[1]:
            return {"viewer_url": line[0].strip(), "viewer_pid": proc.pid}
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    return {"viewer_error": f"the run viewer did not start; see {state / 'viewer.log'}"}


def stop_viewer(pid: Any) -> None:
    """Stop the viewer ``up`` started (``viewer_pid``), if that pid is still it."""
    if not isinstance(pid, int):
        return
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    if b"ray_orch.cli" in command and b"ui" in command:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if _is_zombie(pid):
                break
            time.sleep(0.1)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True
