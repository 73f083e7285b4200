"""``AgentPool``: the guide's "Resource Pooling", made real.

N agent actors made from one agent template; ``execute_task`` sends a task to the
least-loaded member and returns a future at once; when every member already runs
``max_concurrency`` tasks, it blocks until one finishes (backpressure), so a loop that
submits 10,000 tasks never floods the cluster.
"""

from __future__ import annotations

import concurrent.futures
import threading
import uuid
from typing import Any

from ray_orch.core.output import TaskOutput
from ray_orch.engine.messages import TaskRequest
from ray_orch.policy.agent import Agent
from ray_orch.policy.outcomes import set_outcome
from ray_orch.policy.task import Task

__all__ = ["AgentPool"]


class AgentPool:
    """A pool of agent actors made from one template.

    Args:
        agent_template: an ``Agent``, or the keyword arguments of one
            (``{"role": "Data Processor", "goal": "Process data efficiently"}``).
        pool_size: how many actors.
        max_concurrency: tasks one member runs at once (default: the template's).

    Example:
        >>> from ray_orch import Task
        >>> from ray_orch.testing import StubLLMServer
        >>> with StubLLMServer(reply="processed") as model:
        ...     pool = AgentPool({"role": "Data Processor", "goal": "Process data",
        ...                       "llm": model.llm}, pool_size=2)
        ...     futures = [pool.execute_task(Task(description=f"Process record {i}"))
        ...                for i in range(4)]
        ...     outputs = [f.result() for f in futures]
        ...     pool.close()
        >>> [o.raw for o in outputs]
        ['processed', 'processed', 'processed', 'processed']
    """

    def __init__(self, agent_template: dict[str, Any] | Agent, pool_size: int = 5,
                 max_concurrency: int | None = None) -> None:
        from actors.registry import get_registry
        from ray_orch.api.runtime import ensure_ray
        from ray_orch.engine.messages import Binding, LeaseRequest, RunOptions
        from ray_orch.engine.placement import placement_options

        template = agent_template if isinstance(agent_template, Agent) else Agent(**agent_template)
        self.agent = template
        _ = template.llm_config  # resolve the model on the driver
        self.pool_size = pool_size
        self.capacity = max_concurrency or template.max_concurrency
        ensure_ray()
        self._registry = get_registry()
        self._placement_key, options = placement_options(template)
        import ray

        self.members = ray.get(self._registry.lease.remote(LeaseRequest(
            placement_key=self._placement_key, count=pool_size, options=options)))
        self.agents = [template] * pool_size  # the guide's attribute
        self._run_id = f"pool-{uuid.uuid4().hex[:8]}"
        self._key = template.key()
        self._in_flight = [0] * pool_size
        self._free = threading.Condition()
        from actors import cluster_services

        binding = Binding(run_id=self._run_id, agents={self._key: template}, tasks={},
                          prewarm=False, options=RunOptions(shared=cluster_services()))
        ray.get([m.bind.remote(binding) for m in self.members])

    def _acquire(self) -> int:
        with self._free:
            while True:
                index = min(range(self.pool_size), key=self._in_flight.__getitem__)
                if self._in_flight[index] < self.capacity:
                    self._in_flight[index] += 1
                    return index
                self._free.wait()

    def _release(self, index: int) -> None:
        with self._free:
            self._in_flight[index] -= 1
            self._free.notify()

    def get_available_agent(self) -> int:
        """The index of the least-loaded member (waits while all are full)."""
        index = self._acquire()
        self._release(index)
        return index

    def execute_task(self, task: Task, inputs: dict[str, Any] | None = None
                     ) -> concurrent.futures.Future[TaskOutput]:
        """Run a task on the least-loaded member.

        Args:
            task: the task; its own ``agent`` is ignored (the pool's template runs it).
            inputs: values for ``{placeholders}`` in its description.

        Returns:
            A future of the task's ``TaskOutput``.

        Raises:
            TaskFailedError: from ``future.result()``, when the task failed.
        """
        index = self._acquire()
        member = self.members[index]
        ref = member.run_task.remote(TaskRequest(agent_key=self._key, task=task, inputs=inputs,
                                                 run_id=self._run_id))
        future: concurrent.futures.Future[TaskOutput] = ref.future()

        def done(f: concurrent.futures.Future[TaskOutput]) -> None:
            self._release(index)
            # The task's views (status, result) show this run; the task is not written.
            if f.exception() is None:
                set_outcome(task, status="completed", result=f.result())
            else:
                set_outcome(task, status="failed")

        set_outcome(task, status="running")
        future.add_done_callback(done)
        return future

    @property
    def in_flight(self) -> int:
        """Tasks running on the pool right now."""
        return sum(self._in_flight)

    def close(self) -> None:
        """Give the members back for reuse."""
        self._registry.give_back.remote(self._placement_key, self.members)
        self.members = []
