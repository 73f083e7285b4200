"""Checkpoint stores: round trips, drift, corruption, secrets, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import pickle
import re
import sqlite3
from pathlib import Path

import pytest

from ray_orch.core.errors import CheckpointCorruptError, ResumeError
from ray_orch.core.output import TaskOutput
from ray_orch.core.secrets import scrub_secrets
from ray_orch.store.checkpoint import CheckpointStore, definition_hash, new_run_id
from ray_orch.store.jsondir import JsonDirCheckpointStore
from ray_orch.store.sqlite import SQLITE_FILENAME, SQLiteCheckpointStore

STORES = {"sqlite": SQLiteCheckpointStore, "jsondir": JsonDirCheckpointStore}
HASH_A = definition_hash({"tasks": ["extract", "report"]})
HASH_B = definition_hash({"tasks": ["extract", "summarise", "report"]})


@pytest.fixture(params=sorted(STORES))
def store(request, tmp_path):
    store = STORES[request.param](tmp_path / "ckpt")
    yield store
    store.close()


def output(task_id: str, raw: str = "done", **metadata) -> dict:
    return TaskOutput(raw=raw, task_id=task_id, agent="Analyst",
                      metadata={"tokens_used": 12, **metadata}).model_dump(mode="json")


def test_stores_implement_the_protocol(store):
    assert isinstance(store, CheckpointStore)


def test_task_decision_iteration_round_trip(store):
    store.begin_run("r1", "demo", HASH_A)
    outs = {name: output(name, raw=f"result of {name}") for name in ("extract", "a/b", "_x", "..")}
    for name, out in outs.items():
        store.save_task("r1", name, out)
    store.save_decision("r1", "check", 1, "approve")
    store.save_decision("r1", "check", 2, "revise")
    for i in (2, 0, 1):
        store.save_iteration("r1", "per_row", i, output("per_row", raw=f"row {i}"))

    assert store.load_tasks("r1") == outs
    assert TaskOutput(**store.load_tasks("r1")["extract"]).raw == "result of extract"
    assert store.load_task("r1", "a/b") == outs["a/b"]
    assert store.load_task("r1", "missing") is None
    assert store.load_decisions("r1") == {("check", 1): "approve", ("check", 2): "revise"}
    iterations = store.load_iterations("r1", "per_row")
    assert list(iterations) == [0, 1, 2]
    assert iterations[1]["raw"] == "row 1"
    assert store.load_tasks("other-run") == {}
    assert store.load_iterations("r1", "nothing") == {}


def test_later_save_replaces_earlier(store):
    store.begin_run("r1", "demo", HASH_A)
    store.save_task("r1", "t", output("t", raw="first"))
    store.save_task("r1", "t", output("t", raw="second"))
    assert store.load_tasks("r1")["t"]["raw"] == "second"


def test_run_records(store):
    run = store.begin_run("r1", "demo", HASH_A)
    assert (run.run_id, run.workflow, run.status, run.resumed) == ("r1", "demo", "running", False)
    store.begin_run("r2", "demo", HASH_A)
    store.begin_run("r3", "other", HASH_B)
    store.finish_run("r1", "completed")
    assert store.get_run("r1").status == "completed"
    assert store.get_run("nope") is None
    assert store.latest_run("demo").run_id == "r2"
    assert store.latest_run("unknown") is None
    assert [r.run_id for r in store.list_runs()] == ["r1", "r2", "r3"]
    assert [r.run_id for r in store.list_runs("demo")] == ["r1", "r2"]
    again = store.begin_run("r1", "demo", HASH_A)
    assert again.resumed and again.status == "running"
    assert again.created_at == run.created_at
    with pytest.raises(KeyError, match="nope"):
        store.finish_run("nope", "failed")


def test_drift_refused_then_allowed(store):
    store.begin_run("r1", "demo", HASH_A)
    with pytest.raises(ResumeError) as info:
        store.begin_run("r1", "demo", HASH_B)
    message = str(info.value)
    assert "r1" in message and HASH_A in message and HASH_B in message
    assert "allow_drift=True" in message
    run = store.begin_run("r1", "demo", HASH_B, allow_drift=True)
    assert run.resumed and run.definition_hash == HASH_B
    store.begin_run("r1", "demo", HASH_B)  # the accepted definition is now the reference


def test_store_pickles_and_reopens(store):
    store.begin_run("r1", "demo", HASH_A)
    store.save_task("r1", "t", output("t"))
    copy = pickle.loads(pickle.dumps(store))
    assert copy.load_tasks("r1") == store.load_tasks("r1")


# --------------------------------------------------------------------------- SQLite


def test_sqlite_uses_wal_and_full_sync(tmp_path):
    store = SQLiteCheckpointStore(tmp_path)
    store.begin_run("r1", "demo", HASH_A)
    assert store._connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()
    raw = sqlite3.connect(tmp_path / SQLITE_FILENAME)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def _raw_update(path: Path, sql: str, params: tuple = ()) -> None:
    raw = sqlite3.connect(path)
    try:
        with raw:
            assert raw.execute(sql, params).rowcount == 1
    finally:
        raw.close()


def test_sqlite_flipped_payload_is_refused(tmp_path):
    store = SQLiteCheckpointStore(tmp_path)
    store.begin_run("r1", "demo", HASH_A)
    store.save_task("r1", "extract", output("extract", raw="the answer is 42"))
    store.save_task("r1", "report", output("report"))
    _raw_update(tmp_path / SQLITE_FILENAME,
                "UPDATE tasks SET payload = replace(payload, '42', '43') WHERE task_id = 'extract'")
    with pytest.raises(CheckpointCorruptError) as info:
        store.load_tasks("r1")
    message = str(info.value)
    assert "'r1'" in message and "'extract'" in message and SQLITE_FILENAME in message
    assert info.value.task == "extract" and info.value.run_id == "r1"
    with pytest.raises(CheckpointCorruptError):
        store.load_task("r1", "extract")
    assert store.load_task("r1", "report")["raw"] == "done"


def test_sqlite_unparsable_payload_with_matching_checksum_is_refused(tmp_path):
    import hashlib

    store = SQLiteCheckpointStore(tmp_path)
    store.begin_run("r1", "demo", HASH_A)
    store.save_decision("r1", "check", 1, "approve")
    torn = '"appr'
    _raw_update(tmp_path / SQLITE_FILENAME, "UPDATE decisions SET payload = ?, checksum = ?",
                (torn, hashlib.sha256(torn.encode()).hexdigest()))
    with pytest.raises(CheckpointCorruptError, match="unparsable"):
        store.load_decisions("r1")


def test_sqlite_truncated_file_is_refused(tmp_path):
    store = SQLiteCheckpointStore(tmp_path)
    store.begin_run("r1", "demo", HASH_A)
    for i in range(40):
        store.save_task("r1", f"t{i}", output(f"t{i}", raw="x" * 2000))
    store.close()  # the last connection checkpoints the WAL into the main file
    db = tmp_path / SQLITE_FILENAME
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.truncate(size // 2)

    reopened = SQLiteCheckpointStore(tmp_path)
    with pytest.raises(CheckpointCorruptError) as info:
        reopened.load_tasks("r1")
    assert not isinstance(info.value, sqlite3.Error)
    assert "'r1'" in str(info.value) and str(db) in str(info.value)
    reopened.close()


def test_sqlite_garbage_file_is_refused(tmp_path):
    (tmp_path / SQLITE_FILENAME).write_bytes(b"not a database at all" * 100)
    with pytest.raises(CheckpointCorruptError):
        SQLiteCheckpointStore(tmp_path).get_run("r1")


# --------------------------------------------------------------------------- JSON dir


def test_jsondir_layout_is_one_file_per_task(tmp_path):
    store = JsonDirCheckpointStore(tmp_path)
    store.begin_run("r1", "demo", HASH_A)
    store.save_task("r1", "extract", output("extract"))
    record = json.loads((tmp_path / "r1" / "extract.json").read_text())
    assert record["task_id"] == "extract" and record["payload"]["raw"] == "done"
    assert len(record["checksum"]) == 64


def test_jsondir_truncated_file_is_refused(tmp_path):
    store = JsonDirCheckpointStore(tmp_path)
    store.begin_run("r1", "demo", HASH_A)
    store.save_task("r1", "extract", output("extract", raw="x" * 500))
    path = tmp_path / "r1" / "extract.json"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointCorruptError) as info:
        store.load_tasks("r1")
    assert "'r1'" in str(info.value) and str(path) in str(info.value)
    with pytest.raises(CheckpointCorruptError):
        store.load_task("r1", "extract")


def test_jsondir_edited_payload_is_refused(tmp_path):
    store = JsonDirCheckpointStore(tmp_path)
    store.begin_run("r1", "demo", HASH_A)
    store.save_task("r1", "extract", output("extract", raw="the answer is 42"))
    path = tmp_path / "r1" / "extract.json"
    path.write_text(path.read_text().replace("42", "43"))
    with pytest.raises(CheckpointCorruptError, match="checksum") as info:
        store.load_tasks("r1")
    assert info.value.task == "extract"


def test_jsondir_leftover_tmp_files_are_ignored(tmp_path):
    store = JsonDirCheckpointStore(tmp_path)
    store.begin_run("r1", "demo", HASH_A)
    store.save_task("r1", "extract", output("extract"))
    # What a crash between write and rename leaves behind.
    (tmp_path / "r1" / ".report.json.123.abcd.tmp").write_text('{"task_id": "report", "pay')
    (tmp_path / "r1" / "report.json.tmp").write_text("{")
    assert list(store.load_tasks("r1")) == ["extract"]


# --------------------------------------------------------------------------- secrets


def test_scrub_secrets_by_key_name_and_value(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-abcdefgh12345")
    data = {
        "api_key": "k1", "apiKey": "k2", "x-api-key": "k3", "Authorization": "Basic abc",
        "access_token": "k4", "password": "k5", "client_secret": "k6",
        "tokens_used": 12, "max_tokens": 100, "author": "Ada",
        "nested": [{"headers": {"authorization": "Bearer abc.def"}}, ("tok-abcdefgh12345",)],
        "text": "use tok-abcdefgh12345 and hunter22 and sk-" + "a" * 24,
        "log": "Authorization: Bearer abc.def-ghi_jkl-mno",
        "prose": "the bearer of bad news",
        "flags": {"token": 5, "secret": None},
    }
    clean = scrub_secrets(data, secrets=["hunter22"])
    for key in ("api_key", "apiKey", "x-api-key", "Authorization", "access_token", "password",
                "client_secret"):
        assert clean[key] == "***", key
    assert (clean["tokens_used"], clean["max_tokens"], clean["author"]) == (12, 100, "Ada")
    assert clean["nested"] == [{"headers": {"authorization": "***"}}, ("***",)]
    assert clean["text"] == "use *** and *** and ***"
    assert clean["log"] == "Authorization: Bearer ***"
    assert clean["prose"] == "the bearer of bad news"
    assert clean["flags"] == {"token": 5, "secret": None}
    assert data["api_key"] == "k1"  # the input is untouched


def _all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def test_saved_records_never_hold_api_keys(store, monkeypatch):
    fake_key = "fake-openai-key-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", fake_key)
    store.begin_run("r1", "demo", HASH_A)
    out = output("extract", raw=f"my key is {fake_key}", llm={"api_key": fake_key},
                 request={"headers": {"Authorization": f"Bearer {fake_key}"}},
                 note=f"called with {fake_key}")
    store.save_task("r1", "extract", out)
    store.save_iteration("r1", "loop", 0, out)
    store.save_decision("r1", "check", 1, f"route {fake_key}")
    store.cache_put("k", out, None)

    assert fake_key.encode() not in _all_bytes(Path(store.location).parent
                                               if store.location.endswith(SQLITE_FILENAME)
                                               else Path(store.location))
    loaded = store.load_tasks("r1")["extract"]
    assert loaded["raw"] == "my key is ***"
    assert loaded["metadata"]["llm"]["api_key"] == "***"
    assert loaded["metadata"]["tokens_used"] == 12
    assert store.load_decisions("r1")[("check", 1)] == "route ***"


# --------------------------------------------------------------------------- helpers


def test_definition_hash_is_canonical():
    a = {"tasks": [{"name": "x", "schema": {"b": 1, "a": 2}}], "edges": []}
    b = {"edges": [], "tasks": [{"schema": {"a": 2, "b": 1}, "name": "x"}]}
    assert definition_hash(a) == definition_hash(b)
    assert definition_hash(a) != definition_hash({**a, "edges": [["x", "y"]]})
    assert re.fullmatch(r"[0-9a-f]{64}", definition_hash(a))


def test_new_run_id_is_time_sortable_and_unique():
    ids = [new_run_id() for _ in range(50)]
    assert all(re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", i) for i in ids)
    assert len(set(ids)) == 50
    assert sorted(ids, key=lambda i: i[:15]) == ids


# --------------------------------------------------------------------------- processes


def _write_from_process(kind: str, directory: str, worker: int, count: int) -> None:
    store = STORES[kind](directory)
    store.begin_run("shared", "demo", HASH_A)
    for i in range(count):
        store.save_task("shared", f"w{worker}-t{i}", output(f"w{worker}-t{i}"))
        store.save_decision("shared", f"w{worker}", i, "go")
    store.close()


@pytest.mark.parametrize("kind", sorted(STORES))
def test_two_processes_write_concurrently(kind, tmp_path):
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_write_from_process, args=(kind, str(tmp_path), n, 40))
               for n in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    store = STORES[kind](tmp_path)
    tasks = store.load_tasks("shared")
    assert len(tasks) == 80
    assert tasks["w1-t39"]["task_id"] == "w1-t39"
    assert len(store.load_decisions("shared")) == 80
    store.close()
