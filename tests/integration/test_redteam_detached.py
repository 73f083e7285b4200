"""Detached runs are truthful (red team, round 3): a submitted run whose job driver is
killed went on to finish on its Supervisor, while ``ray-orch runs`` said FAILED and no
result was stored; ``logs`` and ``attach`` showed no events.

A real standing runtime (``ray-orch up`` under a private runtime file), a real job
submitted with ``ray-orch submit``, its driver process killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from standing_env import ROOT, standing_cli, standing_env, standing_runtime

from ray_orch.testing import StubLLMServer

DRIVER = ROOT / "tests" / "integration" / "standing_driver.py"
PY = sys.executable

pytestmark = pytest.mark.slow


def _env(runtime: Path, **extra: str) -> dict[str, str]:
    return standing_env(runtime, private_home=True, **extra)


def _cli(runtime: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return standing_cli(runtime, *args, timeout=timeout, private_home=True)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    """``ray-orch up`` in a temp dir; ``ray-orch down`` after, checked to leave nothing."""
    path = tmp_path_factory.mktemp("detached") / "runtime.json"
    with standing_runtime(path, private_home=True):
        yield path


def _job_driver_pid(run_id: str) -> int | None:
    """The pid of the job's driver process (``ray_orch.cli job-run ... --run-id RUN``)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"job-run" in argv and run_id.encode() in argv and any(
                a.endswith(b"python") or b"python3" in a for a in argv[:1]):
            return int(entry.name)
    return None


def test_a_run_whose_job_driver_is_killed_is_shown_as_it_truly_ended(runtime, tmp_path):
    steps = 6
    with StubLLMServer(reply="ok", latency=0.8) as slow:
        script = tmp_path / "chain.py"
        script.write_text(DRIVER.read_text().replace('os.environ["STUB_BASE"]',
                                                     repr(slow.base_url)).replace(
            'os.environ.get("SHAPE", "w2")', f'"chain:{steps}"'))
        submitted = _cli(runtime, "submit", str(script))
        assert submitted.returncode == 0, submitted.stderr[-3000:]
        run_id = submitted.stdout.strip().splitlines()[-1]
        deadline = time.monotonic() + 240
        while slow.count() < 2:  # under way: two steps asked
            assert time.monotonic() < deadline, "the submitted run never got going"
            time.sleep(0.1)
        pid = _job_driver_pid(run_id)
        assert pid is not None, "no job driver process found"
        os.kill(pid, signal.SIGKILL)
        # attach follows the run to its true end, with its events, whatever its job did.
        attached = _cli(runtime, "attach", run_id, timeout=400)
        asked = [slow.count(f"[step{i}]") for i in range(steps)]
    out = attached.stdout
    assert f"run {run_id}: completed" in out, out[-3000:] + attached.stderr[-2000:]
    assert attached.returncode == 0, out[-3000:]
    assert all(f"  step{i}: completed  ok" in out for i in range(steps)), out[-3000:]
    assert "task step5 completed" in out, out[-3000:]  # events, not only the end
    assert asked == [1] * steps, asked  # nothing asked twice
    runs = _cli(runtime, "runs").stdout
    assert f"{run_id}  completed" in runs, runs
    logs = _cli(runtime, "logs", run_id).stdout
    assert "task step0 started" in logs, logs[-3000:]
    assert "task step5 completed (journal)" in logs, logs[-3000:]  # after the kill
    assert f"run {run_id}: completed" in logs, logs[-3000:]


def test_logs_and_attach_stream_a_detached_runs_events(runtime, tmp_path):
    with StubLLMServer(reply="ok", latency=0.05) as stub:
        script = tmp_path / "w2.py"
        script.write_text(DRIVER.read_text().replace('os.environ["STUB_BASE"]',
                                                     repr(stub.base_url)))
        run_id = _cli(runtime, "submit", str(script)).stdout.strip().splitlines()[-1]
        attached = _cli(runtime, "attach", run_id, timeout=300)
    assert attached.returncode == 0, attached.stdout[-3000:] + attached.stderr[-3000:]
    for line in (f"run {run_id} started", "task plan started", "task plan completed",
                 "task edit completed", f"run {run_id}: completed"):
        assert line in attached.stdout, (line, attached.stdout[-3000:])
    logs = _cli(runtime, "logs", run_id).stdout
    assert "task analyse completed" in logs, logs[-3000:]
    assert "RAY_ORCH_RESULT" not in logs  # the report is read back, not shown raw
