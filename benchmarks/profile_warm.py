"""Where a warm step's milliseconds go: py-spy on the Supervisor, the members and the driver
while W3 (a 20-step chain of 50 ms calls) runs warm, again and again.

Prints, per process, the functions with the most CPU per step (inclusive, idle waits left
out), as milliseconds per chain step. py-spy samples CPU, not waiting: a cost that is a
wait (a Ray hop, a process waking up) shows as a gap between the stub's requests, which
``b3_chain.py`` prints beside its floor. Needs ``py-spy`` (the dev extra) and the right to
trace this user's processes. Usage: profile_warm.py [seconds] [agents] [top]
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import b3_chain
from _common import start_ray

from ray_orch.testing import StubLLMServer

RATE = 250  # samples a second
_IDLE = ("EpollSelector.select", "Condition.wait", "Worker.main_loop", "_worker (concurrent",
         "Event.wait", "select (selectors")


def py_spy() -> str:
    """The venv's ``py-spy`` beside this Python, else the one on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else "py-spy"


def members_and_supervisors() -> dict[str, int]:
    """This driver's Ray processes running a ``Supervisor`` or an ``AgentActor``."""
    import ray

    session = ray._private.worker._global_node.get_session_dir_path()
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
            parent = int((proc / "stat").read_text().rsplit(") ", 1)[1].split()[1])
            parent_cmd = Path(f"/proc/{parent}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        for cls in ("Supervisor", "AgentActor"):
            if cmd.startswith(f"ray::{cls}") and session in parent_cmd:
                found[f"{cls} {proc.name}"] = int(proc.name)
    return found


def top(path: Path, steps: int, count: int) -> list[tuple[float, str]]:
    """The ``count`` functions with the most CPU (ms per step, inclusive) in a py-spy
    ``raw`` profile, idle waits left out."""
    inclusive: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        frames = stack.split(";")
        if len(frames) < 2 or any(idle in frames[-1] for idle in _IDLE):
            continue
        for name in {re.sub(r":\d+\)$", ")", f) for f in frames[1:]}:
            inclusive[name] += int(samples)
    skip = ("threading.py", "asyncio/base_events.py", "asyncio/events.py",
            "default_worker.py")
    ranked = [(c / RATE * 1000 / steps, name) for name, c in inclusive.most_common()
              if not any(s in name for s in skip)]
    return ranked[:count]


def main(seconds: int = 20, agents: int = 1, count: int = 15) -> None:
    print(f"ray start: {start_ray():.1f} s")
    out = Path(tempfile.mkdtemp(prefix="profile-warm-"))
    with StubLLMServer(latency=0.05) as stub:
        for _ in range(2):  # warm: members, Supervisor, connections
            b3_chain.workflow(stub, agents).sequential()
        pids = {**members_and_supervisors(), f"driver {os.getpid()}": os.getpid()}
        spies = {name: subprocess.Popen(
            [py_spy(), "record", "--pid", str(pid), "--rate", str(RATE), "--duration",
             str(seconds + 2), "--format", "raw", "--nonblocking", "-o",
             str(out / f"{name.replace(' ', '-')}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for name, pid in pids.items()}
        time.sleep(1.0)
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds - 1:
            b3_chain.workflow(stub, agents).sequential()
            runs += 1
        for spy in spies.values():
            spy.wait()
    steps = runs * b3_chain.STEPS
    print(f"{runs} warm runs of W3 ({agents} agent{'s' if agents > 1 else ''}), {steps} steps;"
          " CPU ms per step, inclusive")
    for name in spies:
        path = out / f"{name.replace(' ', '-')}.txt"
        if not path.exists():
            print(f"{name}: no profile (py-spy needs ptrace rights here)")
            continue
        print(f"-- {name}")
        for ms, function in top(path, steps, count):
            print(f"  {ms:6.2f}  {function[:110]}")


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:]])
