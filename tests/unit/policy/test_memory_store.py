"""``Memory`` on both backends (SQLite in a folder, PostgreSQL through a DSN): add, search
by meaning, users apart, get, delete, clear, re-embedding when the embedder changes, and
erasure that leaves the deleted text in none of the store's files."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from ray_orch import InvalidTaskFieldError, Memory, MemoryItem

SECRET = "the vault passphrase is zebra-quartz-91"


@pytest.fixture(params=["sqlite", "postgres"])
def location(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "store")
    return request.getfixturevalue("postgres_dsn")


class HashEmbedder:
    """A different embedding space: 64 dimensions from word hashes (no model)."""

    tag = "test-hash-64"

    def embed(self, texts):
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_search_by_meaning_keeps_users_apart(location):
    memory = Memory(location, namespace="t")
    ids = memory.add_many(["Maria is vegetarian and avoids fish",
                           "Maria's daughter plays the cello",
                           "Maria flies to Lisbon on Friday"], user_id="maria",
                          metadata={"source": "chat"})
    memory.add("Tom eats anything but hates olives", user_id="tom")
    found = memory.search("what food should I cook for her?", user_id="maria", limit=2)
    assert [type(i) for i in found] == [MemoryItem, MemoryItem]
    assert found[0].id == ids[0] and found[0].score > found[1].score
    assert found[0].metadata["source"] == "chat" and found[0].metadata["user_id"] == "maria"
    assert all(i.metadata["user_id"] == "maria" for i in memory.search("olives", user_id="maria"))
    assert [i.text for i in memory.search("olives", user_id="tom")] == [
        "Tom eats anything but hates olives"]
    assert memory.search("olives") == []  # no user: only memories of no user
    assert memory.get(ids[1]).text == "Maria's daughter plays the cello"
    assert memory.get(ids[1]).created_at > 0
    assert Memory(location, namespace="other").search("cello", user_id="maria") == []


def test_another_process_additions_are_seen_and_deletions_counted(location):
    first, second = Memory(location), Memory(location)
    first.add("Likes window seats", user_id="u", agent="Booker")
    assert len(second.search("seat preference", user_id="u")) == 1
    second.add("Likes aisle seats on night flights", user_id="u", agent="Other")
    assert len(first.search("seat preference", user_id="u")) == 2
    assert len(first.search("seat preference", user_id="u", agent="Booker")) == 1
    assert first.delete(agent="Booker") == 1
    assert [i.text for i in second.search("seat", user_id="u")] == [
        "Likes aisle seats on night flights"]
    assert second.clear() == 1 and first.search("seat", user_id="u") == []


def test_a_new_embedder_re_embeds_instead_of_mixing(location):
    Memory(location).add_many(["The printer is on floor two", "Lunch is at noon"])
    hashed = Memory(location, embedder=HashEmbedder())
    assert hashed.search("printer floor")[0].text == "The printer is on floor two"
    if not location.startswith("postgresql"):
        with sqlite3.connect(Path(location) / "memory.sqlite") as db:
            tags = {row[0] for row in db.execute("SELECT embedder FROM memories")}
        assert tags == {"test-hash-64"}
    assert Memory(location).search("where is the printer?")[0].text.startswith("The printer")


def test_bad_arguments_are_typed_errors(tmp_path):
    memory = Memory(tmp_path)
    with pytest.raises(InvalidTaskFieldError, match="give id=, user_id= or agent="):
        memory.delete()
    with pytest.raises(InvalidTaskFieldError, match="text"):
        memory.add("  ")
    with pytest.raises(InvalidTaskFieldError, match="limit"):
        memory.search("x", limit=-1)
    with pytest.raises(InvalidTaskFieldError, match="embedder"):
        Memory(tmp_path, embedder=42)
    with pytest.raises(InvalidTaskFieldError, match="by position"):
        Memory(tmp_path, "ns")


def _sqlite_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.iterdir() if p.is_file())


def _postgres_bytes(dsn: str) -> bytes:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        data = conn.execute("SELECT current_setting('data_directory')").fetchone()[0]
        oid = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()"
                           ).fetchone()[0]
    folder = Path(data) / "base" / str(oid)
    return b"".join(p.read_bytes() for p in folder.iterdir() if p.is_file())


def test_delete_erases_text_and_vectors_from_the_files(location):
    memory = Memory(location)
    memory.add(SECRET, user_id="leaver")
    memory.add(f"again: {SECRET}, said twice", user_id="leaver", agent="Scribe")
    memory.add("the office opens at eight", user_id="stayer")
    vector = memory.embedder.embed([SECRET])[0].astype(np.float32).tobytes()
    read = _postgres_bytes if location.startswith("postgresql") else \
        (lambda loc: _sqlite_bytes(Path(loc)))
    before = read(location)
    assert b"zebra-quartz" in before and vector in before  # the check can fail
    assert memory.delete(user_id="leaver") == 2
    after = read(location)
    assert b"zebra-quartz" not in after
    assert vector not in after
    assert b"the office opens at eight" in after
    assert memory.search("office hours", user_id="stayer")[0].text == "the office opens at eight"
    assert memory.search("vault", user_id="leaver") == []


def test_secrets_are_scrubbed_and_an_id_is_kept_once(tmp_path):
    memory = Memory(tmp_path)
    key = "sk-" + "a1B2c3D4e5F6g7H8i9J0kLmN"
    first = memory.add_many([{"id": "fixed", "text": f"the key is {key}"}], user_id="u")
    again = memory.add_many([{"id": "fixed", "text": "something else"}], user_id="u")
    assert first == again == ["fixed"]
    assert memory.get("fixed").text == "the key is ***"
    assert key.encode() not in _sqlite_bytes(tmp_path)
    assert len(memory.search("key", user_id="u")) == 1
