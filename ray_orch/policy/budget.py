"""Context budgets: what happens when upstream outputs do not fit in a task's prompt.

Each task has a context token budget: ``Task(context_budget=N)``, or by default 75% of
the model's input window when litellm's model table knows it (no check for models it does
not know).
Tokens are counted with litellm's counter for the task's model. Past the budget the
task's declared policy applies, never a silent provider error:

- ``"fail"`` (default): ``ContextBudgetError`` naming the task, the size and the budget;
- ``"keep_recent"``: drop the oldest context items (then cut the oldest text of the one
  that remains) until the context fits, and say so in the prompt;
- ``"summarize"``: ask the agent's model to summarise the context into the budget.
"""

from __future__ import annotations

import functools
from typing import Any

from ray_orch.core.errors import ContextBudgetError
from ray_orch.core.prompt import ContextItem, PromptParts

__all__ = ["apply_budget", "budget_for"]


def _counter(model: str) -> Any:
    from ray_orch.model.client import litellm_module

    lib = litellm_module()

    def count(text: str) -> int:
        try:
            return int(lib.token_counter(model=model, text=text))
        except Exception:
            return len(text) // 4 + 1  # a model litellm cannot tokenise: ~4 chars a token
    return count


def budget_for(task: Any, model: str | None) -> int | None:
    """The task's context budget in tokens, or None when there is nothing to check."""
    if task.context_budget is not None:
        return int(task.context_budget)
    if not model:
        return None
    window = _input_window(model)
    return int(window * 0.75) if window else None


@functools.lru_cache(maxsize=256)
def _input_window(model: str) -> int | None:
    # litellm's own table, read without importing litellm (3-5 s, ~170 MB a process).
    from ray_orch.model.openai_http import model_info

    window = model_info(model).get("max_input_tokens")
    try:
        return int(window) if window else None
    except (TypeError, ValueError):
        return None


async def apply_budget(task: Any, agent: Any, parts: PromptParts) -> dict[str, Any] | None:
    """Fit ``parts.context`` into the task's budget (in place); returns what was done."""
    if not parts.context:
        return None
    model = getattr(getattr(agent, "llm_config", None), "model", None)
    budget = budget_for(task, model)
    if budget is None:
        return None
    # A token is at least one byte: context within the budget in bytes needs no count.
    if sum(len(item.text.encode()) for item in parts.context) <= budget:
        return None
    count = _counter(model or "")
    sizes = [count(item.text) for item in parts.context]
    total = sum(sizes)
    if total <= budget:
        return None
    policy = task.context_overflow
    if policy == "fail":
        raise ContextBudgetError(
            f"task '{task.id}': its context is {total} tokens, over its context_budget of "
            f"{budget}; set context_fields=[...] to pass less, or context_overflow="
            "'keep_recent' / 'summarize'", task=task.id)
    if policy == "keep_recent":
        kept: list[ContextItem] = []
        used = 0
        for item, size in zip(reversed(parts.context), reversed(sizes), strict=True):
            if used + size <= budget:
                kept.insert(0, item)
                used += size
                continue
            if not kept:  # even the most recent item is too long: keep its end
                text = item.text
                while text and count(text) > budget:
                    text = text[len(text) // 4:]
                kept.insert(0, ContextItem(name=f"{item.name} (truncated)", text=text))
            break
        dropped = [i.name for i in parts.context if i not in kept]
        parts.context = kept
        parts.missing.update({name: "dropped to fit the context budget" for name in dropped})
        return {"policy": policy, "tokens_before": total, "budget": budget, "dropped": dropped}
    summary = await agent.acomplete(
        f"Summarise the following material in at most {budget} tokens, keeping every fact "
        f"needed for this task: {parts.description}\n\n{parts.context_text()}")
    parts.context = [ContextItem(name="summary of the context", text=summary.text)]
    return {"policy": policy, "tokens_before": total, "budget": budget,
            "summary_tokens": count(summary.text)}
