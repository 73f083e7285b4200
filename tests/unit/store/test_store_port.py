"""The run store port on both backends: every table round trip, the schema's version,
runs started once under concurrency, private directories, authenticated definitions and
a DSN's password kept out of every message."""

from __future__ import annotations

import logging
import os
import pickle
import threading

import pytest

from ray_orch.core.errors import ResumeError, StoreError, StoreIntegrityError
from ray_orch.store.approvals import PauseStore
from ray_orch.store.definitions import KEY_ENV, sign
from ray_orch.store.factory import STORE_ENV, open_store, store_spec
from ray_orch.store.port import RunStore
from ray_orch.store.postgres import PostgresRunStore
from ray_orch.store.sqlite import SQLiteRunStore


@pytest.fixture
def store(store_spec):
    store = open_store(store_spec, check=True)
    yield store
    store.close()


@pytest.fixture
def private_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(KEY_ENV, raising=False)
    return home


def test_every_table_round_trips(store):
    assert isinstance(store, RunStore)
    key = ("r1", "pay", "v1", "charge", "args", 0)
    assert store.load_tool_call(key) is None
    store.save_tool_call(key, {"result": "charged 42"})
    assert store.load_tool_call(key) == {"result": "charged 42"}
    assert store.tool_calls("r1") == [{"result": "charged 42"}]
    store.save_request("r1", {"id": "q1", "task": "draft", "output": {"raw": "hi"}})
    store.save_request("r1", {"id": "q1", "task": "draft", "output": {"raw": "changed"}})
    assert [r["output"]["raw"] for r in store.pending_requests("r1")] == ["hi"]  # first kept
    store.save_answer("r1", "q1", {"answer": "approve"})
    assert store.pending_requests("r1") == [] and store.answers("r1") == {
        "q1": {"answer": "approve"}}
    store.save_definition("r1", workflow="w", mode="workflow", blob=b"\x00def", tag="t")
    assert store.load_definition("r1") == ("workflow", b"\x00def", "t")
    assert store.paused_runs() == []
    store.set_paused("r1", True)
    assert [r["run_id"] for r in store.paused_runs()] == ["r1"]
    store.set_paused("r1", False)
    assert store.paused_runs() == []
    store.save_result("job-1", {"status": "failed", "error": "boom"})
    assert store.load_result("job-1") == {"status": "failed", "error": "boom"}
    assert store.load_result("job-2") is None
    assert store.load_graph("r1") is None
    store.save_graph("r1", "w", {"mode": "workflow", "tasks": {"b": {}, "a": {"deps": ["b"]}}})
    graph = store.load_graph("r1")
    assert list(graph["tasks"]) == ["b", "a"] and graph["tasks"]["a"] == {"deps": ["b"]}
    assert store.schema_version() == 2
    copy = pickle.loads(pickle.dumps(store))  # as an actor receives it
    assert copy.load_tool_call(key) == {"result": "charged 42"}


def test_a_run_is_started_once_however_many_drivers_try(store):
    outcomes: list[str] = []

    def start() -> None:
        try:
            store.begin_run("same", "w", "hash", fresh=True)
            outcomes.append("started")
        except ResumeError:
            outcomes.append("refused")

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["refused"] * 5 + ["started"]
    assert store.begin_run("same", "w", "hash").resumed  # resuming it is fine


def test_a_kept_task_record_never_replaces_one_already_there(store):
    store.begin_run("r1", "w", "hash")
    store.save_task("r1", "draft", {"raw": "the member's"}, keep=True)
    assert store.load_task("r1", "draft")["raw"] == "the member's"
    store.save_task("r1", "draft", {"raw": "the Supervisor's"})
    store.save_task("r1", "draft", {"raw": "a late member's"}, keep=True)
    assert store.load_task("r1", "draft")["raw"] == "the Supervisor's"


def test_a_version_1_store_is_migrated_to_keep_run_graphs(tmp_path):
    import sqlite3

    from ray_orch.store.sql import schema_v1
    from ray_orch.store.sqlite import SQLITE_FILENAME

    folder = tmp_path / "v1"
    folder.mkdir(mode=0o700)
    conn = sqlite3.connect(folder / SQLITE_FILENAME)  # a store as ray-orch 1 left it
    for statement in schema_v1(real="REAL", blob="BLOB"):
        conn.execute(statement)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.execute("INSERT INTO runs VALUES ('old', 'w', 'h', 'completed', 1, 2)")
    conn.commit()
    conn.close()
    store = open_store(str(folder), check=True)
    assert store.schema_version() == 2 and store.get_run("old").status == "completed"
    assert store.load_graph("old") is None
    store.save_graph("old", "w", {"tasks": {"t": {}}})
    assert store.load_graph("old") == {"tasks": {"t": {}}}
    store.close()


def test_a_newer_schema_is_refused(store):
    with store._tx(write=True) as db:
        db.execute("INSERT INTO schema_version (version) VALUES (99)")
    store.close()
    with pytest.raises(StoreError, match=r"schema version 99.*upgrade ray-orch"):
        open_store(store.spec, check=True)


