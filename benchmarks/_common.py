"""Shared set-up of the benchmarks: a stub on loopback, a local Ray, timing helpers.

Each benchmark times only the orchestration call; imports, Ray start-up and one warm-up
run (actor start, litellm import) are reported apart. Figures are medians of ``repeat``
runs; compare ratios measured in one run, since this machine is noisy.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RAY_ORCH_PROGRESS", "0")


def start_ray() -> float:
    """Start (or connect to) Ray; returns the seconds it took."""
    from ray_orch.api.runtime import ensure_ray

    started = time.perf_counter()
    ensure_ray()
    return time.perf_counter() - started


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, list[float]]:
    """Median and all times of ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def rss_by_process() -> dict[str, float]:
    """Resident memory (MB) of this process and of every Ray process of this machine,
    keyed by ``pid name`` (Ray's process title, e.g. ``ray::Supervisor``)."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if int(pid) == os.getpid() or "ray" in cmd.lower() or "raylet" in cmd or "gcs_server" in cmd:
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    name = "driver" if int(pid) == os.getpid() else cmd.split("\0")[0].strip()
                    found[f"{pid} {Path(name.split()[0]).name if '/' in name else name}"] = (
                        int(line.split()[1]) / 1024)
    return found


def rss_mb_of_ray_and_self() -> float:
    """Resident memory (MB) of this process plus every Ray process of this machine."""
    return sum(rss_by_process().values())


def fmt(seconds: float) -> str:
    return f"{seconds:.3f} s"
