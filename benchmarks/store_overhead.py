"""What the run store costs per task: the checkpoint written when a task completes.

Two measures, each for SQLite (a fresh private directory) and PostgreSQL (a private
server on 127.0.0.1, ``ray_orch.testing.postgres``), beside the no-store run:

Both are durable: SQLite with ``synchronous=FULL``, PostgreSQL with ``fsync=on`` (and
``synchronous_commit=on``, its default).

1. ``journal``: the Supervisor's write path per completed task, alone: ``Journal.task_done``
   (a sealed output, with a decision every 4th task) on a run of ``--tasks`` tasks, timed
   per call (median and p95).
2. ``run``: a whole run of ``--tasks`` independent tasks through the run loop on the
   in-process fakes (no Ray; members call the stub model over HTTP), with no store and
   with each store: the per-task difference of the makespans (the store's overhead as
   a run sees it, noisier: model calls dominate).

Targets (the issue's): SQLite <= 1 ms a task, PostgreSQL on loopback <= 3 ms a task.
Usage: ``python benchmarks/store_overhead.py [--tasks 300]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from typing import Any

from ray_orch import Agent, Task
from ray_orch.core.output import TaskOutput
from ray_orch.engine.run import Run, RunSpec
from ray_orch.store.factory import open_store
from ray_orch.store.journal import Journal
from ray_orch.testing import StubLLMServer
from ray_orch.testing.fakes import fake_services


def journal_cost(spec: str, tasks: int) -> dict[str, float]:
    """Milliseconds per ``Journal.task_done`` (median, p95, mean) on ``spec``."""
    store = open_store(spec, check=True)
    journal = Journal(store, run_id="bench", workflow="bench", definition={"n": tasks},
                      resume=False, allow_drift=False)
    times = []
    for i in range(tasks):
        output = TaskOutput(raw=f"answer {i} " * 20, task_id=f"t{i}", agent="Clerk",
                            metadata={"tokens_used": 120, "model": "stub",
                                      **({"decision": "next"} if i % 4 == 0 else {})})
        started = time.perf_counter()
        journal.task_done(f"t{i}", 1, output)
        times.append((time.perf_counter() - started) * 1000)
    journal.finish("completed")
    store.close()
    times.sort()
    return {"median_ms": round(statistics.median(times), 3),
            "p95_ms": round(times[int(len(times) * 0.95)], 3),
            "mean_ms": round(statistics.fmean(times), 3)}


def fsync_cost(folder: str, count: int = 100) -> float:
    """Median milliseconds of one 4 KiB write + fsync here: the disk's floor under any
    durable store on this machine (SQLite's synchronous=FULL pays it per commit)."""
    import os

    times = []
    with open(os.path.join(folder, "fsync.probe"), "wb") as out:
        for _ in range(count):
            started = time.perf_counter()
            out.write(b"x" * 4096)
            out.flush()
            os.fsync(out.fileno())
            times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3)


def run_makespan(stub: StubLLMServer, tasks: int, spec: str | None) -> float:
    """Seconds for one run of ``tasks`` independent tasks on the in-process fakes."""
    agent = Agent(role="Clerk", goal="Answer", llm=stub.llm, max_concurrency=32)
    work = [Task(name=f"t{i}", description=f"Answer {i}", agent=agent) for i in range(tasks)]
    store = open_store(spec, check=True) if spec else None
    run_spec = RunSpec(run_id=f"run-{time.monotonic_ns()}", workflow="bench",
                       mode="workflow", tasks=work, agents=[agent], metrics=False)

    async def go() -> Any:
        return await Run(run_spec, emit=lambda e: None,
                         services=fake_services(store=store)).execute()

    started = time.perf_counter()
    result = asyncio.run(go())
    elapsed = time.perf_counter() - started
    assert result.error is None, result.error
    if store is not None:
        store.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import os

    from ray_orch.testing.postgres import PostgresServer, postgres_available

    report: dict[str, Any] = {"tasks": args.tasks, "load_average": os.getloadavg()[0],
                              "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as folder, StubLLMServer(reply="ok") as stub:
        report["fsync_ms"] = fsync_cost(folder)
        specs = {"sqlite": f"{folder}/sqlite"}
        # Durable like SQLite's synchronous=FULL: the test fixtures run fsync=off.
        server = PostgresServer(fsync=True) if postgres_available() else None
        if server is not None:
            server.__enter__()
            specs["postgres"] = server.dsn
        try:
            report["journal"] = {name: journal_cost(spec, args.tasks)
                                 for name, spec in specs.items()}
            run_makespan(stub, 20, None)  # warm: imports, HTTP pools
            runs: dict[str, list[float]] = {"none": []}
            for name in specs:
                runs[name] = []
            for _ in range(args.rounds):  # interleaved, so load drifts hit all alike
                runs["none"].append(run_makespan(stub, args.tasks, None))
                for name, spec in specs.items():
                    fresh = f"{spec}-{len(runs[name])}" if name == "sqlite" else spec
                    runs[name].append(run_makespan(stub, args.tasks, fresh))
            best = {name: min(times) for name, times in runs.items()}
            report["run_s"] = {name: round(t, 3) for name, t in best.items()}
            report["run_overhead_ms_per_task"] = {
                name: round((best[name] - best["none"]) / args.tasks * 1000, 3)
                for name in specs}
        finally:
            if server is not None:
                server.__exit__(None, None, None)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
