"""Approval cannot be wrapped away (red team, round 3): a ``requires_approval`` tool
wrapped in ``functools.partial``, taken as a bound method, decorated with
``functools.wraps`` or re-marked with ``@tool`` still asks before every call."""

from __future__ import annotations

import functools

import pytest

from ray_orch import Agent, Process, Reject, Task, tool
from ray_orch.testing import StubLLMServer


def _till(ledger):
    # Made here, not at module level: a local class travels to the members by value.
    class Till:
        @tool(requires_approval=True)
        def refund(self, amount: int) -> str:
            """Refund an amount."""
            with open(ledger, "a") as out:
                out.write(f"refund:{amount}\n")
            return f"refunded {amount}"

    return Till()


def _charge_tool(ledger):
    @tool(requires_approval=True)
    def charge(amount: int, currency: str) -> str:
        """Charge an amount."""
        with open(ledger, "a") as out:
            out.write(f"charge:{amount}{currency}\n")
        return f"charged {amount}"

    return charge


def _decorated(fn):
    @functools.wraps(fn)
    def logged(*args, **kwargs):
        return fn(*args, **kwargs)

    return logged


WRAPPINGS = {
    "partial": lambda ledger: functools.partial(_charge_tool(ledger), currency="EUR"),
    "re-marked partial": lambda ledger: tool(functools.partial(_charge_tool(ledger),
                                                               currency="EUR")),
    "decorated partial": lambda ledger: tool(name="charge")(
        _decorated(functools.partial(_charge_tool(ledger), currency="EUR"))),
    "bound method": lambda ledger: _till(ledger).refund,
}


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("wrapping", sorted(WRAPPINGS))
def test_a_wrapped_tool_that_requires_approval_never_runs_unasked(stub, tmp_path, wrapping):
    ledger = tmp_path / "ledger.txt"
    wrapped = WRAPPINGS[wrapping](str(ledger))
    name = "refund" if wrapping == "bound method" else "charge"
    stub.reply = [StubLLMServer.tool_call(name, {"amount": 10}), "done"]
    asked = []

    def handler(request):
        asked.append(request)
        return Reject("no")

    agent = Agent(role="Clerk", goal="Bill", llm=stub.llm, tools=[wrapped])
    process = Process(tasks={"bill": Task(description="Bill the customer", agent=agent)},
                      approval_handler=handler)
    results = process.workflow()
    assert [(r.tool, r.arguments) for r in asked] == [(name, {"amount": 10})]
    assert not ledger.exists()  # rejected: the side effect never happened
    [call] = results["bill"].metadata["tool_calls"]
    assert not call["ok"]
    # The partial's fixed argument is not offered to the model (it could override it).
    assert stub.requests[0].tools == [name]
    [offered] = stub.requests[0].body["tools"]
    assert list(offered["function"]["parameters"]["properties"]) == ["amount"]


def test_a_wrapped_tool_without_any_approver_is_refused_before_it_runs(tmp_path):
    from ray_orch.core.errors import RayOrchError

    wrapped = functools.partial(_charge_tool(str(tmp_path / "ledger")), currency="EUR")
    agent = Agent(role="Clerk", goal="Bill", llm="openai/x", tools=[wrapped])
    process = Process(tasks={"bill": Task(description="Bill", agent=agent)})
    with pytest.raises(RayOrchError) as caught:
        process.workflow()
    assert "bill" in str(caught.value)
