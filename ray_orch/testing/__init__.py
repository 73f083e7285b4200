"""Test doubles that implement real seams: the stub OpenAI-compatible server
(``stub.py``, on 127.0.0.1 over real HTTP), in-process fakes of the engine's ports
(``fakes.py``) and a private PostgreSQL server (``postgres.py``)."""

from __future__ import annotations

from ray_orch.testing.stub import FAULT_KINDS, StubLLMServer, StubRequest, StubRule

__all__ = ["FAULT_KINDS", "StubLLMServer", "StubRequest", "StubRule"]
