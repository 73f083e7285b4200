"""Guide section: "Caching Strategies" (CachedTask, and Task(cache_ttl=...)).

Part 1 is the guide's ``CachedTask`` as written: a result cache inside the Task object,
keyed by description and inputs, for calls to ``execute()`` on that object.

Part 2 is ray-orch's cache: ``Task(cache_ttl=...)`` (or ``Process(cache=True)`` for every
task) keeps results in one cache actor for the whole cluster, keyed by model, agent,
prompt, context and output schema; a second run with the same inputs is served from it
without a model call (``output.metadata["cache"] == "hit"``).

Run:
    python examples/12_caching.py

Model: ``RAY_ORCH_MODEL`` when set, else the embedded offline model.
"""

from __future__ import annotations

import hashlib
import sys
import time
import uuid

from ray_orch import Agent, Process, RunError, Task


class CachedTask(Task):
    """Task with result caching"""

    def __init__(self, cache_ttl=3600, **kwargs):
        super().__init__(**kwargs)
        self.cache_ttl = cache_ttl
        self.cache = {}

    def get_cache_key(self, inputs):
        """Generate cache key from inputs"""
        key_str = f"{self.description}:{inputs}"
        return hashlib.md5(key_str.encode()).hexdigest()

    def execute(self, inputs=None):
        cache_key = self.get_cache_key(inputs)

        # Check cache
        if cache_key in self.cache:
            cached_result, timestamp = self.cache[cache_key]
            if time.time() - timestamp < self.cache_ttl:
                return cached_result

        # Execute and cache
        result = super().execute()
        self.cache[cache_key] = (result, time.time())
        return result


def timed(call):
    started = time.perf_counter()
    value = call()
    return value, time.perf_counter() - started


def main() -> int:
    # A run id in the description keeps this demo's results apart from earlier runs.
    tag = uuid.uuid4().hex[:6]
    writer = Agent(role="Writer", goal="Write product blurbs", max_tokens=60)

    print("1. the guide's CachedTask (in this process):")
    blurb = CachedTask(description=f"Write a one-line blurb for a steel water bottle ({tag})",
                       agent=writer, cache_ttl=3600)
    first, t_first = timed(blurb.execute)
    again, t_again = timed(blurb.execute)
    print(f"  first call {t_first:.2f} s, second call {t_again:.4f} s, "
          f"same object: {again is first}")

    print("2. Task(cache_ttl=...) in a process (one cache for the cluster):")
    outcomes = []
    for run in (1, 2):
        task = Task(description=f"Write a one-line blurb for a bamboo toothbrush ({tag})",
                    agent=writer, cache_ttl=600)
        process = Process(tasks={"blurb": task}, agents=[writer], name="caching")
        try:
            output, seconds = timed(process.workflow)
        except RunError as exc:
            print(f"  run {run} failed: {exc}")
            return 1
        outcomes.append(output["blurb"].metadata.get("cache"))
        print(f"  run {run}: cache {outcomes[-1]}, {seconds:.2f} s: "
              f"{output['blurb'].raw[:60]!r}")
    return 0 if again is first and outcomes == ["miss", "hit"] else 1


if __name__ == "__main__":
    sys.exit(main())
