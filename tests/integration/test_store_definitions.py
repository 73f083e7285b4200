"""A paused run's stored definition is authenticated: ``ray-orch approve`` refuses one
changed by someone without the store key, unpickles nothing and runs nothing."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from ray_orch import Agent, Process, RunPaused, StoreIntegrityError, Task
from ray_orch.store.factory import open_store

pytestmark = pytest.mark.usefixtures("ray_session")
ROOT = Path(__file__).resolve().parents[2]


class _Planted:
    """What an attacker with write access to the store plants: unpickling it writes a
    file (it could run anything)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_tampered_definition_is_refused_and_runs_nothing(stub, store_spec, tmp_path):
    writer = Agent(role="Writer", goal="Write", llm=stub.llm)
    tasks = {"draft": Task(description="Draft the post", agent=writer, human_input=True),
             "publish": Task(description="Publish the post", agent=writer,
                             context=["draft"])}
    with pytest.raises(RunPaused) as caught:
        Process(tasks=tasks, agents=[writer], store=store_spec).workflow()
    run_id, request = caught.value.run_id, caught.value.requests[0]
    store = open_store(store_spec)
    mode, _, tag = store.load_definition(run_id)
    marker = tmp_path / "pwned"
    store.save_definition(run_id, workflow="workflow", mode=mode,
                          blob=pickle.dumps(_Planted(str(marker))), tag=tag)
    asked = stub.count()

    from ray_orch.cli.runs import continue_paused

    with pytest.raises(StoreIntegrityError, match=f"run '{run_id}'.*failed its authentication"):
        continue_paused(store_spec, run_id, {request.id: "approve"})
    cli = subprocess.run([sys.executable, "-m", "ray_orch.cli", "approve", run_id, request.id,
                          "--store", store_spec], capture_output=True, text=True, timeout=120,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "failed its authentication" in cli.stderr and "nothing ran" in cli.stderr
    assert not marker.exists()  # nothing was unpickled
    assert stub.count() == asked  # nothing ran
    assert store.pending_requests(run_id)[0]["id"] == request.id  # still waiting


def test_a_paused_runs_definition_holds_no_api_key_and_continues(stub, store_spec,
                                                                 monkeypatch):
    # Red team, round 3: a paused run's stored definition held the agent's key in clear.
    key = "sk-live-" + os.urandom(12).hex()
    monkeypatch.setenv("RAYORCH_TEST_AGENT_KEY", key)
    writer = Agent(role="Writer", goal="Write", llm={**stub.llm, "api_key": key},
                   api_key=key)
    tasks = {"draft": Task(description="Draft the keyed post", agent=writer,
                           human_input=True)}
    with pytest.raises(RunPaused) as caught:
        Process(tasks=tasks, agents=[writer], store=store_spec).workflow()
    run_id, request = caught.value.run_id, caught.value.requests[0]
    _, blob, _ = open_store(store_spec).load_definition(run_id)
    assert key.encode() not in blob
    if not store_spec.startswith("postgresql"):  # every byte the store keeps on disk
        folder = Path(store_spec.removeprefix("sqlite://"))
        for path in folder.rglob("*"):
            if path.is_file():
                assert key.encode() not in path.read_bytes(), path
    from ray_orch.cli.runs import continue_paused

    from ray_orch import Approve

    results = continue_paused(store_spec, run_id, {request.id: Approve()})
    assert results["draft"].raw  # the key was read again from where it came from
