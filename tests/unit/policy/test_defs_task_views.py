"""``Task.status`` / ``.result`` / ``.error`` are read-only views of the last run, kept
beside the task (``policy.outcomes``): in-process ``execute()`` writes nothing onto it,
and the guide's ``CheckpointedProcess`` shape (set ``task.result``, then ``execute()`` the
next task) still feeds context by name."""

from __future__ import annotations

import gc
from unittest.mock import Mock

import pytest

from ray_orch import Process, Task, TaskOutput
from ray_orch.core.errors import TaskFailedError
from ray_orch.policy import outcomes


def test_execute_shows_its_outcome_and_writes_nothing_onto_the_task():
    agent = Mock()
    agent.chat.return_value = "done"
    task = Task(description="Do it", agent=agent, max_retries=0)
    before = sorted(vars(task))

    assert task.status == "pending" and task.result is None
    output = task.execute()

    assert (task.status, task.result) == ("completed", output)
    assert sorted(vars(task)) == before and "status" not in vars(task)
    with pytest.raises(AttributeError):
        task.status = "failed"  # type: ignore[misc]  # a view, not a field


def test_a_failed_execute_keeps_its_error_beside_the_task():
    agent = Mock()
    agent.chat.side_effect = ValueError("bad request")
    task = Task(description="Fail", agent=agent, max_retries=0, validation_steps=0)
    with pytest.raises(TaskFailedError):
        task.execute()
    assert task.status == "failed" and task.error is not None and "error" not in vars(task)


def test_a_restored_result_feeds_the_next_task_by_name():
    agent = Mock()
    agent.chat.side_effect = lambda prompt: f"saw: {prompt}"
    tasks = {"first": Task(description="First", agent=agent),
             "second": Task(description="Second", agent=agent, context=["first"])}
    Process(tasks=tasks)  # peers: the second finds "first" by name
    tasks["first"].result = TaskOutput(raw="RESTORED-42")  # the guide's checkpoint restore

    output = tasks["second"].execute()

    assert "RESTORED-42" in output.raw
    assert "_peers" not in vars(tasks["second"])


def test_outcomes_forget_tasks_that_are_gone():
    task = Task(description="Short-lived", agent=Mock())
    outcomes.set_outcome(task, status="completed")
    held = len(outcomes._outcomes)
    del task
    gc.collect()
    assert len(outcomes._outcomes) <= held - 1  # (others may have gone too)
