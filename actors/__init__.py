"""Ray actor classes, one per module, each a thin shell over a plain class below it.

Importing this package installs nothing. The cluster-wide services that attempts share
(circuit-breaker state in ``BreakerActor``, rate limits in ``RateLimiter``, the embedded
model's per-node ``ModelServer``, the sentence encoder's per-node ``EmbeddingServer``, MCP
sessions in ``MCPSessionActor``, one per server per node) reach the layers below as a
record passed in: ``cluster_services()`` builds it, the Supervisor puts it in the run's
``Services.shared``, and it travels to members with the run (``ray_orch.core.shared``).
Without it (no Ray) those layers work in-process.
"""

from actors.breaker import get_breaker_actor
from actors.embedding_server import node_embedding_server
from actors.mcp_session import route_to_node_session
from actors.model_server import node_model_server
from actors.rate_limiter import get_rate_limiter
from ray_orch.core import shared
from ray_orch.core.shared import SharedServices
from ray_orch.observe.tracing import remote_scope

__all__ = ["cluster_services", "install_ports"]


def cluster_services() -> SharedServices:
    """The cluster's shared services, as a record to pass with a run.

    Example:
        >>> cluster_services().breakers.__name__
        'get_breaker_actor'
    """
    return SharedServices(breakers=get_breaker_actor, limiters=get_rate_limiter,
                          model_server=node_model_server, embedder=node_embedding_server,
                          mcp_router=route_to_node_session, tool_scope=remote_scope)


def install_ports() -> None:
    """Make the cluster's services this process's default, for work outside a run (a
    driver that connected to Ray calls it: ``ensure_ray``). Nothing calls it on import."""
    shared.install(cluster_services())
