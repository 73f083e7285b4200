"""The ``ray-orch`` command: exit codes, messages on stderr, and runs against the stub.

Commands run in-process through typer's CliRunner, so runs reuse the shared Ray session;
one subprocess test checks the installed entry point (``validate``: no Ray, no model).
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
from cli_output import json_report
from typer.testing import CliRunner

from ray_orch.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "customer_service.yaml"

STUB_YAML = """\
name: support-desk
process: workflow
agents:
  support:
    role: Support
    goal: Handle inquiries
    llm: {model: openai/stub, base_url: "${STUB_BASE}", api_key: sk-stub}
  billing:
    role: Billing
    goal: Handle payments
    llm: {model: openai/stub, base_url: "${STUB_BASE}", api_key: sk-stub}
tasks:
  categorize:
    description: Categorize customer inquiry
    agent: support
    task_type: decision
    validation_steps: 0
    condition: {billing: [billing_support], simple: [quick_response]}
  billing_support:
    description: Handle billing inquiry
    agent: billing
    next_tasks: [send_confirmation]
  quick_response:
    description: Send automated response
    agent: support
    next_tasks: [send_confirmation]
  send_confirmation:
    description: Send resolution confirmation
    agent: support
"""

DRIVER = """\
from ray_orch import Agent, Process, Task

