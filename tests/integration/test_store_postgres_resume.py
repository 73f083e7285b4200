"""The run store on PostgreSQL, as a cluster uses it: a driver killed (its whole process
group, its private Ray with it) right after a journaled tool ran is resumed from another
directory and HOME, and the tool does not run again; a bad DSN is a typed error before
Ray starts, and the DSN's password shows nowhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ray_orch.store.factory import open_store
from ray_orch.testing import StubLLMServer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
pytestmark = pytest.mark.slow


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_ORCH_STORE")}
    env.update(HOME=str(home), PYTHONPATH=f"{HERE}{os.pathsep}{ROOT}",
               RAY_ORCH_PROGRESS="0")
    return env


def _script(stub: StubLLMServer) -> None:
    def reply(request):
        if "Report the charge" in request.prompt:
            return "reported"
        if not request.tool_results:
            return StubLLMServer.tool_call("record_charge", {
                "amount": 42, "ledger": request.prompt.split("ledger ")[1].split()[0]})
        return "charged"
    stub.reply = reply


def test_a_killed_driver_resumes_from_postgres_without_running_the_tool_again(
        tmp_path, postgres_dsn, postgres_server):
    ledger = tmp_path / "ledger.txt"
    first_home, other_home = tmp_path / "home1", tmp_path / "home2"
    first_dir, other_dir = tmp_path / "cwd1", tmp_path / "cwd2"
    for folder in (first_home, other_home, first_dir, other_dir):
        folder.mkdir()
    run_id = "billing-1"
    store = open_store(postgres_dsn)
    with StubLLMServer() as stub:
        _script(stub)
        # The model's turn after the charge hangs: the driver is killed while it waits.
        stub.add_rule(match=lambda r: bool(r.tool_results), latency=120, times=1)
        driver = [sys.executable, str(HERE / "store_resume_driver.py"), stub.base_url,
                  postgres_dsn, run_id, str(ledger)]
        proc = subprocess.Popen(driver, cwd=first_dir, env=_env(first_home),
                                start_new_session=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            started = time.monotonic()
            while not (ledger.exists() and store.tool_calls(run_id)):
                assert proc.poll() is None, proc.stdout.read()[-3000:]
                assert time.monotonic() - started < 240, "the tool never ran"
                time.sleep(0.1)
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and its private Ray
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            first_log = proc.communicate()[0]
        assert ledger.read_text().splitlines() == ["42"]
        assert store.get_run(run_id).status == "running"  # killed, not finished
        assert store.load_tasks(run_id) == {}

        # Another directory and HOME: nothing of the first driver's is there.
        resumed = subprocess.run([*driver, "resume"], cwd=other_dir, env=_env(other_home),
                                 capture_output=True, text=True, timeout=400,
                                 start_new_session=True)
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert ledger.read_text().splitlines() == ["42"]  # the side effect happened once
    outputs, calls = (json.loads(line) for line in resumed.stdout.strip().splitlines()[-2:])
    assert outputs == {"charge": "charged", "report": "reported"}
    assert [(c["name"], c["replayed"]) for c in calls] == [("record_charge", True)]
    assert store.get_run(run_id).status == "completed"
    # Its state came from the database alone: no store of its own in cwd or HOME.
    assert not list(other_dir.iterdir()) and not (other_home / ".ray-orch").exists()
    for text in (first_log, resumed.stdout, resumed.stderr):
        assert postgres_server.password not in text
    listed = subprocess.run([sys.executable, "-m", "ray_orch.cli", "runs", "--store",
                             postgres_dsn], capture_output=True, text=True, timeout=120,
                            cwd=other_dir, env=_env(other_home))
    assert listed.returncode == 0, listed.stderr
    assert f"{run_id}  billing  completed" in listed.stdout
    assert postgres_server.password not in listed.stdout + listed.stderr


@pytest.mark.parametrize("what", ["wrong password", "no server", "not a dsn"])
def test_a_bad_dsn_is_a_store_error_before_ray_starts(tmp_path, postgres_server, what):
    good = postgres_server.dsn
    secret = "hunter2-" + postgres_server.password
    bad = {"wrong password": good.replace(postgres_server.password, secret),
           "no server": f"postgresql://ray_orch:{secret}@127.0.0.1:1/ray_orch",
           "not a dsn": f"postgresql://ray_orch:{secret}@127.0.0.1:99999999/x?sslmode=bogus"
           }[what]
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sys, logging\n"
        "logging.basicConfig(level=logging.DEBUG)\n"
        "import ray\n"
        "from ray_orch import Agent, Process, StoreError, Task\n"
        "llm = {'model': 'openai/stub', 'base_url': 'http://127.0.0.1:9', 'api_key': 'x'}\n"
        "a = Agent(role='A', goal='g', llm=llm)\n"
        "p = Process(tasks={'t': Task(description='d', agent=a)}, agents=[a], store=sys.argv[1])\n"
        "try:\n"
        "    p.workflow()\n"
        "except StoreError as exc:\n"
        "    print('STORE_ERROR', exc.store, '|', exc)\n"
        "    print('RAY', ray.is_initialized())\n")
    done = subprocess.run([sys.executable, str(probe), bad], capture_output=True, text=True,
                          timeout=120, env=_env(tmp_path), cwd=tmp_path)
    out = done.stdout + done.stderr
    assert "STORE_ERROR postgresql://ray_orch:***@" in done.stdout, out[-3000:]
    assert "RAY False" in done.stdout, out[-3000:]  # refused before Ray started
    assert secret not in out and postgres_server.password not in out
    cli = subprocess.run([sys.executable, "-m", "ray_orch.cli", "runs", "--store", bad],
                         capture_output=True, text=True, timeout=120, env=_env(tmp_path))
    assert cli.returncode == 1 and "error: the run store postgresql://ray_orch:***@" in \
        cli.stderr, cli.stderr
    assert secret not in cli.stdout + cli.stderr
