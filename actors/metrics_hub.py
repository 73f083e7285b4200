"""``MetricsHub``: the cluster's one Prometheus endpoint, fed with batches of events.

Every Supervisor (on whatever node) pushes batched ``Event`` dicts here; the hub applies
them to one ``MetricsRegistry`` and serves it with prometheus-client's HTTP server, so
Prometheus scrapes a single target whatever the number of nodes and worker processes.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import ray
from prometheus_client import disable_created_metrics, start_http_server

from ray_orch.observe.metrics import MetricsRegistry

NAME = "rayorch-metrics"
NAMESPACE = "ray_orch"
HOST_ENV = "RAY_ORCH_METRICS_HOST"
PORT_ENV = "RAY_ORCH_METRICS_PORT"
DEFAULT_HOST = "127.0.0.1"

_log = logging.getLogger(__name__)


def _settings(host: str | None, port: int | None) -> tuple[str, int]:
    host = host or os.environ.get(HOST_ENV) or DEFAULT_HOST
    if port is None:
        raw = os.environ.get(PORT_ENV, "").strip()
        port = int(raw) if raw else 0
    return host, port


@ray.remote(num_cpus=0)
class MetricsHub:
    """Applies pushed events to a ``MetricsRegistry`` and serves it at ``/metrics``.

    Args:
        host: address to bind; ``RAY_ORCH_METRICS_HOST`` or 127.0.0.1 when None.
        port: port to bind; ``RAY_ORCH_METRICS_PORT`` or 0 (any free port) when None.

    Example:
        >>> hub, url = get_metrics_hub()          # doctest: +SKIP
        >>> hub.push.remote([{"kind": "retry", "task": "extract"}])  # doctest: +SKIP
    """

    def __init__(self, host: str | None = None, port: int | None = None) -> None:
        # One ``_created`` series per counter child doubles the series count for nothing
        # a dashboard uses; this process serves only the hub, so the global switch is ours.
        disable_created_metrics()
        self._registry = MetricsRegistry()
        bind_host, bind_port = _settings(host, port)
        self._server, self._thread = start_http_server(
            bind_port, addr=bind_host, registry=self._registry.registry)
        self._host = bind_host
        self._port = int(self._server.server_port)
        _log.info("ray-orch metrics at %s", self._url())

    async def push(self, events: list[dict[str, Any]]) -> int:
        """Apply a batch of events.

        Args:
            events: ``Event.model_dump()`` dicts, oldest first.

        Returns:
            How many were applied (malformed ones are counted and skipped).
        """
        return self._registry.apply(events)

    async def endpoint(self) -> str:
        """The scrape URL, ``http://host:port/metrics``."""
        return self._url()

    async def exposition(self) -> bytes:
        """The current metrics in the Prometheus text format (without HTTP)."""
        return self._registry.exposition()

    def _url(self) -> str:
        host = self._host
        if host in ("0.0.0.0", "::", ""):
            # Bound to every interface: advertise the node's address.
            host = ray.util.get_node_ip_address()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self._port}/metrics"


def get_metrics_hub(host: str | None = None, port: int | None = None) -> tuple[Any, str]:
    """Get the cluster's MetricsHub, creating it on this node if there is none.

    The hub is a named detached actor (``rayorch-metrics`` in namespace ``ray_orch``),
    so it outlives the run that created it and every later run reuses it; ``host`` and
    ``port`` only matter when it is created. Needs a connected Ray
    (``ray_orch.api.runtime.ensure_ray()``).

    Args:
        host: bind address; default ``RAY_ORCH_METRICS_HOST`` or 127.0.0.1.
        port: bind port; default ``RAY_ORCH_METRICS_PORT`` or 0 (a free port).

    Returns:
        ``(actor handle, scrape URL)``.

    Raises:
        ray.exceptions.RayActorError: the hub could not start (e.g. the port is taken).

    Example:
        >>> hub, url = get_metrics_hub(port=9464)   # doctest: +SKIP
        >>> url                                      # doctest: +SKIP
        'http://127.0.0.1:9464/metrics'
    """
    handle, wanted = start_metrics_hub(host, port)
    return handle, checked_endpoint(ray.get(handle.endpoint.remote()), wanted)


def start_metrics_hub(host: str | None = None, port: int | None = None) -> tuple[Any, int]:
    """The hub's handle, creating the hub if there is none, without waiting for it; and
    the port asked for (0: any). An async caller awaits ``handle.endpoint.remote()``."""
    bind_host, bind_port = _settings(host, port)
    handle = MetricsHub.options(  # type: ignore[attr-defined]
        name=NAME,
        namespace=NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
        num_cpus=0,
        max_restarts=3,
        # One scrape target, on the head node (where the driver runs in laptop mode, so
        # the default 127.0.0.1 binding is reachable by a Prometheus on this machine).
        resources={"node:__internal_head__": 0.001},
        scheduling_strategy="DEFAULT",
    ).remote(bind_host, bind_port)
    return handle, bind_port


def checked_endpoint(url: str, wanted_port: int) -> str:
    """The hub's scrape URL; warns when a hub already running ignored the port asked for."""
    if wanted_port and not url.endswith(f":{wanted_port}/metrics"):
        _log.warning("ray-orch metrics hub already runs at %s (port %d not used)",
                     url, wanted_port)
    return url
