"""A driver script for ``test_memory_runs.py``: one run of a one-task process with memory,
in a process of its own (as a user's second script would be).

Usage: ``python memory_driver.py <base_url> <user_id> <description> [store]`` with the
stub's model and key in ``STUB_MODEL`` / ``STUB_KEY``. Memories go to ``store`` when given,
else to ``Memory()``'s default (``RAY_ORCH_MEMORY_DIR``: the test gives a private folder).
Prints ``RESULT {"raw": ..., "memory": ...}``.
"""

from __future__ import annotations

import json
import os
import sys

from ray_orch import Agent, Memory, Process, Task


def main() -> None:
    base_url, user, description = sys.argv[1:4]
    store = sys.argv[4] if len(sys.argv) > 4 else None
    llm = {"model": os.environ["STUB_MODEL"], "base_url": base_url,
           "api_key": os.environ["STUB_KEY"]}
    agent = Agent(role="Concierge", goal="Help the guest", llm=llm)
    memory = Memory(store) if store else True
    process = Process(tasks={"answer": Task(description=description, agent=agent)},
                      agents=[agent], memory=memory, user_id=user, progress=False)
    out = process.workflow()["answer"]
    print("RESULT " + json.dumps({"raw": out.raw, "memory": out.metadata.get("memory")}),
          flush=True)


if __name__ == "__main__":
    main()
