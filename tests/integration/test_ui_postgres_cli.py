"""``ray-orch ui --store postgresql://...`` as a user starts it, on a real PostgreSQL
server: the runs of the database are served (the store shown without its password), and
a DSN that cannot be reached is one error line naming it, password hidden, before
anything is served."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

from ray_orch.core.secrets import dsn_password
from ray_orch.store.factory import open_store

ROOT = Path(__file__).resolve().parents[2]


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "HOME": str(home),
           "RAY_ORCH_RUNTIME_FILE": str(home / ".ray-orch" / "runtime.json"),
           "RAY_ORCH_AUTO_RUNTIME": "0"}
    env.pop("RAY_ADDRESS", None)
    return env


def _first_line(process: subprocess.Popen, timeout: float) -> str:
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.append(process.stdout.readline()))
    reader.start()
    reader.join(timeout)
    assert found and found[0], "ray-orch ui printed nothing"
    return found[0].strip()


def test_ray_orch_ui_serves_the_runs_of_a_postgres_store(postgres_dsn, tmp_path):
    store = open_store(postgres_dsn, check=True)
    store.begin_run("r-pg", "support", "abc")
    store.save_graph("r-pg", "support", {"mode": "workflow", "tasks": {"read": {},
                                                                        "reply": {}}})
    store.save_task("r-pg", "read", {"raw": "ticket", "task_id": "read"})
    store.finish_run("r-pg", "failed")
    store.close()
    server = subprocess.Popen([sys.executable, "-m", "ray_orch.cli", "ui", "--store",
                               postgres_dsn], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT, env=_env(tmp_path / "home"))
    try:
        url = _first_line(server, 120)
        token = url.rpartition("token=")[2]
        base = url.partition("/?")[0]
        with urllib.request.urlopen(f"{base}/api/runs?token={token}", timeout=60) as answer:
            [row] = json.loads(answer.read())
        assert (row["run_id"], row["state"], row["done"], row["total"]) == \
            ("r-pg", "failed", 1, 2)
        assert ":***@" in row["where"] and dsn_password(postgres_dsn) not in row["where"]
    finally:
        server.send_signal(signal.SIGTERM)
        rest, errors = server.communicate(timeout=120)
    assert server.returncode == 0, errors[-3000:]
    assert dsn_password(postgres_dsn) not in rest + errors


def test_a_dsn_that_cannot_be_reached_is_named_without_its_password(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ray_orch.cli", "ui", "--store",
                           "postgresql://viewer:s3cret-pw@127.0.0.1:1/runs"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=_env(tmp_path / "home"))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: the run store postgresql://viewer:***@127.0.0.1:1/runs")
    assert "s3cret-pw" not in done.stderr
