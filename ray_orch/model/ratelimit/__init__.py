"""Rate limits per model, in one package: ``limiter.py`` keeps the budget (the limits a
model's config asks for, pacing, the AIMD window; plain Python, clock injectable) and
``client.py`` runs a model call in a paced slot, from a ``Limiter`` in this process or the
cluster-wide ``RateLimiter`` actor (``actors/rate_limiter.py``, a thin shell over
``Limiter``)."""

from __future__ import annotations

from ray_orch.model.ratelimit.client import (
    Ticket,
    estimate_tokens,
    limit_through,
    limited,
    strip_limit_keys,
)
from ray_orch.model.ratelimit.limiter import (
    DEFAULT_CEILING,
    HEADROOM,
    LIMIT_KEYS,
    RPM_ENV,
    TPM_ENV,
    Lease,
    Limiter,
    Limits,
    ModelConfig,
    limiter_name,
    limits_of,
)

__all__ = [
    "DEFAULT_CEILING",
    "HEADROOM",
    "LIMIT_KEYS",
    "RPM_ENV",
    "TPM_ENV",
    "Lease",
    "Limiter",
    "Limits",
    "ModelConfig",
    "Ticket",
    "estimate_tokens",
    "limit_through",
    "limited",
    "limiter_name",
    "limits_of",
    "strip_limit_keys",
]
