"""The model PraisonAI scripts expect, read from PraisonAI's environment.

When no ``RAY_ORCH_MODEL`` is set, a script moved from PraisonAI gets the model PraisonAI
would give it: ``OPENAI_MODEL_NAME`` at ``OPENAI_API_BASE`` (or ``OPENAI_BASE_URL``) with
``OPENAI_API_KEY``. With none of them set, the embedded offline model stays the default.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["praison_base_url", "praison_default_llm", "praison_model_name",
           "praison_server_spec"]


def praison_default_llm() -> dict[str, Any] | None:
    """The model PraisonAI would use from its environment, as ray-orch llm options.

    PraisonAI reads ``OPENAI_MODEL_NAME`` (else ``gpt-4o-mini`` once ``OPENAI_API_KEY``
    is set), ``OPENAI_API_BASE`` before ``OPENAI_BASE_URL``, and ``OPENAI_API_KEY``.
    A base URL makes the model an OpenAI-compatible server's (``openai/<name>``).

    Returns:
        ``{"model", "base_url", "api_key"}``, or None when none of them is set.

    Example:
        >>> import os
        >>> env = {k: os.environ.pop(k, None) for k in _ENV}
        >>> praison_default_llm() is None
        True
        >>> os.environ.update({k: v for k, v in env.items() if v is not None})
    """
    name = os.environ.get("OPENAI_MODEL_NAME") or None
    base_url = praison_base_url()
    api_key = os.environ.get("OPENAI_API_KEY") or None
    if not (name or base_url or api_key):
        return None
    return {"model": praison_model_name(name or "gpt-4o-mini", base_url),
            "base_url": base_url, "api_key": api_key}


_ENV = ("OPENAI_MODEL_NAME", "OPENAI_API_BASE", "OPENAI_BASE_URL", "OPENAI_API_KEY")


def praison_base_url() -> str | None:
    """``OPENAI_API_BASE``, else ``OPENAI_BASE_URL`` (PraisonAI's order), or None."""
    return os.environ.get("OPENAI_API_BASE") or os.environ.get("OPENAI_BASE_URL") or None


def praison_server_spec(llm: Any, *, api_key: str | None = None) -> dict[str, Any] | None:
    """An explicit OpenAI model (``"gpt-4o-mini"``, ``"openai/..."`` or such a dict without
    a base URL) sent where PraisonAI would send it: to ``OPENAI_API_BASE`` /
    ``OPENAI_BASE_URL`` when one is set. None when that does not apply.

    Example:
        >>> praison_server_spec("anthropic/claude-3") is None
        True
    """
    url = praison_base_url()
    if url is None:
        return None
    if isinstance(llm, str):
        spec: dict[str, Any] = {"model": llm}
    elif isinstance(llm, dict) and not (llm.get("base_url") or llm.get("api_base")):
        spec = dict(llm)
    else:
        return None
    model = spec.get("model")
    if not isinstance(model, str) or ("/" in model and not model.startswith("openai/")):
        return None
    spec.update(model=praison_model_name(model, url), base_url=url,
                api_key=spec.get("api_key") or api_key or os.environ.get("OPENAI_API_KEY") or None)
    return spec


def praison_model_name(name: str, base_url: str | None) -> str:
    """A PraisonAI model name as a litellm model string: a bare name sent to an
    OpenAI-compatible base URL is ``openai/<name>``."""
    if base_url and "/" not in name:
        return f"openai/{name}"
    return name
