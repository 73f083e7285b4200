"""Run every benchmark, one process each (so each starts from a clean private Ray).

The warm workloads run on a private Ray per script (``RAY_ORCH_AUTO_RUNTIME=0`` and a
runtime file of their own, so neither a runtime the user has up nor one a benchmark
would start is measured), then W3 and W2 again on the runtime a script starts by
itself (a user's default, every run journaled); b8 and b10 time whole scripts, cold, with ``ray-orch up`` and
with the runtime that starts itself, each in a private HOME.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def standing(private: str) -> None:
    """W3 and W2 on the runtime a script starts by itself (a user's default: every run
    journaled to its run store), in a HOME of their own; the runtime is stopped after."""
    home = os.path.join(private, "home")
    os.makedirs(home, exist_ok=True)
    env = {**os.environ, "HOME": home, "RAY_ORCH_AUTO_RUNTIME": "1",
           "RAY_ORCH_RUNTIME_FILE": os.path.join(home, "runtime.json")}
    env.pop("RAY_ADDRESS", None)
    env.pop("CI", None)
    for script in ("b3_chain.py", "b2_mixed_latency.py"):
        print(f"== {script} (standing runtime, journaled)", flush=True)
        subprocess.run([sys.executable, str(HERE / script)], check=False, env=env)
    subprocess.run([str(Path(sys.executable).with_name("ray-orch")), "down"], check=False,
                   env=env, stdout=subprocess.DEVNULL)
with tempfile.TemporaryDirectory() as private:
    env = {**os.environ, "RAY_ORCH_AUTO_RUNTIME": "0",
           "RAY_ORCH_RUNTIME_FILE": os.path.join(private, "runtime.json")}
    env.pop("RAY_ADDRESS", None)
    for script, args in (("b3_chain.py", []), ("b3_chain.py", ["5", "3"]),
                         ("b2_mixed_latency.py", []),
                         ("b1_fan_out.py", ["1000", "3"]), ("b1_fan_out.py", ["1000", "3", "0"]),
                         ("b11_first_run.py", []),
                         ("b4_scale.py", []), ("b5_b6_startup.py", []), ("b7_tools.py", []),
                         ("b8_one_shot.py", []), ("b9_stream.py", []),
                         ("b10_auto_runtime.py", []), ("_baseline.py", [])):
        print(f"== {script} {' '.join(args)}", flush=True)
        subprocess.run([sys.executable, str(HERE / script), *args], check=False, env=env)
        if script == "b2_mixed_latency.py":  # W3 and W2 as a user gets them by default
            standing(private)
