"""A driver for the crash tests: a 50-task workflow, run in its own process so the test
can SIGKILL it. Usage: durability_driver.py STUB_BASE_URL CHECKPOINT_DIR RUN_ID [resume]"""

from __future__ import annotations

import sys

from ray_orch import Agent, Process, Task


def build(base_url: str) -> tuple[dict[str, Task], list[Agent]]:
    """10 chains of 5 tasks, each link seeing the one before, then a join of all chains."""
    llm = {"model": "openai/stub", "base_url": base_url, "api_key": "sk-stub"}
    agent = Agent(role="Clerk", goal="Process records", llm=llm)
    tasks: dict[str, Task] = {}
    for chain in range(10):
        for step in range(5 if chain < 9 else 4):
            name = f"c{chain}s{step}"
            context = [f"c{chain}s{step - 1}"] if step else []
            tasks[name] = Task(description=f"Record {name}", agent=agent, context=context)
    tasks["join"] = Task(description="Record join", agent=agent,
                         context=[f"c{c}s{4 if c < 9 else 3}" for c in range(10)])
    return tasks, [agent]


def main(argv: list[str]) -> int:
    base_url, directory, run_id = argv[:3]
    tasks, agents = build(base_url)
    process = Process(tasks=tasks, agents=agents, checkpoint_dir=directory, name="crashy",
                      metrics=False)
    if len(argv) > 3 and argv[3] == "resume":
        process.workflow(resume=run_id)
    else:
        process.workflow(run_id=run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
