"""Guide section: "The Fan-Out/Fan-In Pattern" (a loop over chunks.csv, then aggregate).

``analyze_chunk`` is a loop task: one iteration per row of ``chunks.csv``, the row's
columns filling ``{placeholders}`` in the description; iterations run in parallel on the
analyzer's pool. ``aggregate`` waits for every iteration and sees all their outputs.

Run:
    python examples/05_fan_out_fan_in.py

``chunks.csv`` ships next to this script (it is written again if missing). Model:
``RAY_ORCH_MODEL`` when set, else the embedded offline model.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from ray_orch import Agent, Process, RunError, Task

CHUNKS = Path(__file__).with_name("chunks.csv")
ROWS = [
    {"chunk_id": 1, "region": "North", "orders": 1240, "revenue_usd": 86300},
    {"chunk_id": 2, "region": "South", "orders": 980, "revenue_usd": 61250},
    {"chunk_id": 3, "region": "East", "orders": 1515, "revenue_usd": 112900},
    {"chunk_id": 4, "region": "West", "orders": 770, "revenue_usd": 40100},
]


def ensure_chunks(path: Path = CHUNKS) -> Path:
    """Write chunks.csv if it is not there (the guide's loop_data)."""
    if not path.exists():
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(ROWS[0]))
            writer.writeheader()
            writer.writerows(ROWS)
    return path


def main() -> int:
    chunks = ensure_chunks()
    splitter = Agent(role="Splitter", goal="Split datasets into chunks", max_tokens=80)
    # pool_size=2: two actors serve the analyzer, so iterations run side by side.
    analyzer = Agent(role="Analyzer", goal="Analyze sales data", max_tokens=80, pool_size=2)
    aggregator = Agent(role="Aggregator", goal="Combine analyses", max_tokens=150)

    # Parallel analysis with aggregation
    analysis_tasks = {
        "split": Task(
            description="Split dataset into chunks: the quarterly sales by region",
            agent=splitter,
            expected_output="List of data chunks",
        ),
        "analyze_chunk": Task(
            description="Analyze data chunk {chunk_id}: region {region}, {orders} orders, "
                        "revenue {revenue_usd} USD. One sentence.",
            agent=analyzer,
            task_type="loop",
            loop_data=str(chunks),
            context=["split"],
            expected_output="Chunk analysis",
        ),
        "aggregate": Task(
            description="Combine all analyses",
            agent=aggregator,
            context=["analyze_chunk"],
            expected_output="Combined analysis report",
        ),
    }

    process = Process(tasks=analysis_tasks, agents=[splitter, analyzer, aggregator],
                      name="fan_out_fan_in")
    try:
        results = process.workflow()
    except RunError as exc:
        print(f"fan-out/fan-in failed: {exc}")
        return 1

    iterations = results["analyze_chunk"].iterations or []
    for i, item in enumerate(iterations):
        print(f"chunk {i + 1}: {item.raw[:90]!r}")
    print(f"aggregate: {results['aggregate'].raw[:160]!r}")
    return 0 if len(iterations) == len(ROWS) else 1


if __name__ == "__main__":
    sys.exit(main())
