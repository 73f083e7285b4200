"""Laptop mode: every listener of a run binds to loopback, and an API key never shows up
in errors, outputs, events, metrics, Ray's logs or checkpoints."""

from __future__ import annotations

import contextlib
import urllib.request
import uuid
from pathlib import Path

import pytest

from ray_orch import Agent, Process, RunError, Task
from ray_orch.testing import StubLLMServer

pytestmark = pytest.mark.usefixtures("ray_session")

LOOPBACK = ("127.", "::1", "::ffff:127.")


def _session_dir() -> Path:
    import ray

    # /tmp/ray/session_latest may be another Ray's on a shared machine: ask ours.
    node = ray._private.worker.global_worker.node
    return Path(node.get_session_dir_path())


def _our_pids(session: Path) -> set[int]:
    """This test process, everything it started (Ray's processes, workers), and any
    process of our Ray session (in case one was re-parented)."""
    import psutil  # ray ships it (ray/thirdparty_files), on sys.path once ray is imported

    me = psutil.Process()
    pids = {me.pid} | {p.pid for p in me.children(recursive=True)}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if session.name in cmdline:
            pids.add(proc.info["pid"])
    return pids


def _listeners() -> list[tuple[str, int, int | None, str]]:
    """Listening TCP sockets of this machine: (address, port, pid, process name)."""
    import psutil

    found = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != psutil.CONN_LISTEN:
            continue
        name = ""
        if conn.pid:
            with contextlib.suppress(psutil.Error):  # gone meanwhile
                name = psutil.Process(conn.pid).name()
        found.append((conn.laddr.ip, conn.laddr.port, conn.pid, name))
    return found


def _two_agent_workflow(**agent_kwargs) -> tuple[dict, list[Agent]]:
    researcher = Agent(role="Researcher", goal="Find facts", **agent_kwargs)
    writer = Agent(role="Writer", goal="Write it up", **agent_kwargs)
    tasks = {
        "research": Task(description="Research the topic", agent=researcher),
        "write": Task(description="Write the summary", agent=writer, context=["research"]),
    }
    return tasks, [researcher, writer]


def test_every_listener_of_a_run_binds_to_loopback():
    with StubLLMServer(reply="fine") as stub:
        tasks, agents = _two_agent_workflow(llm=stub.llm)
        process = Process(tasks=tasks, agents=agents)
        results = process.workflow()
        assert results["write"].raw == "fine"
        session = _session_dir()
        ours = _our_pids(session)
        listeners = _listeners()
        mine = [entry for entry in listeners if entry[2] in ours]
        # The run's own listeners are among them: the stub, Ray's GCS and raylet, and
        # the MetricsHub when metrics are on.
        names = {entry[3] for entry in mine}
        assert stub.port in {entry[1] for entry in mine}
        assert {"gcs_server", "raylet"} <= names, sorted(names)
        if process.last_result and process.last_result.metrics_url:
            port = int(process.last_result.metrics_url.rsplit(":", 1)[1].split("/")[0])
            assert port in {entry[1] for entry in mine}
    exposed = [entry for entry in mine if not entry[0].startswith(LOOPBACK)]
    assert not exposed, "listeners not on loopback (address, port, pid, name): " + \
        repr(exposed)


# -- secrets -----------------------------------------------------------------------------


def _scan(text: bytes, needles: list[bytes]) -> list[bytes]:
    return [n for n in needles if n in text]


def test_an_api_key_never_leaks(monkeypatch, tmp_path):
    tail = uuid.uuid4().hex
    secret = f"sk-test-SECRET-{tail}"
    needles = [secret.encode(), tail.encode()]
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    checkpoints = tmp_path / "checkpoints"

    with StubLLMServer(reply="fine", require_api_key=True, api_key=secret) as stub:
        stub.add_rule(match="Reject this", fault="401")
        llm = {"model": stub.model, "base_url": stub.base_url}
        tasks, agents = _two_agent_workflow(llm=llm, api_key=secret)
        tasks["rejected"] = Task(description="Reject this request", agent=agents[0],
                                 max_retries=2)
        process = Process(tasks=tasks, agents=agents, on_failure="continue",
                          checkpoint_dir=checkpoints)
        errors: list[BaseException] = []
        try:
            results = process.workflow()
        except RunError as exc:
            errors.append(exc)
            results = exc.results or {}
        # The same failure with on_failure="fail": the run raises.
        failing = Process(tasks={"rejected": Task(description="Reject this one too",
                                                  agent=agents[1])},
                          agents=agents[1:], checkpoint_dir=checkpoints)
        with pytest.raises(RunError) as raised:
            failing.workflow()
        errors.append(raised.value)
        served = [r for r in stub.requests if r.status == 200]
        metrics = b""
        url = process.last_result.metrics_url if process.last_result else None
        if url:
            with urllib.request.urlopen(url, timeout=10) as response:
                metrics = response.read()

    # The key was really used (the stub requires it) and the bad task really failed.
    assert served, "no call got through: the key did not reach the provider"
    assert results["write"].raw == "fine"
    assert tasks["rejected"].status == "failed"
    assert stub.count("Reject this") == 2  # a 401 is not retried

    leaks: dict[str, list[bytes]] = {}

    def check(where: str, text: str | bytes) -> None:
        found = _scan(text.encode() if isinstance(text, str) else text, needles)
        if found:
            leaks[where] = found

    for task in tasks.values():
        if task.error is not None:
            errors.append(task.error)
    for error in errors:
        seen: BaseException | None = error
        while seen is not None:  # the whole chain, as a traceback would print it
            check(f"exception {type(seen).__name__}", f"{seen!s} {seen!r} {seen.args!r}")
            seen = seen.__cause__ or seen.__context__
    if process.last_result is not None:
        check("RunResult.errors", repr(process.last_result.errors))
    for name, output in results.items():
        check(f"output {name}", output.model_dump_json())
    for event in process.events + failing.events:
        check(f"event {event.kind}", event.model_dump_json())
    check("metrics", metrics)
    check("stub request log", repr([r.headers for r in stub.requests]))
    logs = _session_dir() / "logs"
    for path in sorted(logs.rglob("*")):
        if path.is_file():
            check(f"ray log {path.name}", path.read_bytes())
    written = sorted(p for p in checkpoints.rglob("*") if p.is_file()) \
        if checkpoints.exists() else []
    for path in written:
        check(f"checkpoint {path.name}", path.read_bytes())
    assert not leaks, f"the API key leaked into: {sorted(leaks)}"
    assert written, "no checkpoint was written: nothing to scan there"
