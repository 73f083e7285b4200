"""The guide's "Unit Testing Tasks" section, as written (imports changed)."""

import unittest
from unittest.mock import Mock

from ray_orch import Task


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
