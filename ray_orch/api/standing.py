"""The standing runtime: ``ray-orch up`` / ``down`` / ``status``.

``up`` starts a Ray head bound to 127.0.0.1 (a real ``ray start --head``, with its
dashboard on 127.0.0.1 for job submission), or joins a cluster (``address=``), and
starts ray-orch's control plane there as detached actors in the ``ray_orch`` namespace:
the registry (which keeps agent members and Supervisors warm between scripts) and the
metrics hub (the result cache is made by the first run that asks for one). It writes
what drivers need to find it to a well-known file, ``~/.ray-orch/runtime.json``
(``RAY_ORCH_RUNTIME_FILE`` overrides).

Drivers find it on their own (``ensure_ray`` calls ``discover``); with none up they
start today's private local Ray. ``down`` stops everything ``up`` started: the head's
processes (every process of the session ``ray start`` ran in, and only those) or, on a
joined cluster, ray-orch's detached actors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ray_orch.api.head import Head, HeadSpec, start_head
from ray_orch.api.standing_viewer import spawn_viewer, stop_viewer, viewer_started
from ray_orch.store.checkpoint import make_private_dirs

__all__ = [
    "RuntimeInfo",
    "connect_to_runtime",
    "dashboard_started",
    "discover",
    "down",
    "idle_budget",
    "joined",
    "read_runtime",
    "runtime_file",
    "status",
    "up",
    "write_runtime",
]

RUNTIME_FILE_ENV = "RAY_ORCH_RUNTIME_FILE"
_joined: RuntimeInfo | None = None  # the runtime this process joined (``discover``)
_dashboard_starting: Head | None = None  # ``up(announce=True)``'s head, its dashboard starting
NAMESPACE = "ray_orch"
_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def loopback_ray() -> None:
    """Make Ray in this process keep 127.0.0.1 as this node's address and send no usage
    stats (set before Ray is imported; patched if it already was)."""
    for key, value in _RAY_ENV.items():
        os.environ.setdefault(key, value)
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None and os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0":
        constants.ENABLE_RAY_CLUSTER = False  # type: ignore[attr-defined]


def runtime_file() -> Path:
    """Where the standing runtime's address is written: ``$RAY_ORCH_RUNTIME_FILE`` or
    ``~/.ray-orch/runtime.json``.

    Example:
        >>> runtime_file().name
        'runtime.json'
    """
    return Path(os.environ.get(RUNTIME_FILE_ENV) or Path.home() / ".ray-orch" / "runtime.json")


@dataclass(kw_only=True)
class RuntimeInfo:
    """What ``up`` wrote: how to reach the runtime and what to stop on ``down``."""

    address: str
    """The GCS address drivers connect to (``127.0.0.1:PORT``)."""
    dashboard_url: str | None = None
    """The dashboard (job submission) URL, when ``up`` started the head."""
    auth_mode: str = "disabled"
    """The ``RAY_AUTH_MODE`` the head runs with; joining drivers use the same."""
    started_head: bool = False
    """``up`` started the head (``down`` stops it) rather than joining a cluster."""
    session: int | None = None
    """The session id of the head's processes (``ray start`` ran as its leader)."""
    temp_dir: str | None = None
    """The head's temp dir (sockets, logs), removed by ``down``."""
    state_dir: str = ""
    """Where runs' journals live (self-healing runs), next to the runtime file."""
    store: str | None = None
    """The runtime's run store (``ray-orch up --store``: a directory or a DSN; the file
    is 0600), where runs without one of their own keep their journals and detached runs
    their results; None: ``<state_dir>/journal``."""
    idle_ttl: float = 600.0
    """Seconds an idle member or Supervisor is kept before it is stopped."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Endpoints and settings shown by ``status``."""

    def journal_dir(self) -> str:
        """The default checkpoint directory of runs on this runtime."""
        return str(Path(self.state_dir) / "journal")

    def run_store(self) -> str:
        """The spec of the runtime's run store: ``store``, else the journal directory."""
        return self.store or self.journal_dir()


def read_runtime(path: Path | None = None) -> RuntimeInfo | None:
    """The runtime file's content, or None when there is none (or it is unreadable)."""
    path = path or runtime_file()
    try:
        data = json.loads(path.read_text())
        return RuntimeInfo(**data)
    except (OSError, ValueError, TypeError):
        return None


