"""Shared fixtures: one Ray session for the whole test run (Ray takes ~5 s to start)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("RAY_ORCH_PROGRESS", "0")


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray for the whole session, started by ray-orch's own lifecycle code."""
    import ray

    from ray_orch._runtime import ensure_ray, shutdown_if_owned

    # Workers import test modules by name when a test's classes are pickled by reference.
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.pathsep.join([here, os.path.dirname(here)])
    ensure_ray(num_cpus=4, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    shutdown_if_owned()


@pytest.fixture
def stub():
    """A fresh stub OpenAI-compatible server on 127.0.0.1 (no latency, reply "ok")."""
    from ray_orch.testing import StubLLMServer

    with StubLLMServer() as server:
        yield server


@pytest.fixture
def kill_a_busy_member():
    """A function that SIGKILLs one agent actor with a task in flight and returns its
    pid (None if none was busy). Every member is asked at once and the first busy one to
    answer is killed: members that earlier tests killed may take seconds to answer."""
    import signal

    import ray

    from actors.agent_actor import get_registry

    def kill() -> int | None:
        pending = [h.info.remote() for h in ray.get(get_registry().members.remote())]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=5)
            if not ready:
                return None
            try:
                info = ray.get(ready[0])
            except Exception:  # a dead member
                continue
            if info["in_flight"] > 0:
                os.kill(info["pid"], signal.SIGKILL)
                return int(info["pid"])
        return None

    return kill
