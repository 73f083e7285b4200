"""Ray actor classes, one per module, each a thin shell over a plain class below it.

Importing this package installs the cluster-wide services as the ports of the layers
below, for this process: circuit-breaker state (``BreakerActor``), rate limits
(``RateLimiter``), the embedded model's per-node server (``ModelServer``) and MCP
sessions, one per server per node (``MCPSessionActor``). Those
layers never import ``actors``; without these ports (no Ray) they work in-process.
Every actor of ours imports this package, and so does ``import ray_orch`` in any process
connected to Ray (a plain Ray task, a remote tool), so they all share the services.
"""

from actors.breaker import get_breaker_actor
from actors.mcp_session import route_to_node_session
from actors.model_server import node_model_server
from actors.rate_limiter import get_rate_limiter
from ray_orch.model import embedded
from ray_orch.model.ratelimit import client as ratelimit_client
from ray_orch.observe.tracing import remote_scope
from ray_orch.policy import breaker
from ray_orch.tools import execute, mcp


def install_ports() -> None:
    """Install the cluster services as ports in this process (idempotent)."""
    breaker.share_breakers(get_breaker_actor)
    ratelimit_client.limit_through(get_rate_limiter)
    embedded.serve_per_node(node_model_server)
    mcp.set_mcp_router(route_to_node_session)
    execute.trace_remote_with(remote_scope)


install_ports()
