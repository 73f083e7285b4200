"""Guide section: "Testing Task Workflows" (unit tests with Mock, an integration test).

The unit tests are the guide's, as written: a ``unittest.mock.Mock`` agent stands in for
the model and ``Task.execute()`` runs in this process (no Ray, no model). The integration
test runs a real ``Process`` on Ray against ``ray_orch.testing.StubLLMServer``, an
OpenAI-compatible server on 127.0.0.1 with scripted replies: "test agents with
predictable behavior" that still go through litellm over HTTP like a real provider.

Run:
    python examples/17_testing.py          (or: python -m pytest examples/17_testing.py)

No model or key is needed: the stub is part of the tests.
"""

from __future__ import annotations

import sys
import unittest
from unittest.mock import Mock

from ray_orch import Agent, Process, Task
from ray_orch.testing import StubLLMServer


class TestTaskWorkflow(unittest.TestCase):
    """Test individual tasks and workflows"""

    def test_task_execution(self):
        """Test single task execution"""
        mock_agent = Mock()
        mock_agent.chat.return_value = "Test result"

        task = Task(
            description="Test task",
            agent=mock_agent,
            expected_output="Test output"
        )

        result = task.execute()
        self.assertEqual(result.raw, "Test result")
        mock_agent.chat.assert_called_once()

    def test_task_retry(self):
        """Test task retry logic"""
        mock_agent = Mock()
        mock_agent.chat.side_effect = [
            Exception("First attempt failed"),
            Exception("Second attempt failed"),
            "Success on third attempt"
        ]

        task = Task(
            description="Retry test",
            agent=mock_agent,
            max_retries=3
        )

        result = task.execute()
        self.assertEqual(result.raw, "Success on third attempt")
        self.assertEqual(mock_agent.chat.call_count, 3)


def test_workflow_integration():
    """Test complete workflow execution"""
    with StubLLMServer(reply="stub answer") as stub:
        stub.add_rule(match="Second task", reply="second answer")
        # Create test agents with predictable behavior
        test_agents = [
            Agent(role="Test Agent 1", goal="Test", llm=stub.llm),
            Agent(role="Test Agent 2", goal="Test", llm=stub.llm)
        ]

        # Create test workflow
        test_tasks = {
            "task1": Task(description="First task", agent=test_agents[0]),
            "task2": Task(description="Second task", agent=test_agents[1], context=["task1"])
        }

        # Execute and verify
        process = Process(tasks=test_tasks, agents=test_agents)
        process.sequential()

        # Verify results
        assert test_tasks["task1"].status == "completed"
        assert test_tasks["task2"].status == "completed"
        assert test_tasks["task2"].result.raw == "second answer"
        # task2 saw task1's output in its prompt
        assert "stub answer" in stub.requests_matching("Second task")[0].prompt


def main() -> int:
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(TestTaskWorkflow)
    unit = unittest.TextTestRunner(verbosity=2).run(suite)
    try:
        test_workflow_integration()
    except AssertionError as exc:
        print(f"test_workflow_integration FAILED: {exc!r}")
        return 1
    print("test_workflow_integration ... ok")
    return 0 if unit.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