def _reachable(address: str, timeout: float = 0.5) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def discover(address: str | None = None) -> RuntimeInfo | None:
    """The standing runtime this driver should join, if one is up.

    Args:
        address: the address the driver was told to use (``RAY_ADDRESS``), if any: the
            runtime file then applies only when it names that address.

    Returns:
        The runtime's info (and ``RAY_AUTH_MODE`` set to the head's in this process), or
        None: no file, a file left by a runtime that is gone, or another address.
    """
    info = read_runtime()
    if info is None or (address not in (None, "auto") and address != info.address):
        return None
    if not _reachable(info.address):
        return None
    loopback_ray()  # else Ray swaps 127.0.0.1 for the machine's address, where no head is
    # The head's auth mode, whatever this shell says: the two must agree.
    set_auth_mode(info.auth_mode)
    global _joined
    _joined = info
    return info


def joined() -> RuntimeInfo | None:
    """The standing runtime this process joined, if it is connected to one."""
    from actors.registry import is_standing

    return _joined if is_standing() else None


def _free_port(preferred: int | None = None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with contextlib.closing(socket.socket()) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError("no free port on 127.0.0.1")


def set_auth_mode(mode: str) -> None:
    """Use Ray auth mode ``mode`` in this process (and the processes it starts), even if
    Ray was imported already (it reads the mode once, at import)."""
    if os.environ.get("RAY_AUTH_MODE") == mode:
        return
    os.environ["RAY_AUTH_MODE"] = mode
    if "ray._raylet" in sys.modules:
        from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def _auth_mode() -> str:
    """Token auth unless the operator chose otherwise (a token is made if missing)."""
    mode = os.environ.get("RAY_AUTH_MODE", "token").lower()
    set_auth_mode(mode)
    if mode == "token":
        from ray._private.authentication.authentication_token_generator import (
            generate_new_authentication_token,
        )
        from ray._private.authentication.authentication_token_setup import (
            _get_default_token_path,
        )

        default = _get_default_token_path()
        if not os.environ.get("RAY_AUTH_TOKEN") and not os.environ.get("RAY_AUTH_TOKEN_PATH") \
                and not default.exists():
            # Made here, not by Ray's helper: private from its first byte (Ray's writes
            # it with the umask's mode, then logs an INFO line).
            make_private_dirs(default.parent)
            fd = os.open(default, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(generate_new_authentication_token())
        token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or default)
        if token.exists():
            _make_private(token)
    return mode


def _make_private(path: Path) -> None:
    """``path`` readable by this user only (0600) in a folder only this user can enter
    (0700), whatever the umask; a path of another user's is left alone (and not used
    by that user's runtime)."""
    if path.is_file() and path.stat().st_uid == os.geteuid():
        path.chmod(0o600)
    folder = path.parent if path.is_file() else path
    if folder.is_dir() and folder.stat().st_uid == os.geteuid() and folder != Path.home():
        folder.chmod(0o700)


def _code_path() -> str:
    """PYTHONPATH for the head's workers: where ``ray_orch`` and ``actors`` are."""
    root = str(Path(__file__).resolve().parents[2])  # ray_orch/api/standing.py
    current = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join([root] + [p for p in current.split(os.pathsep) if p and p != root])


def _start_head(*, port: int | None, dashboard_port: int | None, num_cpus: int | None,
                state_dir: Path, env: dict[str, str], here: bool) -> tuple[RuntimeInfo, Head]:
    """A Ray head on 127.0.0.1 in a session of its own (so ``down`` can stop exactly its
    processes: ``api/head.py``); returns once drivers can connect (its dashboard may
    still be starting)."""
    # A short path: Ray's socket paths must stay under 107 characters. Ray opens its
    # temp dir to everyone (0777: /tmp/ray is meant to be shared), and this one holds the
    # session's sockets and job logs, which carry runs' outputs: Ray's dir goes inside a
    # private one (0700) that no other user can enter.
    temp_dir = tempfile.mkdtemp(prefix="rayorch-", dir="/tmp")
    spec = HeadSpec(port=_free_port(port or 6379),
                    dashboard_port=_free_port(dashboard_port or 8265), agent_port=_free_port(),
                    temp_dir=os.path.join(temp_dir, "ray"), num_cpus=num_cpus)
    try:
        head = start_head(spec, env=env, log=state_dir / "ray-start.log", here=here)
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    info = RuntimeInfo(address=head.address, auth_mode=env["RAY_AUTH_MODE"], started_head=True,
                       session=head.session, temp_dir=temp_dir, state_dir=str(state_dir))
    return info, head


def idle_budget(cores: int | None = None, memory_gb: float | None = None) -> int:
    """How many idle agent members the standing runtime keeps warm by default: four a
    core and one a GB of memory, whichever is fewer (between 2 and 64). An idle member
    holds ~150-250 MB and wakes for nothing; more than the cores can serve at once only
    costs memory (two waves of 20 drivers kept 40 members, 7.2 GB, on 2 cores).

    Example:
        >>> idle_budget(cores=2, memory_gb=24), idle_budget(cores=64, memory_gb=512)
        (8, 64)
    """
    cores = cores or os.cpu_count() or 1
    if memory_gb is None:
        memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return max(2, min(64, 4 * cores, int(memory_gb)))


def up(*, address: str | None = None, port: int | None = None,
       dashboard_port: int | None = None, num_cpus: int | None = None,
       idle_ttl: float = 600.0, max_members: int | None = None,
       prewarm: int = 4, store: str | None = None, viewer: bool = False,
       announce: bool = False) -> RuntimeInfo:
    """Start (or join) the standing runtime and write the runtime file.

    Args:
        address: join this cluster instead of starting a head.
        port / dashboard_port: the head's GCS and dashboard ports (free ones if taken).
        num_cpus: the head's CPUs (Ray's default: all).
        idle_ttl: seconds idle members and Supervisors are kept.
        max_members: the most idle members kept (default: ``idle_budget()``, from the
            machine's cores and memory).
        prewarm: generic agent members (default placement) started now, so that a first
            run of up to this many agents starts no process.
        viewer: also serve the run viewer (``ray-orch ui`` over the runtime's journal;
            ``ray-orch up`` does unless ``--no-ui``); its URL, token included, is
            ``extra["viewer_url"]`` (the runtime file is private).
        announce: write the runtime file (``extra["starting"]``) as soon as the head is
            up, so that a driver waiting for it connects while the control plane starts
            (the self-starting runtime's first script; ``ensure_ray`` then waits for the
            registry); this process then stays connected to the runtime.
        store: the runtime's run store (a directory or a ``postgresql://`` DSN; default
            ``$RAY_ORCH_STORE``, else a directory beside the runtime file), checked here.

    Raises:
        StoreError: the store cannot be used (before anything starts).

    Returns:
        The runtime's info (also in ``runtime_file()``). When one is already up, that one.
    """
    from ray_orch.store.factory import open_store, store_spec

    store = store_spec(store)
    if store:
        open_store(store, check=True).close()  # StoreError before anything starts
    loopback_ray()
    existing = discover()
    if existing is not None:
        return existing
    path, env = _prepared()
    state_dir = path.parent
    global _dashboard_starting
    head: Head | None = None
    if address is None:
        info, head = _start_head(port=port, dashboard_port=dashboard_port, num_cpus=num_cpus,
                                 state_dir=state_dir, env=env, here=announce)
        head.start_dashboard()  # beside the control plane
    else:
        info = RuntimeInfo(address=address, auth_mode=env["RAY_AUTH_MODE"],
                           state_dir=str(state_dir))
    info.idle_ttl, info.store = idle_ttl, store
    # The viewer's process starts beside the control plane's actors, not after them.
    viewing = spawn_viewer(info.state_dir, info.journal_dir(), env) if viewer else None
    if announce and head is not None:
        info.extra = {"starting": True, "dashboard": "starting"}
        write_runtime(info, path)
    kept = idle_budget() if max_members is None else max_members
    try:
        info.extra = _start_control_plane(info, max_members=kept, prewarm=min(prewarm, kept),
                                          stay=announce)
        info.extra["idle_budget"] = {"members": kept, "supervisors": 4}
        if head is not None and not announce:
            head.wait_dashboard()  # ``ray-orch up`` returns with all of it up
            info.dashboard_url = head.dashboard_url
    except BaseException:
        _undo(info, viewing, path if announce else None)
        raise
    if viewing is not None:
        info.extra.update(viewer_started(info.state_dir, viewing))
    if announce and head is not None:
        # The self-starting runtime's dashboard (only job submission needs it) comes up
        # beside its first script: ``dashboard_started`` writes its URL once it answers.
        info.extra["dashboard"] = "starting"
        _dashboard_starting = head
    write_runtime(info, path)  # 0600: it may hold the store's DSN
    return info


def _prepared() -> tuple[Path, dict[str, str]]:
    """The runtime file's path (in a private folder) and the environment of the head's
    processes (Ray's settings here too)."""
    path = runtime_file()
    make_private_dirs(path.parent)
    _make_private(path.parent)
    env = {**os.environ, **_RAY_ENV, "RAY_AUTH_MODE": _auth_mode(),
           "PYTHONPATH": _code_path()}
    os.environ.update({k: env[k] for k in _RAY_ENV})
    return path, env


def _undo(info: RuntimeInfo, viewing: Any, announced: Path | None) -> None:
    """``up`` failed: stop what it started, and remove the runtime file it announced."""
    if viewing is not None:
        viewing.kill()
    if info.started_head:
        _stop_session(info)
        if announced is not None:
            announced.unlink(missing_ok=True)


def dashboard_started(info: RuntimeInfo, timeout: float = 180.0) -> RuntimeInfo:
    """Wait for the dashboard ``up(announce=True)`` left starting, then write its URL to
    the runtime file (or ``extra["dashboard"] = "failed: ..."``: job submission then
    says so).

    Returns:
        ``info`` as written.
    """
    head = _dashboard_starting
    if head is None:
        return info
    try:
        head.wait_dashboard(timeout)
    except RuntimeError as exc:
        info.extra["dashboard"] = f"failed: {exc}"
    else:
        info.extra.pop("dashboard", None)
        info.dashboard_url = head.dashboard_url
    current = read_runtime()
    if current is not None and current.address == info.address:
        write_runtime(info)
    return info


def write_runtime(info: RuntimeInfo, path: Path | None = None) -> None:
    """Write the runtime file (0600), whole or not at all."""
    path = path or runtime_file()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w") as out:
        os.fchmod(fd, 0o600)
        out.write(json.dumps(asdict(info), indent=2))
    tmp.replace(path)


def connect_to_runtime(info: RuntimeInfo) -> None:
    """Connect this process to the standing runtime ``info`` describes (its auth mode,
    its namespace), every worker installing the cluster's services as it starts."""
    loopback_ray()
    import ray

    set_auth_mode(info.auth_mode)
    if ray.is_initialized():
        ray.shutdown()
    # Ray's "Connecting to existing Ray cluster" INFO lines are not the user's business.
    ray.init(address=info.address, namespace=NAMESPACE, log_to_driver=False,
             logging_level=logging.ERROR)


def _start_control_plane(info: RuntimeInfo, *, max_members: int, prewarm: int,
                         stay: bool = False) -> dict[str, Any]:
    """The detached actors: registry and metrics hub; a warm Supervisor and ``prewarm``
    generic members, so that a first run starts no process. (The result cache is made
    by the first run that asks for one.) ``stay``: this process stays connected."""
    import ray

    from actors.metrics_hub import start_metrics_hub
    from actors.registry import start_standing_registry
    from ray_orch.engine.placement import placement_options
    from ray_orch.policy.agent import Agent

    connect_to_runtime(info)
    try:
        registry = start_standing_registry(idle_limit=max_members, idle_ttl=info.idle_ttl)
        hub, _ = start_metrics_hub()
        # A warm Supervisor and members, their code loading in the background: a first
        # run finds them (or waits for them less than for new ones), and up returns now.
        placement_key, options = placement_options(
            Agent(role="prewarm", goal="prewarm", llm={"model": "openai/prewarm"}))
        if prewarm:
            ray.get(registry.prewarm.remote(placement_key, prewarm, options))
        else:  # the self-started runtime's first script starts what its run needs
            ray.get(registry.size.remote())
        return {"metrics_url": ray.get(hub.endpoint.remote())}
    finally:
        if not stay:
            ray.shutdown()


def _session_pids(session: int) -> list[int]:
    """Live processes of a session (zombies and this process excluded: the self-started
    runtime's watchdog leads the head's session and stops it), read from /proc."""
    pids, me = [], os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if fields[0] != "Z" and int(fields[3]) == session and int(entry.name) != me:
            pids.append(int(entry.name))
    return pids


def _rss_mb(pids: list[int]) -> float:
    """The resident memory of ``pids`` together, in MB (from /proc; gone ones count 0)."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
    return total / 1e6


def _stop_session(info: RuntimeInfo, grace: float = 3.0) -> list[int]:
    """Stop every process of the head's session: SIGTERM, then SIGKILL after ``grace``."""
    if info.session is None:
        return []
    pids = _session_pids(info.session)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _session_pids(info.session):
            time.sleep(0.1)
        if not _session_pids(info.session):
            break
        pids = _session_pids(info.session)
    if info.temp_dir:
        shutil.rmtree(info.temp_dir, ignore_errors=True)
    return pids


def down() -> str:
    """Stop what ``up`` started and remove the runtime file.

    Returns:
        What was done, one line.
    """
    path = runtime_file()
    info = read_runtime(path)
    if info is None:
        return "no ray-orch runtime is up"
    watchdog = info.extra.get("watchdog_pid")
    if isinstance(watchdog, int) and watchdog != os.getpid():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(watchdog, signal.SIGTERM)  # the self-started runtime's idle watch
    stop_viewer(info.extra.get("viewer_pid"))
    if info.started_head:
        _stop_session(info)
        message = f"stopped the Ray head at {info.address} and everything on it"
    else:
        message = f"stopped ray-orch's actors on {info.address}"
        if _reachable(info.address):
            _stop_actors(info)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return message


def _stop_actors(info: RuntimeInfo) -> None:
    """On a joined cluster: stop ray-orch's detached actors (the registry's members and
    Supervisors go with it)."""
    import ray

    from actors.cache_actor import NAME as CACHE
    from actors.metrics_hub import NAME as METRICS
    from actors.registry import REGISTRY_NAME

    connect_to_runtime(info)
    try:
        for name in (REGISTRY_NAME, METRICS, CACHE):
            with contextlib.suppress(ValueError):
                ray.kill(ray.get_actor(name, namespace=NAMESPACE))
    finally:
        ray.shutdown()


def _mcp_sessions() -> list[dict[str, Any]]:
    """Each node's MCP sessions (never fails status: [] when they cannot be read)."""
    from actors.mcp_session import node_sessions

    try:
        return node_sessions()
    except Exception:
        return []


def status() -> dict[str, Any]:
    """The runtime's endpoints, pools, members and Supervisors (with their runs).

    Returns:
        ``{"up": False}`` when none is up; else the runtime file's content with
        ``registry`` (``ActorRegistry.status()``; detached runs: ``jobs.list_runs``) and
        ``mcp_sessions`` (one entry per node: ``MCPSessionActor.info()``).
    """
    info = read_runtime()
    if info is None or not _reachable(info.address):
        return {"up": False, "runtime_file": str(runtime_file())}
    import ray

    from actors.registry import REGISTRY_NAME
    from ray_orch.core.secrets import redact_dsn

    report: dict[str, Any] = {"up": True, **asdict(info)}
    if info.store:
        report["store"] = redact_dsn(info.store)
    if info.session is not None:
        pids = _session_pids(info.session)
        report["memory"] = {"processes": len(pids), "rss_mb": round(_rss_mb(pids), 1)}
    connect_to_runtime(info)
    try:
        with contextlib.suppress(ValueError):
            registry = ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE)
            report["registry"] = ray.get(registry.status.remote(), timeout=30)
            for row in report["registry"].get("actors", []):
                if isinstance(row.get("pid"), int):  # on this machine: its memory
                    row["rss_mb"] = round(_rss_mb([row["pid"]]), 1)
        report["mcp_sessions"] = _mcp_sessions()
    finally:
        ray.shutdown()
    return report
