"""PraisonAI's ``praisonaiagents.config`` import path, for scripts moved by renaming the
package in their imports (``from ray_orch.config.feature_configs import ...``)."""
