"""The standing runtime's parts that need no Ray: finding the runtime file, falling back
when it names a runtime that is gone, and a standing member's memory not growing with
runs (agents of unbound runs are dropped)."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import asdict

from ray_orch.api import standing
from ray_orch.engine.member import AgentMember
from ray_orch.engine.messages import Binding


def test_the_runtime_file_is_overridable_and_a_stale_one_is_ignored(tmp_path, monkeypatch):
    path = tmp_path / "runtime.json"
    monkeypatch.setenv("RAY_ORCH_RUNTIME_FILE", str(path))
    assert standing.runtime_file() == path
    assert standing.discover() is None  # no file: the driver starts its own Ray
    with socket.socket() as sock:  # a port nobody listens on any more
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    info = standing.RuntimeInfo(address=f"127.0.0.1:{port}", state_dir=str(tmp_path))
    path.write_text(json.dumps(asdict(info)))
    assert standing.read_runtime() == info
    assert standing.discover() is None  # a runtime that is gone
    path.write_text("{not json")
    assert standing.read_runtime() is None


def test_a_live_runtime_is_found_unless_the_driver_names_another_address(tmp_path,
                                                                          monkeypatch):
    path = tmp_path / "runtime.json"
    monkeypatch.setenv("RAY_ORCH_RUNTIME_FILE", str(path))
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"127.0.0.1:{listening.getsockname()[1]}"
        info = standing.RuntimeInfo(address=address, auth_mode="token",
                                    state_dir=str(tmp_path))
        path.write_text(json.dumps(asdict(info)))
        assert standing.discover() == info
        assert standing.discover(address) == info
        assert standing.discover("127.0.0.1:1") is None


def test_a_member_forgets_the_agents_of_runs_it_no_longer_serves():
    member = AgentMember()

    async def go():
        await member.bind(Binding(run_id="run1", agents={"agent-a": object(),
                                                         "agent-b": object()},
                                  tasks={}, prewarm=False))
        await member.bind(Binding(run_id="run2", agents={"agent-b": object()}, tasks={},
                                  prewarm=False))
        member.unbind("run1")
        assert set(member.agents) == {"agent-b"}  # run2 still uses it
        member.unbind("run2")
        assert member.agents == {} and member.run_agents == {}

    asyncio.run(go())
