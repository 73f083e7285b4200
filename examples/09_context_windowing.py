"""Guide section: "Context Windowing" (a sliding window over a long document).

Each chunk of a long document becomes a task whose context is only the previous
``window_size`` chunk tasks, so the prompt stays bounded however long the document is.
The guide's loop builds the tasks; a Process runs them (each chunk starts as soon as the
chunks in its window are done).

Run:
    python examples/09_context_windowing.py

Model: ``RAY_ORCH_MODEL`` when set, else the embedded offline model.
"""

from __future__ import annotations

import sys

from ray_orch import Agent, Process, RunError, Task

document_chunks = [
    "The city council met on Monday to discuss the new cycling lanes.",
    "Residents on Elm Street worried about losing parking spaces.",
    "The transport office showed that cycling rose 30% where lanes were built.",
    "Shop owners asked for delivery zones to be kept open in the mornings.",
    "The council agreed to a six-month trial on two streets.",
    "A review with residents and shop owners is planned for next spring.",
]


def main() -> int:
    processor = Agent(role="Processor", goal="Summarise a document chunk by chunk",
                      max_tokens=60)
    chunk_tasks: list[Task] = []

    # Process long document with context window
    window_size = 3

    for i in range(len(document_chunks)):
        # Get context window
        start_idx = max(0, i - window_size)
        context_chunks = chunk_tasks[start_idx:i]  # the tasks of the previous chunks

        task = Task(
            description=f"Process chunk {i}: summarise it in one sentence, using the "
                        f"earlier chunks only as background.\nChunk {i}: {document_chunks[i]}",
            agent=processor,
            context=context_chunks,
            expected_output="Processed chunk",
            name=f"chunk_{i}",
        )
        chunk_tasks.append(task)

    process = Process(tasks=chunk_tasks, agents=[processor], name="context_window")
    try:
        results = process.workflow()
    except RunError as exc:
        print(f"run failed: {exc}")
        return 1

    for task in chunk_tasks:
        window = [c.id for c in task.context or []]
        print(f"{task.id} (window: {', '.join(window) or '-'}): {results[task.id].raw[:80]!r}")
    return 0 if len(results) == len(document_chunks) else 1


if __name__ == "__main__":
    sys.exit(main())
