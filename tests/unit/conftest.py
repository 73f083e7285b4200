"""tests/unit/ starts no Ray: a test here that calls ``ray.init`` (directly, through
``ensure_ray`` or the ``ray_session`` fixture) fails and belongs in tests/integration/."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch):
    import ray

    def refuse(*args, **kwargs):
        raise RuntimeError("a unit test started Ray: move it to tests/integration/")

    monkeypatch.setattr(ray, "init", refuse)
