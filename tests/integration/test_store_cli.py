"""The run store from the command line: ``ray-orch run FILE --resume [RUN]`` continues a
YAML workflow where it stopped, ``--store`` picks any store, ``runs --store`` lists it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ray_orch.cli import app
from ray_orch.store.factory import open_store

pytestmark = pytest.mark.usefixtures("ray_session")

YAML = """\
name: ledger
process: sequential
{store}
agents:
  clerk:
    role: Clerk
    goal: Keep the books
    llm: {{model: openai/stub, base_url: "${{STUB_BASE}}", api_key: sk-stub}}
tasks:
  tally:
    description: Tally the day's receipts
    agent: clerk
  post:
    description: Post the tally to the ledger
    agent: clerk
    context: [tally]
    max_retries: 0
"""


@pytest.mark.parametrize("where", ["file", "option"])
def test_a_yaml_workflow_resumes_from_the_command_line(tmp_path, stub, monkeypatch,
                                                       store_spec, where):
    if where == "file" and "://" in store_spec:
        pytest.skip("a YAML file's checkpoint_dir is a directory")
    monkeypatch.setenv("STUB_BASE", stub.base_url)
    monkeypatch.setenv("RAY_ORCH_PROGRESS", "0")
    path = tmp_path / "ledger.yaml"
    path.write_text(YAML.format(store=f"checkpoint_dir: {store_spec}" if where == "file"
                                else ""))
    option = ["--store", store_spec] if where == "option" else []
    stub.add_rule(match="Post the tally", fault="401")
    runner = CliRunner()
    failed = runner.invoke(app, ["run", str(path), "--json", *option])
    assert failed.exit_code == 1, failed.output
    stub.clear_rules()
    stub.add_rule(match="Post the tally", reply="posted")
    resumed = runner.invoke(app, ["run", str(path), "--json", "--resume", *option])
    assert resumed.exit_code == 0, resumed.output
    assert stub.count("Tally the day") == 1  # completed before: not asked again
    [record] = open_store(store_spec).list_runs("ledger")
    assert record.status == "completed"
    listed = runner.invoke(app, ["runs", "--store", store_spec])
    assert f"{record.run_id}  ledger  completed" in listed.stdout
    again = runner.invoke(app, ["run", str(path), "--resume", record.run_id, *option])
    assert again.exit_code == 0, again.output  # by id: nothing left to do
    assert stub.count("Post the tally") == 2


def test_resume_is_for_yaml_workflows(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text("print('hi')\n")
    result = CliRunner().invoke(app, ["run", str(script), "--resume"])
    assert result.exit_code == 2 and "apply to YAML workflows" in result.stderr
