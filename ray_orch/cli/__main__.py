"""``python -m ray_orch.cli``: the ``ray-orch`` command."""

from ray_orch.cli import app

if __name__ == "__main__":
    app()
