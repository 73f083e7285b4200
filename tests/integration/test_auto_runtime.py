"""A runtime that starts itself and stays (#31): a driver script that finds no runtime
starts the standing runtime in the background, joins it and leaves it up; two scripts
started at once share one; a stale runtime file is replaced; the runtime stops itself
once no driver has been connected for ``RAY_ORCH_AUTO_RUNTIME_IDLE`` seconds.

Each script is a process of its own with a private HOME, as a user's scripts are; the
model is the StubLLMServer in this process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ray_orch.testing import StubLLMServer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import json, os, ray
from ray_orch import Agent, Process, Task
llm = {"model": "openai/stub", "base_url": os.environ["STUB_BASE"]}
writer = Agent(role="Writer", goal="Write", llm=llm)
out = Process(tasks={"t": Task(description="Say ok", agent=writer)}).workflow()
print(json.dumps({"raw": out["t"].raw, "address": ray.get_runtime_context().gcs_address}))
"""

pytestmark = pytest.mark.slow


def _env(home: Path, stub: StubLLMServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "CI", "RAY_ORCH_RUNTIME_FILE")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), STUB_BASE=stub.base_url,
               RAY_ORCH_AUTO_RUNTIME="1", RAY_ORCH_AUTO_RUNTIME_IDLE="30",
               RAY_ORCH_PROGRESS="0")
    env.update(extra)
    return env


def _start(home: Path, stub: StubLLMServer) -> subprocess.Popen[str]:
    script = home / "script.py"
    script.write_text(SCRIPT)
    return subprocess.Popen([sys.executable, str(script)], env=_env(home, stub), cwd=home,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str]) -> tuple[dict, str]:
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1]), err


def _cleanup(home: Path) -> None:
    """``ray-orch down`` for this HOME, then nothing of the runtime may be left."""
    runtime = home / ".ray-orch" / "runtime.json"
    info = json.loads(runtime.read_text()) if runtime.exists() else None
    subprocess.run([sys.executable, "-m", "ray_orch.cli", "down"], cwd=ROOT,
                   env={**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)},
                   capture_output=True, timeout=120)
    if info and info.get("session"):
        from ray_orch.api.standing import _session_pids

        for pid in _session_pids(info["session"]):
            os.kill(pid, signal.SIGKILL)


def test_the_first_script_starts_a_runtime_that_later_scripts_share(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with StubLLMServer(reply="ok") as stub:
        try:
            # Two scripts at once: one starts the runtime, the other waits and joins it.
            first, second = _start(home, stub), _start(home, stub)
            (a, err_a), (b, err_b) = _finish(first), _finish(second)
            assert a["raw"] == b["raw"] == "ok"
            assert a["address"] == b["address"]
            started = [e for e in (err_a, err_b) if "started a standing runtime" in e]
            assert len(started) == 1, (err_a, err_b)
            assert "ray-orch down" in started[0] and "RAY_ORCH_AUTO_RUNTIME=0" in started[0]
            info = json.loads((home / ".ray-orch" / "runtime.json").read_text())
            assert info["address"] == a["address"] and info["extra"]["auto"]
            # A later script joins it and says nothing about it.
            c, err_c = _finish(_start(home, stub))
            assert c["address"] == a["address"] and "standing runtime" not in err_c
            status = subprocess.run([sys.executable, "-m", "ray_orch.cli", "status", "--json"],
                                    cwd=ROOT, env=_env(home, stub), capture_output=True,
                                    text=True, timeout=120)
            report = json.loads(status.stdout)
            assert report["up"] and report["memory"]["rss_mb"] > 0
            # No driver for the idle time (30 s here): it stops itself, leaving nothing.
            from ray_orch.api.standing import _session_pids

            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and (
                    (home / ".ray-orch" / "runtime.json").exists() or
                    _session_pids(info["session"])):
                time.sleep(1)
            assert not (home / ".ray-orch" / "runtime.json").exists()
            assert _session_pids(info["session"]) == []
        finally:
            _cleanup(home)


def test_a_stale_runtime_file_is_replaced_and_an_opt_out_starts_none(tmp_path):
    home = tmp_path / "home"
    (home / ".ray-orch").mkdir(parents=True)
    stale = {"address": "127.0.0.1:9", "started_head": True, "session": 999999999}
    (home / ".ray-orch" / "runtime.json").write_text(json.dumps(stale))
    with StubLLMServer(reply="ok") as stub:
        try:
            off = subprocess.run([sys.executable, "-c", SCRIPT], cwd=home,
                                 env=_env(home, stub, RAY_ORCH_AUTO_RUNTIME="0"),
                                 capture_output=True, text=True, timeout=400)
            assert off.returncode == 0, off.stderr[-3000:]
            assert "standing runtime" not in off.stderr
            assert json.loads((home / ".ray-orch" / "runtime.json").read_text()) == stale
            result, err = _finish(_start(home, stub))
            assert "started a standing runtime" in err
            info = json.loads((home / ".ray-orch" / "runtime.json").read_text())
            assert info["address"] == result["address"] != stale["address"]
        finally:
            _cleanup(home)


def test_a_self_started_runtime_takes_submitted_runs_once_its_dashboard_is_up(tmp_path):
    """Its dashboard (job submission) starts after the head, beside the first run, at a
    lower CPU priority: ``ray-orch submit`` right after the first script waits for it."""
    home = tmp_path / "home"
    home.mkdir()
    with StubLLMServer(reply="ok") as stub:
        try:
            first, _ = _finish(_start(home, stub))
            info = json.loads((home / ".ray-orch" / "runtime.json").read_text())
            dashboard = [pid for pid in _pids_of(info["session"], b"dashboard.py")]
            assert dashboard and all(os.getpriority(os.PRIO_PROCESS, pid) > 0
                                     for pid in dashboard)
            # Its jobs' RAY_ADDRESS comes from here (else Ray greps ``ps`` for any GCS on
            # the machine: a job could run on another runtime).
            recorded = Path(info["temp_dir"]) / "ray" / "ray_current_cluster"
            assert recorded.read_text().strip() == info["address"]
            job = home / "job.py"
            job.write_text(SCRIPT.replace('os.environ["STUB_BASE"]', repr(stub.base_url)))
            env = _env(home, stub)
            submitted = subprocess.run([sys.executable, "-m", "ray_orch.cli", "submit",
                                        str(job)], cwd=ROOT, env=env, capture_output=True,
                                       text=True, timeout=300)
            assert submitted.returncode == 0, submitted.stderr[-3000:]
            run_id = submitted.stdout.strip().splitlines()[-1]
            attached = subprocess.run([sys.executable, "-m", "ray_orch.cli", "attach", run_id],
                                      cwd=ROOT, env=env, capture_output=True, text=True,
                                      timeout=400)
            assert f"run {run_id}: completed" in attached.stdout, attached.stdout[-3000:]
            info = json.loads((home / ".ray-orch" / "runtime.json").read_text())
            assert info["address"] == first["address"]
            assert info["dashboard_url"] and "dashboard" not in info["extra"]
        finally:
            _cleanup(home)


def _pids_of(session: int, marker: bytes) -> list[int]:
    """The session's processes whose command line holds ``marker``."""
    from ray_orch.api.standing import _session_pids

    found = []
    for pid in _session_pids(session):
        try:
            if marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found
