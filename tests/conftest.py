"""Shared fixtures: one Ray session for the whole test run (Ray takes ~5 s to start)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("RAY_ORCH_PROGRESS", "0")
# Driver scripts the tests start run a private Ray (or the runtime a test started), never
# a self-started standing runtime that would outlive the test (tests of it turn it on).
os.environ.setdefault("RAY_ORCH_AUTO_RUNTIME", "0")


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray for the whole session, started by ray-orch's own lifecycle code."""
    import ray

    from ray_orch.api.runtime import ensure_ray, shutdown_if_owned

    # Workers import test modules (and the helpers beside them) by name when a test's
    # classes are pickled by reference: pytest's default "prepend" import mode puts each
    # test file's folder on sys.path, so the workers get the folders that use Ray.
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.pathsep.join([os.path.join(here, "integration"), here, os.path.dirname(here)])
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
def once_seen():
    """``with once_seen(stub, match, count, action):`` runs ``action`` in a thread as soon
    as the stub has seen ``count`` requests matching ``match`` while the block runs (a
    run to cancel, a member to kill mid-run); not at all if the block ends first."""
    import contextlib
    import threading

    @contextlib.contextmanager
    def watching(stub, match, count, action):
        ended = threading.Event()

        def wait_then_act():
            while stub.count(match) < count:
                if ended.wait(0.01):
                    return
            action()

        thread = threading.Thread(target=wait_then_act)
        thread.start()
        try:
            yield
        finally:
            ended.set()
            thread.join()

    return watching


class BusyMemberKiller:
    """Called, SIGKILLs one agent actor with a task in flight; ``killed`` lists the pids.
    Every member is asked at once and the first busy one to answer is killed: members
    that earlier tests killed may take seconds to answer."""

    def __init__(self) -> None:
        self.killed: list[int] = []

    def __call__(self) -> None:
        import signal

        import ray

        from actors.registry import get_registry

        pending = [h.info.remote() for h in ray.get(get_registry().members.remote())]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=5)
            if not ready:
                return
            try:
                info = ray.get(ready[0])
            except Exception:  # a dead member
                continue
            if info["in_flight"] > 0:
                os.kill(info["pid"], signal.SIGKILL)
                self.killed.append(int(info["pid"]))
                return


@pytest.fixture
def kill_a_busy_member():
    return BusyMemberKiller()


@pytest.fixture(scope="session")
def postgres_server():
    """A private PostgreSQL server on 127.0.0.1 for the whole test run (Debian's
    binaries, a cluster in a temp dir run as the ``postgres`` user); skipped where
    PostgreSQL is not installed (``.ci/run`` installs it)."""
    from ray_orch.testing.postgres import PostgresServer, postgres_available

    if not postgres_available():
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_dsn(postgres_server):
    """A DSN of a fresh, empty database on the session's PostgreSQL server."""
    import uuid

    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres_server.dsn.rsplit("/", 1)[0] + "/" + name
