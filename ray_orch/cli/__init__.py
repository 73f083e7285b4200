"""The ``ray-orch`` command (typer): ``workflows.py`` runs, validates and draws workflow
files and starts the demo; ``runs.py`` drives runs that outlive a driver (the standing
runtime, detached and paused runs); ``base.py`` holds the app, its shared options and
how errors become one message and an exit code."""

from __future__ import annotations

from ray_orch.cli.base import app
from ray_orch.cli.workflows import app as _app  # noqa: F401  (adds its commands first)

# isort: split
from ray_orch.cli import runs as _runs  # noqa: F401  (then these: `--help` lists them after)

__all__ = ["app"]
