"""A real Prometheus scrapes the MetricsHub; every panel query of the dashboard returns data.

Needs the Debian ``prometheus`` package (``/usr/bin/prometheus`` and ``promtool``).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from ray_orch._events import Event, EventKind
from ray_orch._metrics import dashboard_path, dashboard_queries

PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.skipif(not PROMETHEUS.exists(), reason="prometheus binary not installed"),
]


WORKFLOW = "prom-test"  # the workflow that feed_run() runs


def feed_run(hub: Any) -> None:
    """Produce one run's worth of events at the hub.

    This is the one piece to replace with a real workflow run against the stub LLM
    server (which reaches the same named hub through the Supervisor). Whatever replaces
    it must exercise every panel: a retry after a failed attempt, a fallback, a breaker
    state change, a cache lookup and a decision.
    """
    import ray

    now = time.time()
    workflow, run_id = WORKFLOW, "run-prom-1"

    def ev(kind: EventKind, dt: float, **kw: Any) -> dict[str, Any]:
        return Event(kind=kind, workflow=workflow, run_id=run_id, ts=now + dt,
                     **kw).model_dump(mode="json")

    events = [ev("run_started", 0.0, data={"tasks": 3})]
    for i, (task, role) in enumerate([("research", "Researcher"), ("write", "Writer"),
                                      ("review", "Editor")]):
        t = float(i)
        events += [
            ev("scheduler", t, data={"running": 1, "ready": 1, "waiting": 2 - i}),
            ev("task_ready", t, task=task),
            ev("cache", t, task=task, outcome="miss" if i else "hit"),
            ev("pool", t + 0.1, agent_role=role, data={"in_flight": 1, "queued": 1, "size": 2}),
            ev("task_started", t + 0.2, task=task, agent_role=role),
            ev("llm_call", t + 0.5, task=task, agent_role=role, model="openai/stub",
               duration_s=0.3 + i, tokens_prompt=120, tokens_completion=30, cost_usd=0.001),
            ev("task_finished", t + 0.9, task=task, agent_role=role, status="completed",
               duration_s=0.7 + i),
        ]
    events += [
        ev("attempt_failed", 3.0, task="write", agent_role="Writer", outcome="rate_limit"),
        ev("retry", 3.0, task="write", agent_role="Writer"),
        ev("breaker", 3.1, data={"state": "open", "breaker": "Writer"}),
        ev("fallback", 3.2, task="write", agent_role="Editor"),
        ev("decision", 3.3, task="review", data={"route": "approve"}),
        ev("task_finished", 3.4, task="publish", agent_role="Editor", status="failed",
           duration_s=0.2),
        ev("run_finished", 3.5, status="completed", duration_s=3.5),
    ]
    assert ray.get(hub.push.remote(events)) == len(events)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    data = _get_json(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert data["status"] == "success", data
    return data["data"]["result"]  # type: ignore[no-any-return]


def test_shipped_prometheus_config_is_valid():
    if not Path(PROMTOOL).exists():
        pytest.skip("promtool not installed")
    out = subprocess.run([PROMTOOL, "check", "config", str(dashboard_path("prometheus.yml"))],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_dashboard_panel_returns_data(ray_session, tmp_path):
    from actors.metrics_hub import get_metrics_hub

    hub, url = get_metrics_hub()
    target = urllib.parse.urlsplit(url).netloc

    config = yaml.safe_load(dashboard_path("prometheus.yml").read_text())
    config["scrape_configs"][0]["static_configs"][0]["targets"] = [target]
    assert config["global"]["scrape_interval"] == "1s"
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    check = subprocess.run([PROMTOOL, "check", "config", str(config_file)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [str(PROMETHEUS), f"--config.file={config_file}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(base, proc, tmp_path / "prometheus.log")
        feed_run(hub)
        _wait_scraped(base, target, proc)
        missing = _wait_all_panels(base, deadline_s=60.0)
        assert not missing, "panels without data:\n" + "\n".join(
            f"  {title}: {expr}" for title, expr in missing)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


def _wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prometheus exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(f"prometheus not ready after 30 s:\n{log.read_text()[-3000:]}")


def _wait_scraped(base: str, target: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    health: list[Any] = []
    while time.monotonic() < deadline and proc.poll() is None:
        targets = _get_json(f"{base}/api/v1/targets")["data"]["activeTargets"]
        health = [(t["scrapeUrl"], t["health"], t.get("lastError")) for t in targets]
        if any(t["health"] == "up" and target in t["scrapeUrl"] for t in targets) and _query(
                base, f'rayorch_tasks_total{{workflow="{WORKFLOW}"}}'):
            return
        time.sleep(0.25)
    pytest.fail(f"hub {target} never scraped: {health}")


def _wait_all_panels(base: str, deadline_s: float) -> list[tuple[str, str]]:
    """Poll until every panel query has a result (rate() needs two scrapes)."""
    queries = dashboard_queries()
    deadline = time.monotonic() + deadline_s
    missing = queries
    while time.monotonic() < deadline:
        missing = [(title, expr) for title, expr in missing if not _query(base, expr)]
        if not missing:
            break
        time.sleep(0.5)
    return missing
