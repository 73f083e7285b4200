"""The demo's workflow on the embedded model, once Ray is up: seconds per run.

Starts Ray once, then runs ``ray_orch.demo.build_workflow`` for each canned inquiry of the
demo (one per route) and prints the wall time of ``Process.workflow()`` and the route.
The first run also starts the node's model server (loading the model).

Run: ``python benchmarks/embedded_demo.py [ROUNDS]``
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.pop("RAY_ORCH_MODEL", None)

import ray

from ray_orch import Process
from ray_orch.demo import INQUIRIES, build_workflow


def main(rounds: int = 1) -> None:
    ray.init(log_to_driver=False, logging_level="WARNING", include_dashboard=False)
    try:
        for round_ in range(rounds):
            for inquiry in INQUIRIES:
                tasks, agents = build_workflow(inquiry)
                process = Process(tasks=tasks, agents=agents, name="customer_service",
                                  progress=False, metrics=False)
                started = time.perf_counter()
                outputs = process.workflow()
                took = time.perf_counter() - started
                route = " -> ".join(
                    f"{name}[{out.metadata['decision']}]" if out.metadata.get("decision")
                    else name for name, out in outputs.items())
                print(f"round {round_ + 1}: {took:5.2f} s  {route}", flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
