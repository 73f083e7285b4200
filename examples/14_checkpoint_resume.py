"""Guide section: "Checkpoint and Resume" (CheckpointedProcess, and resume=run_id).

Both parts crash on purpose: the last task's service is down on the first run (a local
stand-in that answers HTTP 503: ``ray_orch.testing.StubLLMServer``); the second run,
with the service back, resumes from the checkpoints and runs only what is left.

Part 1 is the guide's ``CheckpointedProcess`` as written: one JSON file per completed
task, and a ``workflow()`` that runs each task in this process with ``execute()``.

Part 2 is ray-orch's own checkpointing: ``Process(checkpoint_dir=...)`` records each
result durably (SQLite) before anything downstream starts, on Ray, in any mode;
``workflow(resume=run_id)`` (or ``resume=True`` for the latest run) continues it and
refuses to resume a workflow whose definition changed (unless ``allow_drift=True``).

Run:
    python examples/14_checkpoint_resume.py [checkpoint_dir]

Model: ``RAY_ORCH_MODEL`` when set, else the embedded offline model.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from ray_orch import Agent, Process, RunError, Task, TaskFailedError, TaskOutput
from ray_orch.testing import StubLLMServer


class CheckpointedProcess(Process):
    """Process with checkpoint/resume capability"""

    def __init__(self, checkpoint_dir="checkpoints", **kwargs):
        super().__init__(**kwargs)
        self.checkpoint_dir = Path(checkpoint_dir)
        self.checkpoint_dir.mkdir(exist_ok=True)

    def save_checkpoint(self, task_id, result):
        """Save task result to checkpoint"""
        checkpoint_file = self.checkpoint_dir / f"{task_id}.json"
        with open(checkpoint_file, "w") as f:
            json.dump({
                "task_id": task_id,
                "result": result.dict(),
                "timestamp": time.time()
            }, f)

    def load_checkpoint(self, task_id):
        """Load task result from checkpoint"""
        checkpoint_file = self.checkpoint_dir / f"{task_id}.json"
        if checkpoint_file.exists():
            with open(checkpoint_file) as f:
                return json.load(f)
        return None

    def workflow(self):
        """Execute workflow with checkpointing"""
        for task_id, task in self.tasks.items():
            # Check for existing checkpoint
            checkpoint = self.load_checkpoint(task_id)
            if checkpoint:
                print(f"Resuming from checkpoint: {task_id}")
                task.result = TaskOutput(**checkpoint["result"])
                continue

            # Execute task
            result = task.execute()

            # Save checkpoint
            self.save_checkpoint(task_id, result)


def agents(down: StubLLMServer) -> tuple[Agent, Agent, Agent]:
    writer = Agent(role="Writer", goal="Write report sections", max_tokens=80)
    publisher = Agent(role="Publisher", goal="Publish reports", max_tokens=60)
    # The same publisher, but its service is down: same role and goal, so the
    # workflow's definition is unchanged and its checkpoints can be resumed.
    publisher_down = Agent(role="Publisher", goal="Publish reports", llm=down.llm)
    return writer, publisher, publisher_down


def guide_checkpoints(directory: Path, down: StubLLMServer) -> bool:
    writer, publisher, publisher_down = agents(down)
    tasks = {
        "summary": Task(description="Write a two-sentence summary of Q3 sales", agent=writer),
        "outlook": Task(description="Write a two-sentence outlook for Q4", agent=writer),
        "publish": Task(description="Publish the report and confirm", agent=publisher_down,
                        max_retries=0),
    }
    try:
        CheckpointedProcess(checkpoint_dir=directory, tasks=tasks, agents=[writer]).workflow()
    except TaskFailedError:
        print(f"  run 1 crashed at 'publish'; checkpoints: "
              f"{sorted(p.name for p in directory.glob('*.json'))}")
    tasks["publish"].agent = publisher  # the service is back
    CheckpointedProcess(checkpoint_dir=directory, tasks=tasks, agents=[writer]).workflow()
    files = sorted(p.name for p in directory.glob("*.json"))
    print(f"  run 2 finished; checkpoints: {files}")
    return files == ["outlook.json", "publish.json", "summary.json"]


def engine_checkpoints(directory: Path, down: StubLLMServer) -> bool:
    writer, publisher, publisher_down = agents(down)
    tasks = {
        "extract": Task(description="Extract the Q3 order totals", agent=writer),
        "transform": Task(description="Clean and normalize data", agent=writer,
                          context=["extract"]),
        "load": Task(description="Load into database and confirm", agent=publisher_down,
                     context=["transform"], max_retries=0),
    }
    process = Process(tasks=tasks, agents=[writer, publisher], checkpoint_dir=directory,
                      name="etl_checkpointed")
    try:
        process.workflow()
    except RunError as exc:
        run_id = process.last_result.run_id
        print(f"  run {run_id} failed: {str(exc)[:70]}")
    else:
        print("  expected the first run to fail")
        return False
    tasks["load"].agent = publisher  # the service is back
    resumed = Process(tasks=tasks, agents=[writer, publisher], checkpoint_dir=directory,
                      name="etl_checkpointed")
    results = resumed.workflow(resume=run_id)
    restored = resumed.last_result.resumed
    print(f"  resumed {run_id}: restored {restored}, ran "
          f"{[t for t in results if t not in restored]}")
    return sorted(restored) == ["extract", "transform"] and len(results) == 3


def main(directory: str | None = None) -> int:
    root = Path(directory or tempfile.mkdtemp(prefix="ray-orch-checkpoints-"))
    root.mkdir(parents=True, exist_ok=True)
    with StubLLMServer() as down:
        down.add_rule(fault="503")
        print(f"1. the guide's CheckpointedProcess ({root / 'guide'}):")
        ok_guide = guide_checkpoints(root / "guide", down)
        print(f"2. Process(checkpoint_dir=...) and workflow(resume=run_id) ({root / 'engine'}):")
        ok_engine = engine_checkpoints(root / "engine", down)
    return 0 if ok_guide and ok_engine else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
