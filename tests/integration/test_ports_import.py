"""``import ray_orch`` installs nothing process-wide, even in a process connected to Ray:
the cluster's shared services come in with a run (``Services.shared``), so a fresh
process connected to Ray imports the same modules, with the same module globals, as one
that is not, and neither has shared services installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

PROBE = textwrap.dedent("""
    import json, sys, types
    connect = sys.argv[1] == "ray"
    if connect:
        import ray
        ray.init(address="local", num_cpus=1, include_dashboard=False,
                 logging_level="ERROR", log_to_driver=False)
    import ray_orch
    import ray_orch.api.process, ray_orch.policy.breaker, ray_orch.model.ratelimit.client
    import ray_orch.model.embedded, ray_orch.tools.mcp
    from ray_orch.core import shared

    def fingerprint(module):
        return sorted(f"{k}:{type(v).__name__}" for k, v in vars(module).items()
                      if not isinstance(v, types.ModuleType))

    ours = {n: fingerprint(m) for n, m in sorted(sys.modules.items())
            if m is not None and n.split(".")[0] in ("ray_orch", "actors")}
    result = {"modules": ours, "installed": shared.installed() == shared.SharedServices(),
              "actors": "actors" in sys.modules}
    if connect:
        @ray.remote(num_cpus=0)
        def in_a_worker():
            import sys
            import ray_orch
            from ray_orch.core import shared
            return [shared.installed() == shared.SharedServices(), "actors" in sys.modules]
        result["worker"] = ray.get(in_a_worker.remote())
        ray.shutdown()
    print("PROBE" + json.dumps(result))
""")


def probe(mode: str, tmp_path) -> dict:
    env = {**os.environ, "HOME": str(tmp_path), "RAY_ADDRESS": "",
           "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("PROBE"))
    return json.loads(line[len("PROBE"):])


def test_importing_ray_orch_connected_to_ray_installs_nothing(tmp_path):
    plain = probe("plain", tmp_path)
    connected = probe("ray", tmp_path)
    assert connected["actors"] is False and plain["actors"] is False
    assert connected["installed"] and plain["installed"]
    assert connected["modules"] == plain["modules"]  # same modules, same globals
    assert connected["worker"] == [True, False]  # a plain Ray task joins nothing either
