"""The standing runtime, end to end: ``ray-orch up`` starts a real ``ray start --head`` on
127.0.0.1 (in a temp dir, through ``RAY_ORCH_RUNTIME_FILE``), driver scripts run as
processes of their own against it, and ``ray-orch down`` stops it.

Not the shared ``ray_session``: every driver here is a separate process, as a user's
scripts are. The model is the StubLLMServer in this process; its request log counts
what each task asked.
"""

from __future__ import annotations

import json
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


_env = standing_env
_cli = standing_cli


def _drive(runtime: Path, stub: StubLLMServer, **extra: str) -> dict:
    done = subprocess.run([PY, str(DRIVER)], env=_env(runtime, STUB_BASE=stub.base_url,
                                                      **extra),
                          cwd=runtime.parent, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    """``ray-orch up`` in a temp dir; ``ray-orch down`` after, checked to leave nothing."""
    runtime = tmp_path_factory.mktemp("standing") / "runtime.json"
    with standing_runtime(runtime) as info:
        assert info["address"].startswith("127.0.0.1:") and info["started_head"]
        yield runtime
    viewer = info.get("extra", {}).get("viewer_pid")
    assert viewer is None or not _alive(viewer), "`ray-orch down` left the run viewer"
    assert not runtime.exists()
    assert not Path(info["temp_dir"]).exists()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def stub():
    with StubLLMServer(reply="ok", latency=0.05) as server:
        yield server


def test_a_second_script_reuses_the_first_scripts_agent_processes(runtime, stub):
    first = _drive(runtime, stub)
    second = _drive(runtime, stub)
    # A changed model option (temperature) travels with the work: no new process.
    third = _drive(runtime, stub, TEMPERATURE="0.7")
    assert set(first["replies"].values()) == {"ok"} and len(first["replies"]) == 7
    assert set(second["pids"].values()) <= set(first["pids"].values())
    assert set(third["pids"].values()) <= set(first["pids"].values())
    status = _cli(runtime, "status", "--json")
    assert status.returncode == 0, status.stderr[-2000:]
    report = json.loads(status.stdout)
    members = {row["pid"] for row in report["registry"]["actors"] if row["kind"] == "member"}
    assert set(first["pids"].values()) <= members


def test_a_supervisor_kept_by_a_script_that_shut_ray_down_goes_back_to_the_runtime(
        runtime, stub, tmp_path):
    # A script keeps its Supervisor a while after a run (its next run leases none); one
    # that ends its Ray connection without giving it back (ray.shutdown(), a crash)
    # leaves it to the runtime's registry, which takes it back, idle, for other scripts.
    script = tmp_path / "shutdown.py"
    script.write_text(
        "import time\n"
        "import ray\n"
        "import standing_driver\n"
        "process = standing_driver.w2()\n"
        "process.workflow()\n"
        "print(process._supervisor._actor_id.hex(), flush=True)\n"
        "ray.shutdown()\n"
        "print('down', flush=True)\n"
        "time.sleep(300)\n")
    driver = subprocess.Popen([PY, str(script)], env=_env(runtime, STUB_BASE=stub.base_url),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        supervisor = driver.stdout.readline().strip()
        assert driver.stdout.readline().strip() == "down", driver.stderr.read()[-3000:]
        deadline = time.monotonic() + 120
        while True:
            status = _cli(runtime, "status", "--json")
            assert status.returncode == 0, status.stderr[-2000:]
            rows = [row for row in json.loads(status.stdout)["registry"]["actors"]
                    if row["actor_id"] == supervisor]
            if rows and rows[0]["state"] == "idle":
                break
            assert time.monotonic() < deadline, f"still held: {rows}"
            time.sleep(0.5)
        assert driver.poll() is None  # (its process lives on; its Ray job ended)
    finally:
        driver.kill()
        driver.communicate()


def test_a_submitted_run_completes_after_its_driver_exited(runtime, stub, tmp_path):
    script = tmp_path / "detached.py"
    script.write_text(
        "import standing_driver\n"
        "run = standing_driver.w2().workflow(detach=True)\n"
        "print(run.run_id)\n")
    done = subprocess.run([PY, str(script)], env=_env(runtime, STUB_BASE=stub.base_url),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = done.stdout.strip().splitlines()[-1]
    # The submitting driver has exited; the run goes on and stores its results.
    os.environ["RAY_ORCH_RUNTIME_FILE"] = str(runtime)
    try:
        from ray_orch.api.jobs import DetachedRun

        outputs = DetachedRun(run_id).result(timeout=240)
    finally:
        del os.environ["RAY_ORCH_RUNTIME_FILE"]
    assert {k: v.raw for k, v in outputs.items()} == {k: "ok" for k in (
        "plan", "facts1", "facts2", "facts3", "analyse", "draft", "edit")}
    listed = _cli(runtime, "runs")
    assert f"{run_id}  completed" in listed.stdout


def test_ray_orch_submit_runs_a_script_and_attach_prints_its_results(runtime, stub, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(DRIVER.read_text().replace('os.environ["STUB_BASE"]',
                                                 repr(stub.base_url)))
    submitted = _cli(runtime, "submit", str(script))
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    run_id = submitted.stdout.strip().splitlines()[-1]
    attached = _cli(runtime, "attach", run_id, timeout=300)
    assert attached.returncode == 0, attached.stdout[-3000:] + attached.stderr[-3000:]
    assert f"run {run_id}: completed" in attached.stdout
    assert "  edit: completed  ok" in attached.stdout


def test_the_supervisor_killed_mid_run_and_the_run_completes(runtime, tmp_path):
    steps = 8
    pid_file = tmp_path / "supervisor.pid"
    with StubLLMServer(reply="ok", latency=0.4) as slow:
        driver = subprocess.Popen(
            [PY, str(DRIVER)], env=_env(runtime, STUB_BASE=slow.base_url,
                                        SHAPE=f"chain:{steps}", PID_FILE=str(pid_file)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 180
            while slow.count() < 3 or not pid_file.exists():
                assert driver.poll() is None, driver.communicate()[1][-3000:]
                assert time.monotonic() < deadline, "the run never got going"
                time.sleep(0.02)
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
            asked_before = slow.count()
            out, err = driver.communicate(timeout=240)
        finally:
            driver.kill()
        assert driver.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result["replies"] == {f"step{i}": "ok" for i in range(steps)}
        counts = [slow.count(f"[step{i}]") for i in range(steps)]
    # Steps completed before the kill (all but the one in flight) were asked once; the
    # one in flight at most twice; nothing else twice.
    assert all(c == 1 for c in counts[:asked_before - 1]), counts
    assert all(1 <= c <= 2 for c in counts) and sum(counts) <= steps + 1, counts


def test_a_submitted_yaml_workflow_runs_and_a_slow_run_can_be_cancelled(runtime, stub,
                                                                        tmp_path):
    workflow = tmp_path / "desk.yaml"
    workflow.write_text(f"""\
name: desk
process: workflow
agents:
  support:
    role: Support
    goal: Handle inquiries
    llm: {{model: openai/stub, base_url: "{stub.base_url}", api_key: sk-stub}}
tasks:
  answer:
    description: Answer the customer
    agent: support
""")
    submitted = _cli(runtime, "submit", str(workflow))
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    run_id = submitted.stdout.strip().splitlines()[-1]
    attached = _cli(runtime, "attach", run_id, timeout=300)
    assert f"run {run_id}: completed" in attached.stdout, attached.stdout[-3000:]
    assert "  answer: completed  ok" in attached.stdout

    with StubLLMServer(reply="ok", latency=2.0) as slow:
        script = tmp_path / "slow.py"
        script.write_text(DRIVER.read_text().replace('os.environ["STUB_BASE"]',
                                                     repr(slow.base_url)).replace(
            'os.environ.get("SHAPE", "w2")', '"chain:30"'))
        run_id = _cli(runtime, "submit", str(script)).stdout.strip().splitlines()[-1]
        deadline = time.monotonic() + 180
        while slow.count() == 0:  # it is running: it asked the model
            assert time.monotonic() < deadline, "the submitted run never started"
            time.sleep(0.1)
        cancelled = _cli(runtime, "cancel", run_id)
        assert f"{run_id}: cancelled" in cancelled.stdout, cancelled.stderr[-2000:]
        deadline = time.monotonic() + 120
        while f"{run_id}  cancelled" not in _cli(runtime, "runs").stdout:
            assert time.monotonic() < deadline, "the cancelled run did not stop"
            time.sleep(1)
        asked = slow.count()
        time.sleep(3)
        assert slow.count() <= asked + 1  # nothing more is asked once it stopped


def test_up_serves_the_run_viewer_over_the_runtimes_journal(runtime, stub):
    import http.client
    from urllib.parse import urlsplit

    _drive(runtime, stub)
    url = json.loads(runtime.read_text())["extra"]["viewer_url"]
    status = _cli(runtime, "status")
    assert f"runs:      {url}" in status.stdout
    address = urlsplit(url)
    assert address.hostname == "127.0.0.1"

    def get(path: str, headers: dict[str, str]) -> tuple[int, str]:
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    assert get("/api/runs", {})[0] == 401
    token = dict(p.split("=", 1) for p in address.query.split("&"))["token"]
    code, body = get("/api/runs", {"Cookie": f"rayorch_ui_{address.port}={token}"})
    assert code == 200, body
    runs = json.loads(body)
    # Newest first: this test's own run (earlier tests' runs share the runtime's journal).
    assert runs and runs[0]["state"] == "completed", runs[:3]
    code, body = get(f"/api/runs/{runs[0]['run_id']}",
                     {"Cookie": f"rayorch_ui_{address.port}={token}"})
    snapshot = json.loads(body)
    assert snapshot["graph"]["known"] and snapshot["graph"]["nodes"]


OTHER_USER = "rayorch-redteam"


def _as_other_user(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in Python as a second local user, made for the test (as the red team
    did): a user of this machine who must read nothing of the runtime's and run nothing
    on it."""
    if subprocess.run(["id", OTHER_USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        OTHER_USER], check=True, capture_output=True)
    # The system's Python: this user cannot reach ours (it may live under /root).
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else PY
    return subprocess.run(["runuser", "-u", OTHER_USER, "--", python, "-c", code],
                          capture_output=True, text=True, timeout=120, cwd="/",
                          env={"PATH": os.environ["PATH"], "HOME": "/nonexistent",
                               "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a second local user")
def test_another_local_user_can_read_nothing_and_submit_nothing(runtime, stub, tmp_path):
    _drive(runtime, stub)  # a run's outputs are in the job logs and state now
    info = json.loads(runtime.read_text())
    state, temp = runtime.parent, Path(info["temp_dir"])
    from ray._private.authentication.authentication_token_setup import (
        _get_default_token_path,
    )

    token = _get_default_token_path()
    private = {state: 0o700, runtime: 0o600, state / "ray-start.log": 0o600, temp: 0o700}
    if info.get("auth_mode") == "token":
        private.update({token: 0o600, token.parent: 0o700})
    for path, mode in private.items():
        assert path.stat().st_mode & 0o777 == mode, f"{path}: {oct(path.stat().st_mode)}"
    # Everything under the state dir is this user's alone.
    for path in state.rglob("*"):
        assert path.stat().st_mode & 0o077 == 0, f"{path}: {oct(path.stat().st_mode)}"
    logs = [str(p) for p in temp.glob("ray/session_*/logs/*")]
    assert logs, "the session's logs are not where this test looks"
    paths = [str(p) for p in private] + logs[:20]
    read = _as_other_user(
        "import json, sys\n"
        "got = []\n"
        f"for p in {paths!r}:\n"
        "    try:\n"
        "        open(p, 'rb').read(1); got.append(p)\n"
        "    except OSError:\n"
        "        pass\n"
        "print(json.dumps(got))\n")
    assert read.returncode == 0, read.stderr[-2000:]
    assert json.loads(read.stdout) == []
    # Without the token, the Job API refuses a submission (the job would run as us).
    # Without the token, the Job API refuses a submission (the job would run as us): the
    # request Ray's JobSubmissionClient sends, from plain urllib.
    submit = _as_other_user(
        "import json, urllib.request, urllib.error\n"
        f"url = {info['dashboard_url']!r} + '/api/jobs/'\n"
        "body = json.dumps({'entrypoint': 'touch /tmp/rayorch-redteam-pwned'}).encode()\n"
        "request = urllib.request.Request(url, data=body, method='POST',\n"
        "                                 headers={'Content-Type': 'application/json'})\n"
        "try:\n"
        "    print(urllib.request.urlopen(request, timeout=30).status)\n"
        "except urllib.error.HTTPError as exc:\n"
        "    print(exc.code)\n")
    assert submit.returncode == 0, submit.stderr[-2000:]
    assert int(submit.stdout.strip()) in (401, 403), submit.stdout
    assert not Path("/tmp/rayorch-redteam-pwned").exists()


def test_a_submitted_yaml_takes_the_variables_it_names_from_the_submitting_shell(
        runtime, stub, tmp_path):
    # The runtime started before these were set (red team, round 3: the job failed and
    # `logs` said completed).
    workflow = tmp_path / "vars.yaml"
    workflow.write_text("""\
name: vars
process: workflow
agents:
  support:
    role: Support
    goal: Handle inquiries
    llm: {model: openai/stub, base_url: "${RAYORCH_JOB_STUB}", api_key: "${RAYORCH_JOB_KEY}"}
tasks:
  answer:
    description: Answer the customer from the variables
    agent: support
""")
    env = _env(runtime, RAYORCH_JOB_STUB=stub.base_url, RAYORCH_JOB_KEY="sk-job-0123456789")
    submitted = subprocess.run([PY, "-m", "ray_orch.cli", "submit", str(workflow)], env=env,
                               cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    run_id = submitted.stdout.strip().splitlines()[-1]
    attached = _cli(runtime, "attach", run_id, timeout=300)
    assert f"run {run_id}: completed" in attached.stdout, attached.stdout[-3000:]
    assert stub.count("Answer the customer from the variables") == 1
    # A variable set nowhere is a typed error naming it, before anything is submitted.
    before = _cli(runtime, "runs").stdout
    unset = _cli(runtime, "submit", str(workflow))
    assert unset.returncode != 0
    assert "RAYORCH_JOB_STUB" in unset.stdout + unset.stderr
    assert _cli(runtime, "runs").stdout.count("vars.yaml") == before.count("vars.yaml")
