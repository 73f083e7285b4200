"""The viewer's ``StoreSource`` over a run store written through the ``RunStore`` port
(no Ray), on SQLite and PostgreSQL: runs newest first with their states and counts, a
run's graph from its stored definition with statuses and the route taken, a task's
story, and typed refusals."""

from __future__ import annotations

import pytest

from ray_orch.core.approvals import ApprovalError, Approve
from ray_orch.core.errors import ResumeError, StoreError
from ray_orch.core.secrets import dsn_password
from ray_orch.engine.graph import build_graph, name_tasks
from ray_orch.policy.task import Task
from ray_orch.store.approvals import PauseStore
from ray_orch.store.checkpoint import definition_hash
from ray_orch.store.factory import open_store
from ray_orch.ui import source_for
from ray_orch.ui.source import RunSource
from ray_orch.ui.store_source import StoreSource

MARKUP = "<script>alert(1)</script> & <b>bold</b>"


def support_definition():
    tasks = {"read": Task(description="Read the ticket"),
             "triage": Task(description="Classify", context=["read"], task_type="decision",
                            condition={"billing": ["refund"], "technical": ["fix"]}),
             "refund": Task(description="Refund"), "fix": Task(description="Fix")}
    return build_graph(name_tasks(tasks), "workflow", has_default_agent=True,
                       needs_agents=False).definition()


@pytest.fixture
def source(store_spec):
    definition = support_definition()
    runs = open_store(store_spec)
    runs.begin_run("r1", "support", definition_hash(definition))
    runs.save_graph("r1", "support", definition)
    runs.save_task("r1", "read", {"raw": MARKUP, "task_id": "read",
                                  "metadata": {"execution_time": 0.5, "tokens_used": 12}})
    runs.save_task("r1", "triage", {"raw": "billing", "task_id": "triage",
                                    "metadata": {"decision": "billing"}})
    runs.save_decision("r1", "triage", 1, "billing")
    runs.save_task("r1", "refund", {"raw": "refunded", "task_id": "refund"})
    runs.finish_run("r1", "completed")
    runs.begin_run("r2", "blog", "abc")
    PauseStore(runs).ask("r2", {"id": "q1", "task": "draft",
                                  "output": {"raw": MARKUP, "task_id": "draft"}})
    runs.finish_run("r2", "paused")
    runs.close()
    found = StoreSource([store_spec])
    yield found
    found.close()


def test_runs_are_listed_newest_first_with_their_state_and_counts(source):
    assert isinstance(source, RunSource)
    paused, completed = source.list_runs()
    assert (paused.run_id, paused.state, paused.pending) == ("r2", "paused", 1)
    assert paused.requests == [{"id": "q1", "task": "draft", "preview": MARKUP}]
    assert paused.total is None and paused.ended is None  # no definition of it kept
    assert (completed.run_id, completed.state, completed.done, completed.total) == \
        ("r1", "completed", 3, 4)
    assert completed.ended is not None and completed.pending == 0 and not completed.live


def test_a_run_has_its_graph_statuses_and_the_route_taken(source):
    run = source.run("r1")
    assert run["state"] == "completed" and run["graph"]["known"]
    assert [n["id"] for n in run["graph"]["nodes"]] == ["read", "triage", "refund", "fix"]
    routes = {(e["src"], e["dst"], e["label"]) for e in run["graph"]["edges"]
              if e["kind"] == "route"}
    assert routes == {("triage", "refund", "billing"), ("triage", "fix", "technical")}
    assert run["routes"] == [["triage", "billing"]]
    statuses = {name: t["status"] for name, t in run["tasks"].items()}
    assert statuses == {"read": "completed", "triage": "completed", "refund": "completed",
                        "fix": "skipped"}
    assert run["tasks"]["read"]["seconds"] == 0.5 and run["tasks"]["read"]["tokens"] == 12
    assert run["actions"] == {"cancel": False, "resume": False}
    assert source.run("nope") is None


def test_a_paused_run_without_a_definition_shows_its_stored_tasks_and_request(source):
    run = source.run("r2")
    assert run["state"] == "paused" and not run["graph"]["known"]
    [request] = run["pending"]
    assert request["id"] == "q1" and request["output"]["raw"] == MARKUP  # data, unescaped
    assert run["tasks"]["draft"]["status"] == "paused"


def test_a_task_tells_its_story(source):
    story = source.task("r1", "triage")
    assert story["definition"]["description"] == "Classify"
    assert story["definition"]["type"] == "decision"
    [output] = story["outputs"]
    assert output["raw"] == "billing" and output["metadata"]["decision"] == "billing"
    assert source.task("r1", "read")["outputs"][0]["raw"] == MARKUP
    assert source.task("r1", "nope") is None


def test_what_cannot_be_done_is_refused_with_typed_errors(source):
    with pytest.raises(ApprovalError, match="no pending request 'q9'") as caught:
        source.answer("r2", "q9", Approve())
    assert caught.value.request_id == "q9"
    with pytest.raises(ApprovalError, match="no paused run 'r2'"):
        source.answer("r2", "q1", Approve())  # its definition was not kept with it
    with pytest.raises(ApprovalError, match="no run 'r9'"):
        source.answer("r9", "q1", Approve())
    with pytest.raises(ResumeError, match="only a failed or cancelled run"):
        source.resume("r1")
    assert source.cancel("r1") is False


def test_a_run_shows_where_it_is_stored_without_a_password(source):
    [where] = {row.where for row in source.list_runs()}
    assert where == source.run("r1")["where"]
    spec = source.specs[0]
    if "://" in spec:  # PostgreSQL: the DSN shown is the redacted one
        assert dsn_password(spec) not in where and ":***@" in where


def test_a_store_that_cannot_be_read_is_named(tmp_path):
    with pytest.raises(StoreError, match="unknown run store 'mysql://db/x'"):
        source_for(store="mysql://db/x")
    with pytest.raises(StoreError) as caught:  # named before the viewer serves
        source_for(store="postgresql://nobody:s3cret@127.0.0.1:1/runs")
    assert "s3cret" not in str(caught.value) and "127.0.0.1:1" in str(caught.value)
    with pytest.raises(ValueError, match="not both"):
        source_for(str(tmp_path), "sqlite:///x")
    found = source_for(store=f"sqlite://{tmp_path}")
    assert found.list_runs() == []
    found.close()
    assert not (tmp_path / "ray_orch.sqlite").exists()  # a viewer creates no store
