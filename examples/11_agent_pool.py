"""Guide section: "Resource Pooling" (AgentPool with the guide's template dict).

``AgentPool`` makes ``pool_size`` agent actors from one template. ``execute_task`` sends
a task to the least-loaded member and returns a ``concurrent.futures.Future`` at once;
when every member is busy up to ``max_concurrency``, it waits (backpressure), so
submitting many tasks never floods the cluster.

Run:
    python examples/11_agent_pool.py [pool_size]

The guide uses ``pool_size=10``; the default here is 3 (each member is a process, and a
laptop has few cores). Model: ``RAY_ORCH_MODEL`` when set, else the embedded model.
"""

from __future__ import annotations

import sys
from collections import Counter

from ray_orch import AgentPool, Task, TaskFailedError

RECORDS = ["order 1001: 3 items, 42.50 EUR", "order 1002: 1 item, 9.99 EUR",
           "order 1003: 7 items, 130.00 EUR", "order 1004: 2 items, 18.40 EUR",
           "order 1005: 5 items, 77.25 EUR", "order 1006: 1 item, 5.00 EUR"]


def main(pool_size: int = 3) -> int:
    # Use agent pool
    agent_pool = AgentPool(
        agent_template={
            "role": "Data Processor",
            "goal": "Process data efficiently",
            "max_tokens": 60,
        },
        pool_size=pool_size,
    )
    try:
        futures = [agent_pool.execute_task(Task(description=f"Summarise in five words: {r}"))
                   for r in RECORDS]
        try:
            outputs = [future.result(timeout=300) for future in futures]
        except TaskFailedError as exc:
            print(f"a task failed: {exc}")
            return 1
    finally:
        agent_pool.close()

    for record, output in zip(RECORDS, outputs, strict=True):
        print(f"{record:<34} -> {output.raw[:50]!r} (actor pid "
              f"{output.metadata['actor_pid']})")
    spread = Counter(output.metadata["actor_pid"] for output in outputs)
    print(f"{len(outputs)} tasks on {len(spread)} of {pool_size} pool members: "
          f"{dict(spread)}")
    return 0 if len(outputs) == len(RECORDS) else 1


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:2])))
