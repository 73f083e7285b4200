"""Memory: recall by meaning, search time at 100,000 memories, adding 1,000, and the
per-node encoder's memory beside per-process copies. A benchmark, not a timed test.

1. **recall@3**: the 60 facts of ``memory_recall_set.json`` are remembered for one user
   (plus the same facts for another user, who must never come back); each of its 31
   paraphrased questions must find its fact among the first 3. The set was written for
   this and tunes nothing (there is no threshold to tune).
2. **add 1,000**: ``Memory.add_many`` of 1,000 distinct sentences (embedding included),
   and 100 single ``add`` calls.
3. **search at 100,000**: 100,000 rows are written straight to the store with random
   unit vectors under the offline encoder's tag (encoding 100,000 texts takes minutes and
   measures the encoder, not the search; the search does the same work either way), over
   100 users; then ``search`` for one user with a new query each time (query embedding
   included), and the vector search alone. The first search loads the matrix.
4. **encoder memory**: resident memory a process gains by loading the encoder, i.e. what
   each member would pay without the per-node service.

Run: ``python benchmarks/memory_recall.py`` (``--quick``: 20,000 rows). Prints a table
and one JSON line (``RESULT {...}``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def recall_at_3(folder: str) -> dict[str, float]:
    from ray_orch import Memory

    data = json.loads((HERE / "memory_recall_set.json").read_text())
    memory = Memory(folder, namespace="recall")
    ids = dict(zip(data["facts"], memory.add_many(list(data["facts"].values()),
                                                  user_id="ana"), strict=True))
    memory.add_many(list(data["facts"].values()), user_id="other")
    hits, crossed, first = 0, 0, 0
    for item in data["questions"]:
        found = memory.search(item["q"], user_id="ana", limit=3)
        crossed += sum(f.metadata["user_id"] != "ana" for f in found)
        got = [f.id for f in found]
        hits += ids[item["fact"]] in got
        first += bool(got) and got[0] == ids[item["fact"]]
    n = len(data["questions"])
    return {"facts": len(data["facts"]), "questions": n, "recall_at_3": hits / n,
            "recall_at_1": first / n, "other_users_items": crossed}


def add_timing(folder: str) -> dict[str, float]:
    from ray_orch import Memory

    memory = Memory(folder, namespace="adds")
    memory.add("warm the encoder up")
    subjects = ["The guest", "My sister", "The manager", "Our client", "The driver"]
    verbs = ["prefers", "asked about", "complained about", "booked", "cancelled"]
    things = ["a room with a balcony", "the late checkout", "vegetarian breakfast",
              "the airport shuttle", "extra towels", "a quiet table", "the spa at noon",
              "tickets for the museum"]
    texts = [f"{subjects[i % 5]} {verbs[(i // 5) % 5]} {things[(i // 25) % 8]} "
             f"(note {i}, day {i % 31 + 1})" for i in range(1000)]
    started = time.perf_counter()
    memory.add_many(texts, user_id="u")
    many = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(100):
        memory.add(f"single note number {i} about the invoice", user_id="u")
    single = (time.perf_counter() - started) / 100
    return {"add_many_1000_s": round(many, 2), "add_one_ms": round(single * 1000, 1)}


def search_timing(folder: str, rows: int) -> dict[str, float]:
    from ray_orch import Memory
    from ray_orch.store.memory import MemoryRow

    memory = Memory(folder, namespace="big")
    tag = memory.embedder.tag
    rng = np.random.default_rng(7)
    started = time.perf_counter()
    for start in range(0, rows, 10_000):
        vectors = rng.standard_normal((min(10_000, rows - start), 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        memory.store.add([MemoryRow(id=uuid.uuid4().hex, namespace="big",
                                    text=f"synthetic memory {start + i}",
                                    user_id=f"user{(start + i) % 100}", embedder=tag,
                                    vector=v, created_at=time.time())
                          for i, v in enumerate(vectors)])
    written = time.perf_counter() - started
    started = time.perf_counter()
    memory.search("first search loads the matrix", user_id="user1")
    load = time.perf_counter() - started
    total, vector_only = [], []
    for i in range(200):
        query = f"what did guest {i} ask about the room on day {i % 31}?"
        started = time.perf_counter()
        memory.search(query, user_id=f"user{i % 100}", limit=5)
        total.append(time.perf_counter() - started)
        q = memory.embedder.embed([query + " again"])[0]
        index = memory.index()
        started = time.perf_counter()
        index.search(q, user_id=f"user{i % 100}", limit=5)
        vector_only.append(time.perf_counter() - started)
    from ray_orch.store.memory import one_blas_thread

    every = memory.index()
    scans = []
    for _ in range(50):  # the cost of scoring every row (a user who owns them all)
        started = time.perf_counter()
        with one_blas_thread():  # as VectorIndex.search does
            scores = every.matrix[:every.size] @ q
        np.argpartition(-scores, 4)[:5]
        scans.append(time.perf_counter() - started)

    def p(values: list[float], pct: int) -> float:
        return round(float(np.percentile(values, pct)) * 1000, 2)

    return {"rows": rows, "write_s": round(written, 1), "first_search_load_s": round(load, 2),
            "search_p50_ms": p(total, 50), "search_p95_ms": p(total, 95),
            "vector_search_p95_ms": p(vector_only, 95),
            "whole_matrix_scan_p50_ms": p(scans, 50)}


def encoder_memory() -> dict[str, float]:
    code = ("import os, resource\n"
            "def rss():\n"
            "    return int(open(f'/proc/{os.getpid()}/statm').read().split()[1]) * "
            "os.sysconf('SC_PAGE_SIZE')\n"
            "import numpy, tokenizers\n"
            "from ray_orch.model.embed import encode_here\n"
            "before = rss()\n"
            "encode_here(['load the encoder'])\n"
            "print((rss() - before) / 2**20)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=HERE.parent)
    return {"encoder_rss_mb_per_process": round(float(out.stdout.strip()), 1)}


def main() -> None:
    import os

    quick = "--quick" in sys.argv
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        result: dict[str, object] = {}
        result.update(recall_at_3(f"{tmp}/recall"))
        result.update(add_timing(f"{tmp}/adds"))
        result.update(search_timing(f"{tmp}/big", 20_000 if quick else 100_000))
        result.update(encoder_memory())
    # Figures are per core of a shared 2-core machine: say how busy it was.
    result["load_average_1m"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
