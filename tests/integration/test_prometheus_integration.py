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

from ray_orch.observe.metrics import dashboard_path, dashboard_queries

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.skipif(not PROMETHEUS.exists(), reason="prometheus binary not installed"),
]


WORKFLOW = "prom-test"  # the workflow that feed_run() runs


def feed_run(stub: Any, folder: Path) -> None:
    """Two real runs of a workflow against the stub that exercise every panel: a retry
    after a failed attempt, a fallback, a breaker, cache misses then hits, a decision,
    a tool call, pools and the scheduler; and beside each a run with memory (a recall,
    an add; kept in ``folder``) whose prompts match none of the stub's rules."""
    from ray_orch import Agent, CircuitBreaker, Memory, Process, Task
    from ray_orch.testing import StubLLMServer

    stub.latency = 0.05
    stub.add_rule(match="Fetch the numbers", fault="500", times=1)
    stub.add_rule(match=lambda r: "You are Writer" in r.prompt, fault="401")
    stub.add_rule(match="Route the report", reply="approve")

    def post_then_answer(request: Any) -> Any:
        if not request.tool_results:
            return StubLLMServer.tool_call("post_report", {"title": "numbers"})
        return "published"

    def post_report(title: str) -> str:
        """Post the report."""
        return f"posted {title}"

    stub.add_rule(match="Publish it", reply=post_then_answer)
    researcher = Agent(role="Researcher", goal="Research", llm=stub.llm, pool_size=2)
    writer = Agent(role="Writer", goal="Write", llm=stub.llm,
                   circuit_breaker=CircuitBreaker(name="prom-writer"))
    editor = Agent(role="Editor", goal="Edit", llm=stub.llm)
    tasks = {
        "fetch": Task(description="Fetch the numbers", agent=researcher, retry_delay=0.01,
                      cache_ttl=600),
        "loop": Task(description="Study part {item}", agent=researcher, task_type="loop",
                     loop_data=list(range(8)), context=["fetch"]),
        "draft": Task(description="Flaky primary draft", agent=writer, fallback_agent=editor,
                      context=["loop"]),
        "review": Task(description="Route the report", agent=editor, task_type="decision",
                       condition={"approve": ["publish"], "revise": ["draft"]},
                       context=["draft"]),
        "publish": Task(description="Publish it", agent=editor, tools=[post_report]),
    }
    memory = Memory(folder / "memory")
    memory.add("The numbers are reported every quarter", user_id="prom")
    archivist = Agent(role="Archivist", goal="Recall", llm=stub.llm)
    recall = {"when": Task(description="When are the figures due?", agent=archivist)}
    for _ in range(2):
        Process(tasks=tasks, agents=[researcher, writer, editor], name=WORKFLOW).workflow()
        Process(tasks=recall, agents=[archivist], name=WORKFLOW, memory=memory,
                user_id="prom").workflow()
        time.sleep(1.5)  # spread the runs over scrapes so rate() panels see increases


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


def test_every_dashboard_panel_returns_data(ray_session, stub, tmp_path):
    from actors.metrics_hub import get_metrics_hub

    _, url = get_metrics_hub()
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
        feed_run(stub, tmp_path)
        _wait_scraped(base, target, proc)
        missing = _wait_all_panels(base, deadline_s=60.0)
        assert not missing, "panels without data:\n" + "\n".join(
            f"  {title}: {expr}" for title, expr in missing)
        # The outcome labels the endpoint serves are the ones docs/METRICS.md names.
        documented = (ROOT / "docs" / "METRICS.md").read_text()
        for metric, label, doc in (
                ("rayorch_llm_request_duration_seconds_count", "success",
                 "by outcome (success or the error kind)"),
                ("rayorch_tool_calls_total", "ok", "by tool and outcome (ok or error)")):
            assert _query(base, f'{metric}{{outcome="{label}"}}'), metric
            assert doc in documented, doc
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