llm = {llm!r}
writer = Agent(role="Writer", goal="Write", llm=llm)
tasks = {{
    "draft": Task(description="Draft a haiku about Ray", agent=writer),
    "polish": Task(description="Polish the haiku", agent=writer, context={context!r}),
}}
results = Process(tasks=tasks, agents=[writer], name="haiku").sequential()
print("DRIVER SAYS", repr(results["polish"].raw))
"""


@pytest.fixture
def runner():
    return CliRunner()


def write(tmp_path, text, name):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def driver(tmp_path, llm, context=("draft",)):
    return write(tmp_path, DRIVER.format(llm=llm, context=list(context)), "driver.py")


# -- validate --------------------------------------------------------------------------------


def test_validate_the_example(runner):
    result = runner.invoke(app, ["validate", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "ok:" in result.stdout and "6 tasks" in result.stdout
    assert "starts: categorize" in result.stdout


def test_validate_reports_the_line_and_exits_2(runner, tmp_path):
    bad = write(tmp_path, EXAMPLE.read_text().replace("agent: billing", "agent: biling"),
                "bad.yaml")
    line = next(i for i, text in enumerate(bad.read_text().splitlines(), 1)
                if "agent: biling" in text)
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {bad}:{line}: tasks.billing_support.agent: "
                                    "unknown agent 'biling' (did you mean 'billing'?)")
    assert "Traceback" not in result.output


def test_validate_a_driver_script_runs_nothing(runner, tmp_path, stub):
    path = driver(tmp_path, stub.llm)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "ok:" in result.stdout and "'haiku' (sequential): 2 tasks" in result.stdout
    assert "DRIVER SAYS ''" in result.stdout  # the script went on with placeholders
    assert stub.requests == []  # no model call


def test_validate_a_broken_driver_script(runner, tmp_path, stub):
    path = driver(tmp_path, stub.llm, context=["drafft"])
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "error: task 'polish': context names unknown task 'drafft'" in result.stderr
    assert stub.requests == []


def test_usage_errors_exit_2(runner, tmp_path):
    notes = write(tmp_path, "hello", "notes.txt")
    result = runner.invoke(app, ["validate", str(notes)])
    assert result.exit_code == 2
    assert "expected a .yaml/.yml workflow or a .py driver script" in result.stderr
    assert runner.invoke(app, ["validate", str(tmp_path / "missing.yaml")]).exit_code == 2
    result = runner.invoke(app, ["run", str(driver(tmp_path, "x/y")), "--mode", "workflow"])
    assert result.exit_code == 2 and "--mode applies to YAML" in result.stderr


def test_the_installed_command(tmp_path):
    exe = Path(sys.executable).with_name("ray-orch")
    result = subprocess.run([str(exe), "validate", str(EXAMPLE)], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok: {EXAMPLE}")


# -- graph ----------------------------------------------------------------------------------


def test_graph_mermaid_to_stdout(runner):
    result = runner.invoke(app, ["graph", str(EXAMPLE), "--format", "mermaid"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("flowchart LR\n")
    assert "categorize -- billing --> billing_support" in result.stdout
    assert "escalate -.-> send_confirmation" in result.stdout


def test_graph_png_and_of_a_driver(runner, tmp_path, stub):
    out = tmp_path / "pic.png"
    result = runner.invoke(app, ["graph", str(EXAMPLE), "-f", "png", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000

    result = runner.invoke(app, ["graph", str(driver(tmp_path, stub.llm))])
    assert result.exit_code == 0, result.output
    assert "draft --> polish" in result.stdout and "DRIVER SAYS" not in result.stdout
    assert stub.requests == []


# -- run ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("ray_session")
def test_run_a_yaml_workflow_against_the_stub(runner, tmp_path, stub, monkeypatch):
    monkeypatch.setenv("STUB_BASE", stub.base_url)
    monkeypatch.setenv("RAY_ORCH_PROGRESS", "0")
    stub.add_rule(match="Categorize customer inquiry", reply="billing")
    stub.add_rule(match="Handle billing inquiry", reply="Refund issued for the double charge.")
    path = write(tmp_path, STUB_YAML, "desk.yaml")

    result = runner.invoke(app, ["run", str(path), "--no-progress"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("support-desk (workflow) run ") and lines[0].endswith("completed")
    row = next(line for line in lines if line.strip().startswith("billing_support"))
    assert "completed" in row and "Refund issued for the double charge." in row
    assert " s " in row  # its execution time
    assert "-> billing" in next(line for line in lines if "categorize" in line)
    assert "skipped" in next(line for line in lines if "quick_response" in line)

    stub.clear()
    result = runner.invoke(app, ["run", str(path), "--json", "--mode", "workflow"])
    assert result.exit_code == 0, result.output
    report = json_report(result.stdout)
    assert report["status"] == "completed"
    (run,) = report["runs"]
    assert run["tasks"]["categorize"]["decision"] == "billing"
    assert run["tasks"]["billing_support"]["output"] == "Refund issued for the double charge."
    assert run["tasks"]["quick_response"]["status"] == "skipped"
    assert run["tasks"]["send_confirmation"]["execution_time"] >= 0


@pytest.mark.usefixtures("ray_session")
def test_a_failed_run_exits_1_with_the_error(runner, tmp_path, stub, monkeypatch):
    monkeypatch.setenv("STUB_BASE", stub.base_url)
    stub.add_rule(match="Categorize customer inquiry", reply="weather")
    path = write(tmp_path, STUB_YAML, "desk.yaml")

    result = runner.invoke(app, ["run", str(path), "--json", "--no-progress"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "categorize" in result.stderr
    report = json_report(result.stdout)
    assert report["status"] == "failed" and "categorize" in report["error"]
    assert report["runs"][0]["tasks"]["categorize"]["status"] == "failed"


@pytest.mark.usefixtures("ray_session")
def test_run_a_driver_script(runner, tmp_path, stub, monkeypatch):
    monkeypatch.setenv("RAY_ORCH_PROGRESS", "0")
    stub.add_rule(match="Polish the haiku", reply="Actors hum softly")
    result = runner.invoke(app, ["run", str(driver(tmp_path, stub.llm)), "--json"])
    assert result.exit_code == 0, result.output
    assert "DRIVER SAYS 'Actors hum softly'" in result.stderr  # kept off the JSON
    report = json_report(result.stdout)
    assert report["runs"][0]["mode"] == "sequential"
    assert report["runs"][0]["tasks"]["polish"]["output"] == "Actors hum softly"


def test_interrupt_exits_130_and_script_errors_exit_1(runner, tmp_path):
    stop = write(tmp_path, "raise KeyboardInterrupt\n", "stop.py")
    result = runner.invoke(app, ["run", str(stop)])
    assert result.exit_code == 130 and result.stderr.startswith("error: interrupted")
    boom = write(tmp_path, "import json\njson.loads('{')\n", "boom.py")
    result = runner.invoke(app, ["run", str(boom)])
    assert result.exit_code == 1
    assert "boom.py raised JSONDecodeError" in result.stderr
    assert "Traceback" not in result.output


# -- demo -----------------------------------------------------------------------------------


def test_demo_calls_the_demo_module_with_its_options(runner, monkeypatch):
    called = []

    def main(argv=None):
        called.append(argv)
        return 3 if "--fail" in argv else 0

    fake = types.ModuleType("ray_orch.demo")
    fake.main = main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray_orch.demo", fake)
    import ray_orch

    monkeypatch.setattr(ray_orch, "demo", fake, raising=False)
    result = runner.invoke(app, ["demo", "--inquiry", "2"])
    assert result.exit_code == 0, result.output
    assert called == [["--inquiry", "2"]]
    assert runner.invoke(app, ["demo", "--fail"]).exit_code == 3


def test_help_lists_the_commands(runner):
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "validate", "graph", "demo"):
        assert command in result.stdout