def test_store_spec_picks_store_then_checkpoint_dir_then_the_environment(monkeypatch):
    monkeypatch.setenv(STORE_ENV, "/from/env")
    assert store_spec("postgresql://db/x", None) == "postgresql://db/x"
    assert store_spec(None, "ckpt") == "ckpt"
    assert store_spec(None, None) == "/from/env"
    with pytest.raises(StoreError, match="not both"):
        store_spec("postgresql://u:pw@db/x", "ckpt")


def test_a_directory_others_may_write_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(StoreError, match="may be written by group and others"):
        open_store(shared)
    shared.chmod(0o770)
    with pytest.raises(StoreError, match="may be written by its group"):
        open_store(shared)
    shared.chmod(0o700)
    assert isinstance(open_store(shared), SQLiteRunStore)
    assert (shared / "ray_orch.sqlite").exists() is False  # opened lazily
    open_store(shared, check=True)
    assert oct((shared / "ray_orch.sqlite").stat().st_mode & 0o777) == "0o600"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory away needs root")
def test_a_directory_of_another_user_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(StoreError, match="belongs to uid 65534"):
        open_store(theirs)


def test_a_tampered_definition_is_refused_before_unpickling(tmp_path, private_home):
    pauses = PauseStore(open_store(tmp_path / "s"))
    blob = pickle.dumps({"tasks": ["a"]})
    pauses.keep_definition("r1", "w", "workflow", blob)
    assert pauses.spec("r1") == ("workflow", blob)
    key_file = private_home / ".ray-orch" / "store.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    _, _, tag = pauses.store.load_definition("r1")
    pauses.store.save_definition("r1", workflow="w", mode="workflow",
                                 blob=pickle.dumps({"tasks": ["evil"]}), tag=tag)
    with pytest.raises(StoreIntegrityError, match=r"run 'r1'.*failed its authentication"):
        pauses.spec("r1")
    # A forged tag needs the key: one made with another key is refused too.
    forged = sign(b"x" * 32, run_id="r1", mode="workflow", blob=blob)
    pauses.store.save_definition("r1", workflow="w", mode="workflow", blob=blob, tag=forged)
    with pytest.raises(StoreIntegrityError):
        pauses.spec("r1")


def test_a_key_file_others_may_read_is_refused(tmp_path, private_home):
    pauses = PauseStore(open_store(tmp_path / "s"))
    pauses.keep_definition("r1", "w", "workflow", b"blob")
    (private_home / ".ray-orch" / "store.key").chmod(0o644)
    with pytest.raises(StoreError, match="readable by it alone"):
        pauses.spec("r1")


def test_the_environment_key_signs_for_every_node(tmp_path, monkeypatch, private_home):
    monkeypatch.setenv(KEY_ENV, "a shared cluster key")
    pauses = PauseStore(open_store(tmp_path / "s"))
    pauses.keep_definition("r1", "w", "workflow", b"blob")
    assert not (private_home / ".ray-orch").exists()
    assert pauses.spec("r1") == ("workflow", b"blob")
    monkeypatch.setenv(KEY_ENV, "another key")
    with pytest.raises(StoreIntegrityError):
        pauses.spec("r1")


def test_a_dsn_password_shows_in_no_error_repr_or_log(postgres_server, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "hunter2-" + postgres_server.password
    for dsn in (postgres_server.dsn.replace(postgres_server.password, secret),
                f"postgresql://ray_orch:{secret}@127.0.0.1:1/ray_orch"):
        store = PostgresRunStore(dsn, connect_timeout_s=3)
        assert secret not in repr(store) + store.location
        with pytest.raises(StoreError) as caught:
            store.check()
        assert secret not in str(caught.value) and caught.value.store == store.location
        assert "***" in str(caught.value)
    for bad in (f"postgresql://ray_orch:{secret}@127.0.0.1:5432/x?nosuchoption=1",
                f"postgresql://ray_orch:{secret}@[127.0.0.1/x"):  # libpq quotes this one
        with pytest.raises(StoreError, match="not a valid PostgreSQL") as caught:
            open_store(bad)
        assert secret not in str(caught.value)
    assert secret not in caplog.text


def test_a_run_begins_with_its_graph_and_a_refused_begin_keeps_the_graph(store):
    first = {"mode": "workflow", "tasks": {"a": {}}}
    run = store.begin_run("g1", "w", "h1", fresh=True, graph=first)
    assert not run.resumed and store.get_run("g1").status == "running"
    assert store.load_graph("g1") == first
    other = {"mode": "workflow", "tasks": {"b": {}}}
    with pytest.raises(ResumeError):  # it exists: a fresh begin is refused, nothing written
        store.begin_run("g1", "w", "h1", fresh=True, graph=other)
    with pytest.raises(ResumeError):  # another definition without allow_drift: refused
        store.begin_run("g1", "w", "h2", graph=other)
    assert store.load_graph("g1") == first
    again = store.begin_run("g1", "w", "h2", allow_drift=True, graph=other)
    assert again.resumed and store.load_graph("g1") == other
