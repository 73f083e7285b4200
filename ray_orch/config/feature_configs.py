"""PraisonAI's ``praisonaiagents.config.feature_configs``: the configs ray-orch honours.

Example:
    >>> from ray_orch.config.feature_configs import MultiAgentHooksConfig
    >>> MultiAgentHooksConfig().on_task_start is None
    True
"""

from ray_orch.policy.praison import MultiAgentHooksConfig

__all__ = ["MultiAgentHooksConfig"]
