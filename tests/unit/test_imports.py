"""Every module imports on its own, first, in a fresh process. A Ray worker imports the
module of whatever it unpickles first (a checkpoint store, a rate-limit ticket, an
actor class), so an import cycle that a fixed import order hides breaks a worker."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def modules() -> list[str]:
    found = []
    for package in ("ray_orch", "actors"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.append(".".join(parts))
    return found


def import_alone(module: str) -> str | None:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    return None if done.returncode == 0 else f"{module}: {done.stderr.strip().splitlines()[-1]}"


@pytest.mark.slow  # a fresh interpreter per module (~100): 20-45 s on two cores
def test_every_module_imports_first_in_a_fresh_process():
    names = modules()
    assert "ray_orch.store.sqlite" in names and "actors.agent_actor" in names
    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [f for f in pool.map(import_alone, names) if f]
    assert not failures, "\n".join(failures)


def test_actor_processes_do_not_import_the_driver_side():
    # What an agent actor loads when it starts: not the run engine nor Process.
    code = ("import sys, actors.agent_actor; "
            "print(sorted(m for m in ('ray_orch.api.process', 'ray_orch.engine.run', "
            "'ray_orch.observe.analysis', 'litellm') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
