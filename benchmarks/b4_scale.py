"""B4: B1 at 100, 1,000 and 10,000 items (100 ms stub latency): per-task overhead should
stay flat; prints peak RSS of this driver + every Ray process (target <= 2 GB at 10,000).
Usage: b4_scale.py [sizes...]"""

from __future__ import annotations

import sys
import threading
import time

from _common import fmt, rss_mb_of_ray_and_self, start_ray
from b1_fan_out import workflow

from ray_orch.testing import StubLLMServer


def _sample(stop: threading.Event, peak: list[float]) -> None:
    while not stop.wait(0.5):
        peak[0] = max(peak[0], rss_mb_of_ray_and_self())


def main(sizes: list[int]) -> None:
    print(f"ray start: {fmt(start_ray())}")
    with StubLLMServer(latency=0.1) as stub:
        workflow(stub, 10, 2).workflow()
        for n in sizes:
            peak = [rss_mb_of_ray_and_self()]
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
                  f"  peak RSS (driver + Ray) {peak[0]:.0f} MB")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100, 1000, 10000])
