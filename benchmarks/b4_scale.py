"""B4: B1 at 100, 1,000 and 10,000 items (100 ms stub latency): per-task overhead should
stay flat; prints peak RSS of this driver + every Ray process (target <= 2 GB at 10,000).
Usage: b4_scale.py [sizes...]"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from _common import fmt, rss_by_process, rss_mb_of_ray_and_self, start_ray
from b1_fan_out import workflow

from ray_orch.testing import StubLLMServer


def _sample(stop: threading.Event, peak: list[Any]) -> None:
    while not stop.wait(0.5):
        by_process = rss_by_process()
        total = sum(by_process.values())
        if total > peak[0]:
            peak[:] = [total, by_process]


def main(sizes: list[int]) -> None:
    print(f"ray start: {fmt(start_ray())}")
    with StubLLMServer(latency=0.1) as stub:
        workflow(stub, 10, 2).workflow()
        for n in sizes:
            peak: list[Any] = [rss_mb_of_ray_and_self(), {}]
            stop = threading.Event()
            sampler = threading.Thread(target=_sample, args=(stop, peak), daemon=True)
            sampler.start()
            stub.clear()
            started = time.perf_counter()
            workflow(stub, n, 2).workflow()
            took = time.perf_counter() - started
            stop.set()
            sampler.join()
            assert stub.count() == n + 2
            print(f"B4 N={n}: makespan {fmt(took)}  per task {took / n * 1000:.2f} ms"
                  f"  overhead per task (beyond the 0.3 s ideal) {(took - 0.3) / n * 1000:.2f} ms"
                  f"  peak RSS (driver + Ray) {peak[0]:.0f} MB")
            top = sorted(peak[1].items(), key=lambda kv: -kv[1])[:8]
            print("    at the peak: " + ", ".join(f"{name} {mb:.0f}" for name, mb in top))


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100, 1000, 10000])
