"""Guide section: "When to Use Sequential Process" (an ETL pipeline).

Three agents extract, transform and load; each task waits for the one before it and
sees its output (``context``). Runs on a local Ray.

Run:
    python examples/01_sequential_etl.py

Model: ``RAY_ORCH_MODEL`` (with ``RAY_ORCH_BASE_URL`` / ``RAY_ORCH_API_KEY``) when set,
else the embedded offline model (a 135M model: its answers are illustrative).
"""

from __future__ import annotations

import sys

from ray_orch import Agent, Process, RunError, Task


def main() -> int:
    # max_tokens keeps replies short: the embedded model runs on the CPU.
    extractor = Agent(role="Data Extractor", goal="Extract data from sources", max_tokens=120)
    transformer = Agent(role="Data Transformer", goal="Clean and transform data",
                        max_tokens=120)
    loader = Agent(role="Data Loader", goal="Load data into destination", max_tokens=120)

    tasks = {
        "extract": Task(
            description="Extract data from API: list three orders (id, customer, amount) "
                        "from the shop's order API",
            agent=extractor,
            expected_output="Raw JSON data",
        ),
        "transform": Task(
            description="Clean and normalize data",
            agent=transformer,
            context=["extract"],
            expected_output="Cleaned dataset",
        ),
        "load": Task(
            description="Load into database",
            agent=loader,
            context=["transform"],
            expected_output="Load confirmation",
        ),
    }

    process = Process(tasks=tasks, agents=[extractor, transformer, loader], name="etl")
    try:
        results = process.sequential()  # Each task waits for previous to complete
    except RunError as exc:
        print(f"ETL failed: {exc}")
        return 1

    for name, output in results.items():
        print(f"{name:<10} {output.metadata['execution_time']:5.2f} s  {output.raw[:100]!r}")
    ok = all(task.status == "completed" for task in tasks.values())
    print("ETL pipeline:", "completed" if ok else "incomplete")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
