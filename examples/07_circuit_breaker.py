"""Guide section: "The Circuit Breaker Pattern" (stop calling a failing service).

Part 1 is the guide's ``CircuitBreakerTask`` as written: after ``failure_threshold``
failures in a row it stops calling the service for ``timeout`` seconds and returns
"Circuit breaker open" instead. Its state lives in the Task object, so it protects the
calls made through that object (here: ``execute()`` in this process).

Part 2 is ray-orch's ``CircuitBreaker``: attach it to a task (or an agent) and its state
is shared by every run, pool member and node (one Ray actor per breaker name), so
three separate runs see one circuit.

The payments service is a local stand-in that always answers HTTP 503
(``ray_orch.testing.StubLLMServer``), so the example behaves the same every time.

Run:
    python examples/07_circuit_breaker.py
"""

from __future__ import annotations

import sys
import time
import uuid

from ray_orch import (
    Agent,
    CircuitBreaker,
    Process,
    Task,
    TaskFailedError,
    TaskOutput,
)
from ray_orch.testing import StubLLMServer


class CircuitBreakerTask(Task):
    """Task with circuit breaker pattern"""

    def __init__(self, failure_threshold=3, timeout=60, **kwargs):
        super().__init__(**kwargs)
        self.failure_count = 0
        self.failure_threshold = failure_threshold
        self.last_failure_time = None
        self.timeout = timeout

    def execute(self):
        # Check if circuit is open
        if self.failure_count >= self.failure_threshold:  # noqa: SIM102 (the guide's shape)
            if time.time() - self.last_failure_time < self.timeout:
                return TaskOutput(
                    raw="Circuit breaker open - service temporarily unavailable",
                    metadata={"circuit_status": "open"}
                )

        try:
            result = super().execute()
            self.failure_count = 0  # Reset on success
            return result
        except Exception as e:
            self.failure_count += 1
            self.last_failure_time = time.time()
            raise e


def guide_breaker(payments: StubLLMServer) -> bool:
    payments_agent = Agent(role="Payments", goal="Charge cards", llm=payments.llm)
    charge = CircuitBreakerTask(description="Charge the customer's card", agent=payments_agent,
                                name="charge", max_retries=0, failure_threshold=3, timeout=60)
    for call in range(1, 6):
        try:
            output = charge.execute()
            print(f"  call {call}: {output.raw} ({output.metadata.get('circuit_status')})")
        except TaskFailedError as exc:
            print(f"  call {call}: failed (failure_count={charge.failure_count}): "
                  f"{str(exc)[:90]}")
    print(f"  the service was called {payments.count()} times for 5 calls")
    return payments.count() == 3


def shared_breaker(payments: StubLLMServer) -> bool:
    payments.clear()
    breaker = CircuitBreaker(failure_threshold=2, timeout=60,
                             name=f"payments-api-{uuid.uuid4().hex[:6]}")
    payments_agent = Agent(role="Payments", goal="Charge cards", llm=payments.llm)
    opened = False
    for run in range(1, 4):
        task = Task(description="Charge the customer's card", agent=payments_agent,
                    max_retries=0, circuit_breaker=breaker)
        process = Process(tasks={"charge": task}, agents=[payments_agent],
                          on_failure="continue", name="payments")
        results = process.workflow()
        if "charge" in results:
            print(f"  run {run}: {results['charge'].raw} "
                  f"({results['charge'].metadata['circuit_status']})")
            opened = results["charge"].metadata["circuit_status"] == "open"
        else:
            print(f"  run {run}: {task.status}: {process.last_result.errors['charge'][:80]}")
    print(f"  the service was called {payments.count()} times in 3 runs")
    return opened and payments.count() == 2


def main() -> int:
    with StubLLMServer() as payments:
        payments.add_rule(fault="503")  # the payments service is down
        print("1. the guide's CircuitBreakerTask (state in the Task object):")
        ok_guide = guide_breaker(payments)
        print("2. ray-orch's CircuitBreaker (state shared by every run, pool and node):")
        ok_shared = shared_breaker(payments)
    return 0 if ok_guide and ok_shared else 1


if __name__ == "__main__":
    sys.exit(main())
