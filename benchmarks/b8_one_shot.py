"""B8: one-shot driver scripts, whole processes, wall time from exec to exit.

The W2 shape (``tests/integration/standing_driver.py``: 3 agents, 7 model calls of 50-100 ms,
critical path 0.30 s) run as a fresh Python process each time:
- ``asyncio``: a plain asyncio + aiohttp script of the same shape (the floor);
- ``cold``: no runtime up: the driver starts its own private Ray (compared with Ray's
  own start: a process that only does ``ray.init()`` with its defaults and exits; the
  same without the dashboard is printed beside);
- ``standing``: after ``ray-orch up`` (timed apart): the first script and later ones.
Targets: standing wall <= 2.5 s, standing first <= 1.2 x standing later, cold <= Ray's
own start + 2 s. Usage: b8_one_shot.py [scripts per kind] (default 3).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ray_orch.testing import StubLLMServer  # noqa: E402

DRIVER = ROOT / "tests" / "integration" / "standing_driver.py"
LATENCY = {"[plan]": 0.05, "[facts1]": 0.1, "[facts2]": 0.1, "[facts3]": 0.1,
           "[analyse]": 0.05, "[draft]": 0.05, "[edit]": 0.05}

PLAIN = """
import asyncio, sys, aiohttp
URL = sys.argv[1] + "/chat/completions"
async def ask(session, text):
    body = {"model": "stub", "messages": [{"role": "user", "content": text}]}
    async with session.post(URL, json=body, headers={"Authorization": "Bearer sk"}) as r:
        return (await r.json())["choices"][0]["message"]["content"]
async def main():
    async with aiohttp.ClientSession() as s:
        plan = await ask(s, "[plan] Plan the report")
        facts = await asyncio.gather(*(ask(s, f"[facts{i}] Find facts {i} " + plan)
                                       for i in (1, 2, 3)))
        analysis = await ask(s, "[analyse] Analyse " + " ".join(facts))
        draft = await ask(s, "[draft] Draft " + analysis)
        print(await ask(s, "[edit] Edit " + draft))
asyncio.run(main())
"""

RAY_ONLY = """
import os, ray
ray.init(address="local", log_to_driver=False)
ray.shutdown()
"""
"""Ray's own start, as a user gets it (``ray.init()``: a new local Ray, its dashboard
included) and shutdown: the issue's reference."""

RAY_BARE = RAY_ONLY.replace('log_to_driver=False', 'log_to_driver=False, include_dashboard=False')
"""The same without the dashboard: the leanest Ray start (printed beside, for scale)."""


async def _reply(request) -> str:
    for marker, seconds in LATENCY.items():
        if marker in request.prompt:
            await asyncio.sleep(seconds)
            break
    return "ok"


def _env(runtime: Path, stub: StubLLMServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env.update({"RAY_ORCH_RUNTIME_FILE": str(runtime), "STUB_BASE": stub.base_url,
                "PYTHONPATH": str(ROOT), "RAY_ORCH_PROGRESS": "0",
                "RAY_ORCH_AUTO_RUNTIME": "0",  # cold means a private Ray per script (b10: auto)
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"})
    return env


def _wall(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{done.stderr[-3000:]}")
    return took


def _line(label: str, times: list[float]) -> None:
    shown = " ".join(f"{t:.2f}" for t in times)
    print(f"{label:<28} median {statistics.median(times):6.2f} s   ({shown})", flush=True)


def main(count: int) -> None:
    py = sys.executable
    with StubLLMServer(handler=_reply) as stub, tempfile.TemporaryDirectory() as tmp:
        runtime = Path(tmp) / "runtime.json"
        env = _env(runtime, stub)
        plain = [_wall([py, "-c", PLAIN, stub.base_url], env) for _ in range(count)]
        _line("asyncio script", plain)
        ray_only = [_wall([py, "-c", RAY_ONLY], env) for _ in range(count)]
        _line("Ray's own start (process)", ray_only)
        _line("  (without its dashboard)", [_wall([py, "-c", RAY_BARE], env)
                                           for _ in range(count)])
        cold = [_wall([py, str(DRIVER)], env) for _ in range(count)]
        _line("W2 cold (private Ray)", cold)
        up = _wall([py, "-m", "ray_orch.cli", "up"], env)
        print(f"{'ray-orch up':<28} {up:6.2f} s   (Ray's start "
              f"{up - statistics.median(ray_only):+.2f} s, target <= +2)", flush=True)
        try:
            standing = [_wall([py, str(DRIVER)], env) for _ in range(count + 1)]
        finally:
            _wall([py, "-m", "ray_orch.cli", "down"], env)
        _line("W2 standing, first", standing[:1])
        _line("W2 standing, later", standing[1:])
        later = statistics.median(standing[1:])
        print(f"standing wall {later:.2f} s (target <= 2.5); first / later "
              f"{standing[0] / later:.2f} (target <= 1.2); cold - Ray's start "
              f"{statistics.median(cold) - statistics.median(ray_only):+.2f} s (target <= 2); "
              f"vs asyncio {later / statistics.median(plain):.1f}x", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
