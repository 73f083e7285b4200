"""Whether a hosted model's API key is there before anything is started.

A script naming ``llm="gpt-4o-mini"`` with no ``OPENAI_API_KEY`` used to reach the
provider, be refused and be retried; here it is a :class:`MissingAPIKeyError` naming the
variable before Ray starts. Only providers whose key variables are certain are checked
(a model on a ``base_url`` or with an ``api_key`` never is). litellm's own
``validate_environment`` is not used: importing litellm costs the driver 3-20 s, and it
misjudges some providers (it asks Ollama for ``OLLAMA_API_BASE``, which has a default).
"""

from __future__ import annotations

import os

from ray_orch.core.errors import MissingAPIKeyError
from ray_orch.model.client import EMBEDDED, LLMConfig

__all__ = ["PROVIDER_KEYS", "check_api_key", "provider_of"]

PROVIDER_KEYS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "groq": ("GROQ_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
}
"""The variables (any one will do) that litellm reads a provider's key from."""

_BARE = (("gpt-", "openai"), ("chatgpt-", "openai"), ("o1", "openai"), ("o3", "openai"),
         ("o4-", "openai"), ("claude-", "anthropic"))


def provider_of(model: str) -> str | None:
    """The provider a litellm model string names, when it is one of ``PROVIDER_KEYS``.

    Example:
        >>> provider_of("gpt-4o-mini"), provider_of("anthropic/claude-3-5-haiku")
        ('openai', 'anthropic')
        >>> provider_of("ollama/llama3.1") is None
        True
    """
    prefix, _, rest = model.partition("/")
    if rest:
        return prefix if prefix in PROVIDER_KEYS else None
    return next((provider for start, provider in _BARE if model.startswith(start)), None)


def check_api_key(config: LLMConfig, *, who: str, agent: str | None = None) -> None:
    """Raise when ``config`` is a hosted model whose key is in no variable it reads.

    Raises:
        MissingAPIKeyError: naming ``who``, the model and the variable to set.

    Example:
        >>> import os
        >>> os.environ.pop("DEEPSEEK_API_KEY", None) and None
        >>> check_api_key(LLMConfig(model="deepseek/deepseek-chat"), who="agent 'Writer'")
        Traceback (most recent call last):
        ...
        ray_orch.core.errors.MissingAPIKeyError: agent 'Writer': model 'deepseek/deepseek-chat' needs DEEPSEEK_API_KEY, which is not set: export DEEPSEEK_API_KEY=..., pass api_key= to the Agent, or point base_url= at a server that needs none
    """
    if config.model == EMBEDDED or config.base_url or config.api_key or \
            config.options.get("api_key"):
        return
    provider = provider_of(config.model)
    if provider is None:
        return
    names = PROVIDER_KEYS[provider]
    if any(os.environ.get(name) for name in names):
        return
    wanted = " or ".join(names)
    raise MissingAPIKeyError(
        f"{who}: model '{config.model}' needs {wanted}, which is not set: export "
        f"{names[0]}=..., pass api_key= to the Agent, or point base_url= at a server that "
        "needs none", field="llm", agent=agent)
