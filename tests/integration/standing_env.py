"""What a test of the standing runtime gives the processes it starts (``ray-orch`` CLI
calls, driver scripts): a private runtime file, no inherited ``RAY_ADDRESS`` or auth
mode, ray-orch's code and these helpers on ``PYTHONPATH``; and the runtime itself, up
for a module's tests and checked to go down whole. Shared by ``test_standing.py`` and
``test_redteam_detached.py``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


def standing_env(runtime: Path, *, private_home: bool = False, **extra: str) -> dict[str, str]:
    """The environment for a process of a test's standing runtime (``runtime``: its
    runtime file); ``private_home``: a HOME of its own beside that file."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env.update({"RAY_ORCH_RUNTIME_FILE": str(runtime), "RAY_ORCH_PROGRESS": "0",
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "integration")]),
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"})
    if private_home:
        env["HOME"] = str(runtime.parent / "home")
    env.update(extra)
    return env


def standing_cli(runtime: Path, *args: str, timeout: float = 180,
                 private_home: bool = False) -> subprocess.CompletedProcess[str]:
    """``ray-orch ARGS`` against that runtime."""
    return subprocess.run([PY, "-m", "ray_orch.cli", *args],
                          env=standing_env(runtime, private_home=private_home), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def standing_runtime(runtime: Path, *, private_home: bool = False) -> Iterator[dict[str, Any]]:
    """``ray-orch up`` (2 CPUs) under the runtime file ``runtime``; yields what that file
    says; ``ray-orch down`` after, whatever happened, checked to leave no process of the
    head's session (any left are killed first: never a head left behind)."""
    from ray_orch.api.standing import _session_pids

    started = standing_cli(runtime, "up", "--num-cpus", "2", timeout=300,
                           private_home=private_home)
    info = json.loads(runtime.read_text()) if runtime.exists() else None
    try:
        assert started.returncode == 0 and info is not None, started.stderr[-3000:]
        yield info
    finally:
        stopped = standing_cli(runtime, "down", private_home=private_home)
        left = _session_pids(info["session"]) if info and info.get("session") else []
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert left == [], "`ray-orch down` left processes running"
