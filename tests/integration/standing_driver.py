"""A driver script run as its own process against a standing runtime (tests/integration/test_standing.py,
benchmarks/b8_one_shot.py): the W2 shape, 3 agents and 7 model calls, or a chain.

Environment: ``STUB_BASE`` (the stub's URL), ``SHAPE`` (``w2`` or ``chain:N``),
``TEMPERATURE`` (a model option; changing it must start no process), ``PID_FILE``
(where the Supervisor's pid is written as soon as the run has one). Prints one JSON
line: each task's reply and the pid of the member that ran it, and the wall time.
"""

import json
import os
import sys
import threading
import time

start = time.perf_counter()

from ray_orch import Agent, Process, Task  # noqa: E402


def agents():
    llm = {"model": "openai/stub", "base_url": os.environ["STUB_BASE"], "api_key": "sk-stub",
           "temperature": float(os.environ.get("TEMPERATURE", "0"))}
    return [Agent(role=role, goal=f"{role} well", llm=dict(llm))
            for role in ("Researcher", "Analyst", "Writer")]


def w2():
    researcher, analyst, writer = agents()
    tasks = {"plan": Task(description="[plan] Plan the report", agent=researcher)}
    for i in (1, 2, 3):
        tasks[f"facts{i}"] = Task(description=f"[facts{i}] Find facts {i}", agent=researcher
                                  if i == 1 else analyst, context=["plan"])
    tasks["analyse"] = Task(description="[analyse] Analyse", agent=analyst,
                            context=["facts1", "facts2", "facts3"])
    tasks["draft"] = Task(description="[draft] Draft", agent=writer, context=["analyse"])
    tasks["edit"] = Task(description="[edit] Edit", agent=writer, context=["draft"])
    return Process(tasks=tasks, agents=[researcher, analyst, writer], name="w2")


def chain(n):
    researcher, _, _ = agents()
    tasks = {f"step{i}": Task(description=f"[step{i}] Step {i}", agent=researcher,
                              context=[f"step{i - 1}"] if i else [])
             for i in range(n)}
    return Process(tasks=tasks, agents=[researcher], name="chain")


def watch_supervisor(process, path):
    import ray

    while process._supervisor is None:
        time.sleep(0.01)
    info = ray.get(process._supervisor.info.remote())
    with open(path + ".tmp", "w") as out:
        out.write(str(info["pid"]))
    os.replace(path + ".tmp", path)


def main():
    shape = os.environ.get("SHAPE", "w2")
    process = w2() if shape == "w2" else chain(int(shape.split(":")[1]))
    if os.environ.get("PID_FILE"):
        # Ray imported here, before the watcher thread: two threads importing Ray's
        # package at once can see it half-initialized ("cannot import name decode").
        import ray  # noqa: F401

        threading.Thread(target=watch_supervisor, args=(process, os.environ["PID_FILE"]),
                         daemon=True).start()
    runs = int(os.environ.get("RUNS", "1"))
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        results = process.workflow()
        times.append(time.perf_counter() - began)
    print(json.dumps({"replies": {k: v.raw for k, v in results.items()},
                      "pids": {k: v.metadata.get("actor_pid") for k, v in results.items()},
                      "runs": times, "wall": time.perf_counter() - start}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
