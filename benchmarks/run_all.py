"""Run every benchmark, one process each (so each starts from a clean Ray)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for script, args in (("b3_chain.py", []), ("b3_chain.py", ["5", "3"]),
                     ("b2_mixed_latency.py", []),
                     ("b1_fan_out.py", ["1000", "3"]), ("b1_fan_out.py", ["1000", "3", "0"]),
                     ("b11_first_run.py", []),
                     ("b4_scale.py", []), ("b5_b6_startup.py", []), ("b7_tools.py", []),
                     ("b8_one_shot.py", []), ("b9_stream.py", []), ("b10_auto_runtime.py", []),
                     ("_baseline.py", [])):
    print(f"== {script} {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, str(HERE / script), *args], check=False)
