"""What a task returns (``TaskOutput``) and what a guardrail returns (``GuardrailResult``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["GuardrailResult", "TaskOutput"]

# TaskOutput defines a dict() method (the guide calls result.dict()), which shadows the
# builtin inside the class body; annotations use this alias instead.
_Dict = dict


class TaskOutput(BaseModel):
    """The result of one task.

    Attributes:
        raw: the text the model answered (for a loop: one line per iteration).
        pydantic: the reply parsed into ``output_pydantic`` (or ``output_json``) when set.
        json_dict: the reply as a dict when the task asked for structured output.
        task_id: the task's name in the workflow.
        agent: the role of the agent that produced the output.
        metadata: ``execution_time`` (s), ``retry_count``, ``tokens_used``, ``cost_usd``,
            ``model`` and more (``circuit_status``, ``cache``, ``decision``, ...).
        iterations: for a loop task, every iteration's output in input order.
        summary: PraisonAI's short label: the first 10 characters of the description
            (of ``raw`` without one), unless set.
        callback_error: the error of the task's ``callback``, if it raised.
        output_format: ``"Pydantic"``, ``"JSON"`` or ``"RAW"`` (what ``str()`` shows).

    ``str(output)`` is PraisonAI's: the pydantic object's ``str()``, else the JSON dict
    (indented), else ``raw``.

    Example:
        >>> out = TaskOutput(raw="done", task_id="extract")
        >>> TaskOutput(**out.model_dump()) == out
        True
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    raw: str = ""
    description: str = ""
    pydantic: Any = None
    json_dict: _Dict[str, Any] | None = None
    task_id: str | None = None
    agent: str | None = None
    metadata: _Dict[str, Any] = Field(default_factory=_Dict)
    iterations: list[TaskOutput] | None = None
    summary: str | None = None
    callback_error: str | None = None

    def model_post_init(self, context: Any, /) -> None:
        if self.summary is None:
            self.summary = (self.description or self.raw)[:10]

    @property
    def output_format(self) -> str:
        """``"Pydantic"``, ``"JSON"`` or ``"RAW"``: which form the output has."""
        if self.pydantic is not None:
            return "Pydantic"
        return "JSON" if self.json_dict is not None else "RAW"

    def to_dict(self) -> _Dict[str, Any]:
        """The structured output as one dict (PraisonAI's ``to_dict``): ``json_dict``
        updated with the pydantic object's fields."""
        out: _Dict[str, Any] = dict(self.json_dict or {})
        if self.pydantic is not None and hasattr(self.pydantic, "model_dump"):
            out.update(self.pydantic.model_dump())
        return out

    def dict(self, **kwargs: Any) -> _Dict[str, Any]:  # type: ignore[override]
        """Return ``model_dump()``; kept because the guide calls ``result.dict()``."""
        return self.model_dump(**kwargs)

    def to_json(self) -> str:
        """Serialise to a JSON string (the checkpoint form)."""
        return self.model_dump_json()

    def __str__(self) -> str:
        if self.pydantic is not None:
            return str(self.pydantic)
        if self.json_dict:
            import json

            return json.dumps(self.json_dict, indent=2)
        return self.raw


class GuardrailResult(BaseModel):
    """A guardrail's verdict on a task output.

    Args:
        success: whether the output passes.
        result: an optional replacement output (a string or TaskOutput) to use instead.
        error: why the output failed; fed back to the agent in the next attempt.

    Example:
        >>> GuardrailResult(success=False, error="API error: timeout").success
        False
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    success: bool
    result: Any = None
    error: str | None = None
