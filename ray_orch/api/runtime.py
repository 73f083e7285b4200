"""Ray lifecycle: connect to a cluster, or start a local Ray bound to 127.0.0.1.

Connect when ``RAY_ADDRESS`` is set, Ray is already initialised, or a standing runtime
is up (``ray-orch up``, found through ``ray_orch.api.standing.runtime_file()``); else,
on a laptop, start the standing runtime in the background and join it
(``api/autostart.py``: not under CI, in tests, or with ``RAY_ORCH_AUTO_RUNTIME=0``);
otherwise start a local Ray whose every port binds to loopback. A Ray that ray-orch did not start is never
shut down by ray-orch.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from ray_orch.core.proc import settle_heap

_started_here = False
_new_runtime = False  # this process started the standing runtime it joined (autostart)
_STARTING_TIMEOUT = 300.0
"""How long a driver waits for a runtime it started to finish starting its registry."""

# Set before Ray starts so that every Ray port binds to 127.0.0.1 and no usage report
# leaves the machine. setdefault: an operator's explicit choice wins.
_LOCAL_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def ensure_ray(runtime_env: dict[str, Any] | None = None, **init_kwargs: Any) -> bool:
    """Make sure this process is connected to Ray.

    Args:
        runtime_env: passed to ``ray.init`` when this call starts or connects.
        **init_kwargs: further ``ray.init`` options (``num_cpus``, ``address``, ...).

    Returns:
        True when this call started a new local Ray (which ray-orch then owns).
    """
    global _started_here, _new_runtime
    for key, value in _LOCAL_ENV.items():
        # Ray reads these when it is imported, so they are set before the import.
        os.environ.setdefault(key, value)
    import ray

    if ray.is_initialized():
        return False
    # Ray's own start-up chatter (INFO lines, the note that a SIGTERM handler cannot be
    # set off the main thread, the token-auth notice) is not the user's business; errors
    # still show. ``ray_init={"logging_level": ...}`` chooses otherwise.
    kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": True,
                              "logging_level": logging.ERROR}
    kwargs.update(init_kwargs)
    if runtime_env:
        kwargs["runtime_env"] = runtime_env
    address = kwargs.get("address") or os.environ.get("RAY_ADDRESS")
    from ray_orch.api.standing import discover

    standing = discover(address)  # the standing runtime, if this driver should join it
    if standing is None and not address:
        from ray_orch.api.autostart import auto_runtime_wanted, start_auto_runtime

        if auto_runtime_wanted(init_kwargs):
            standing = start_auto_runtime()
    if standing is not None and not address:
        address = kwargs["address"] = standing.address
        _new_runtime = bool(standing.extra.get("started_here"))
    if not address:
        # "local": always a new Ray of our own, never a cluster some other program left
        # running on this machine (which plain ray.init() would join).
        kwargs["address"] = "local"
        kwargs.setdefault("include_dashboard", False)
    with _quiet_exit(standing is not None):
        ray.init(**kwargs)
    from actors import install_ports

    # Model calls this driver makes outside a run share the cluster's breakers, limits and
    # model server (a run brings its own: Services.shared); no import installs them.
    install_ports()
    if address and address != "local" and _standing_registry(standing) is not None:
        # Warm pools and Supervisors shared across drivers. Leave at exit without Ray's
        # own exit hook, which sleeps 0.5 s for worker logs: the actors printing them on
        # a standing runtime are not this driver's (and outlive it).
        atexit.register(_leave)
    settle_heap()
    if not address:
        _started_here = True
        atexit.register(shutdown_if_owned)
        return True
    return False


def _standing_registry(standing: Any) -> Any:
    """The standing runtime's registry; while the runtime this driver just started is
    still starting its control plane (``extra["starting"]``), wait for it."""
    from actors.registry import find_standing_registry
    from ray_orch.api.standing import read_runtime

    found = find_standing_registry()
    deadline = time.monotonic() + _STARTING_TIMEOUT
    while found is None and standing is not None and standing.extra.get("starting") \
            and time.monotonic() < deadline:
        time.sleep(0.05)
        current = read_runtime()
        if current is None or current.address != standing.address:
            break  # it failed to start, or was replaced: this driver's own registry
        found = find_standing_registry()
        if not current.extra.get("starting"):
            break
    return found


def first_on_new_runtime() -> bool:
    """Whether this driver just started the standing runtime it joined (its first run
    then starts the processes it needs side by side, as on a fresh private Ray). True
    once: the first run asks."""
    global _new_runtime
    new, _new_runtime = _new_runtime, False
    return new


@contextlib.contextmanager
def _quiet_exit(joining: bool) -> Iterator[None]:
    """Connect a driver that joins a standing runtime without Ray's task events of its own
    (``RAY_task_events_report_interval_ms=0`` while ``ray.init`` reads its config, unless
    the user set it): their flush at ``ray.shutdown`` holds every script's exit ~0.25 s.
    The runtime's Supervisors and members still report theirs (Ray's dashboard).

    Example:
        >>> with _quiet_exit(True):
        ...     os.environ["RAY_task_events_report_interval_ms"]
        '0'
        >>> "RAY_task_events_report_interval_ms" in os.environ  # not left to children
        False
    """
    key = "RAY_task_events_report_interval_ms"
    if not joining or key in os.environ:
        yield
        return
    os.environ[key] = "0"
    try:
        yield
    finally:
        os.environ.pop(key, None)  # not for the processes this driver starts later


def _leave() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def shutdown_if_owned() -> None:
    """Shut Ray down only if ray-orch started it in this process."""
    global _started_here
    if _started_here:
        import ray

        _started_here = False
        if ray.is_initialized():
            ray.shutdown()
