"""B10: the runtime that starts itself (#31) and the standing runtime's memory (#32).

Part 1, one-shot scripts with nothing typed first (a private HOME, the defaults a user
gets): the W2 driver (``tests/integration/standing_driver.py``) as whole processes. The first one
finds no runtime and starts one in the background; the later ones join it. Beside them,
in the same run: Ray's own start (a process that does ``ray.init()`` and exits) and a
plain asyncio + aiohttp script of the same shape. Targets: first <= Ray's start + 1.5 s;
later <= 2.5x the asyncio script.

Part 2, memory: ``ray-orch up --idle-ttl 30``, its idle memory, two waves of 20
concurrent drivers, the most it held, and what it holds once the idle time has passed.
Targets: after <= 1.5x idle; never above the budget (``status``'s ``idle_budget``).

Usage: b10_auto_runtime.py [later scripts] [drivers per wave] (default 3 20).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from b8_one_shot import PLAIN, RAY_BARE, RAY_ONLY, _reply  # noqa: E402

from ray_orch.testing import StubLLMServer  # noqa: E402

DRIVER = ROOT / "tests" / "integration" / "standing_driver.py"


def _env(home: Path, stub: StubLLMServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "CI", "RAY_ORCH_RUNTIME_FILE")}
    env.update(HOME=str(home), STUB_BASE=stub.base_url, PYTHONPATH=str(ROOT),
               RAY_ORCH_PROGRESS="0", RAY_ORCH_AUTO_RUNTIME="1")
    env.update(extra)
    return env


def _wall(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def _status(env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-m", "ray_orch.cli", "status", "--json"],
                          env=env, capture_output=True, text=True, timeout=300)
    return json.loads(done.stdout)


def _median(label: str, times: list[float]) -> float:
    shown = " ".join(f"{t:.2f}" for t in times)
    print(f"{label:<32} median {statistics.median(times):6.2f} s   ({shown})", flush=True)
    return statistics.median(times)


def one_shot(stub: StubLLMServer, later: int) -> None:
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env = _env(home, stub)
        plain = _median("asyncio script", [_wall([py, "-c", PLAIN, stub.base_url], env)
                                            for _ in range(later)])
        ray_only = _median("Ray's own start (process)",
                           [_wall([py, "-c", RAY_ONLY], env) for _ in range(later)])
        bare = _median("  (without its dashboard)",
                       [_wall([py, "-c", RAY_BARE], env) for _ in range(later)])
        firsts, rest = [], []
        for _ in range(2):  # twice: the first script, the later ones, ray-orch down
            try:
                firsts.append(_wall([py, str(DRIVER)], env))
                rest += [_wall([py, str(DRIVER)], env) for _ in range(later)]
            finally:
                subprocess.run([py, "-m", "ray_orch.cli", "down"], env=env,
                               capture_output=True, timeout=300)
        first = _median("W2 first script (starts it)", firsts)
        rest_median = _median("W2 later scripts", rest)
        print(f"first - Ray's start {first - ray_only:+.2f} s (target <= +1.5; "
              f"{first - bare:+.2f} s over Ray without its dashboard); later / asyncio "
              f"{rest_median / plain:.2f}x (target <= 2.5)", flush=True)


def memory(stub: StubLLMServer, per_wave: int) -> None:
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env = _env(home, stub, RAY_ORCH_AUTO_RUNTIME="0")
        _wall([py, "-m", "ray_orch.cli", "up", "--idle-ttl", "30"], env)
        try:
            idle = _status(env)
            print(f"idle runtime: {idle['memory']['rss_mb']:.0f} MB in "
                  f"{idle['memory']['processes']} processes; budget "
                  f"{idle['extra'].get('idle_budget')}", flush=True)
            peak = [0.0]
            stop = threading.Event()

            def sample() -> None:
                from ray_orch.api.standing import _rss_mb, _session_pids

                while not stop.wait(1.0):
                    peak[0] = max(peak[0], _rss_mb(_session_pids(idle["session"])))

            watcher = threading.Thread(target=sample)
            watcher.start()
            for wave in (1, 2):
                drivers = [subprocess.Popen([py, str(DRIVER)], env=env,
                                            stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
                           for _ in range(per_wave)]
                codes = [d.wait(timeout=900) for d in drivers]
                after = _status(env)
                print(f"wave {wave}: {codes.count(0)}/{per_wave} drivers ok; runtime "
                      f"{after['memory']['rss_mb']:.0f} MB in "
                      f"{after['memory']['processes']} processes", flush=True)
            time.sleep(45)  # the idle time (30 s) and a reaping pass
            stop.set()
            watcher.join()
            settled = _status(env)
            ratio = settled["memory"]["rss_mb"] / idle["memory"]["rss_mb"]
            print(f"after the idle time: {settled['memory']['rss_mb']:.0f} MB "
                  f"({ratio:.2f}x idle, target <= 1.5); the most held {peak[0]:.0f} MB",
                  flush=True)
        finally:
            subprocess.run([py, "-m", "ray_orch.cli", "down"], env=env, capture_output=True,
                           timeout=300)


def main(later: int = 3, per_wave: int = 20) -> None:
    with StubLLMServer(handler=_reply) as stub:
        one_shot(stub, later)
        memory(stub, per_wave)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
