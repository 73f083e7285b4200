"""Guide section: "Workflow Visualization" (a picture before and after a run).

``visualize_workflow(tasks)`` is the guide's function: it writes
``workflow_visualization.png`` (decisions are diamonds, loops hexagons; context edges
solid, ``next_tasks`` dashed, routes labelled with their answer). After a run the same
picture shows each task's status and time and the path taken; ``process.graph()``
gives the same graph as Mermaid text (GitHub renders it in a ```mermaid block) and
``process.graph("png", path)`` draws it.

Run:
    python examples/16_visualisation.py [output_dir]

The PNG needs networkx and matplotlib (``pip install 'ray-orch[viz]'``). Model:
``RAY_ORCH_MODEL`` when set, else the embedded offline model.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ray_orch import Agent, Process, RunError, Task, visualize_workflow


def build() -> tuple[dict[str, Task], list[Agent]]:
    triage = Agent(role="Triage", goal="Sort incoming bug reports", max_tokens=60)
    engineer = Agent(role="Engineer", goal="Fix bugs", max_tokens=80)
    tasks = {
        "triage": Task(description="Is this bug report a crash or a typo? "
                                   "'The Save button label says Sbmit'",
                       agent=triage, task_type="decision",
                       condition={"crash": ["debug"], "typo": ["fix_text"]}),
        "debug": Task(description="Find the cause of the crash", agent=engineer,
                      next_tasks=["release_notes"]),
        "fix_text": Task(description="Fix the typo in the Save button label", agent=engineer,
                         next_tasks=["release_notes"]),
        "release_notes": Task(description="Write a one-line release note", agent=triage),
    }
    return tasks, [triage, engineer]


def main(out_dir: str = ".") -> int:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks, agents = build()

    # Visualize your workflow (before the run: its shape)
    before = visualize_workflow(tasks, out / "workflow_visualization.png")
    print(f"before the run: {before}")

    process = Process(tasks=tasks, agents=agents, name="bug_triage")
    try:
        process.workflow()
    except RunError as exc:
        print(f"run failed: {exc}")
        return 1

    after = process.graph("png", out / "workflow_after_run.png")
    text = process.graph("mermaid", out / "workflow.mmd")  # also returns the text
    print(f"after the run:  {after} and {out / 'workflow.mmd'}")
    print(text)
    return 0 if before.exists() and after.exists() else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
