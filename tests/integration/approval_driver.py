"""A driver script whose run pauses for approval (tests/integration/test_approvals.py runs it as its
own process, then continues the run from another)."""

from __future__ import annotations

import json
import sys

from ray_orch import Agent, Process, RunPaused, Task


def build(llm: dict, checkpoint_dir: str, **options) -> Process:
    writer = Agent(role="Writer", goal="Write", llm=llm)
    tasks = {
        "research": Task(description="Research the topic", agent=writer),
        "draft": Task(description="Draft the post", agent=writer, context=["research"],
                      human_input=True),
        "publish": Task(description="Publish the post", agent=writer, context=["draft"]),
        "side": Task(description="Side branch work", agent=writer),
    }
    return Process(tasks=tasks, agents=[writer], checkpoint_dir=checkpoint_dir, **options)


if __name__ == "__main__":
    base_url, directory = sys.argv[1], sys.argv[2]
    llm = {"model": "openai/stub", "base_url": base_url, "api_key": "sk-stub-not-a-real-key"}
    try:
        build(llm, directory).workflow()
    except RunPaused as paused:
        print(json.dumps({"run_id": paused.run_id,
                          "requests": [{"id": r.id, "task": r.task,
                                        "output": r.output.raw if r.output else None}
                                       for r in paused.requests],
                          "completed": sorted(paused.results)}))
        sys.exit(0)
    print(json.dumps({"error": "did not pause"}))
    sys.exit(1)
