"""The offline demos: ``customer_service.py`` (``ray-orch demo``, the guide's
customer-service workflow) and ``orders.py`` (a tool-calling order lookup it shows after)."""

from __future__ import annotations

from ray_orch.demo.customer_service import INQUIRIES, build_workflow, main

__all__ = ["INQUIRIES", "build_workflow", "main"]
