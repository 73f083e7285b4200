"""What a test of the standing runtime gives the processes it starts (``ray-orch`` CLI
calls, driver scripts): a private runtime file, no inherited ``RAY_ADDRESS`` or auth
mode, ray-orch's code and these helpers on ``PYTHONPATH``. Shared by
``test_standing.py`` and ``test_redteam_detached.py``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
