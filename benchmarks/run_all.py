"""Run every benchmark, one process each (so each starts from a clean private Ray).

The warm workloads run on a private Ray per script (``RAY_ORCH_AUTO_RUNTIME=0`` and a
runtime file of their own, so neither a runtime the user has up nor one a benchmark
would start is measured); b8 and b10 time whole scripts, cold, with ``ray-orch up`` and
with the runtime that starts itself, each in a private HOME.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
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
