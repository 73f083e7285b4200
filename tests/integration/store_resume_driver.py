"""A driver for the run store's crash test: a journaled tool (a charge appended to a
ledger file), then a report. Run as its own process (group) so the test can kill it.

Usage: store_resume_driver.py STUB_BASE_URL STORE RUN_ID LEDGER [resume]
"""

from __future__ import annotations

import json
import sys

from ray_orch import Agent, Process, Task


def record_charge(amount: int, ledger: str) -> str:
    """Charge a card (a side effect: a line appended to the ledger)."""
    with open(ledger, "a") as out:
        out.write(f"{amount}\n")
    return f"charged {amount}"


def main(argv: list[str]) -> int:
    base_url, store, run_id, ledger = argv[:4]
    llm = {"model": "openai/stub", "base_url": base_url, "api_key": "sk-stub-not-a-real-key"}
    cashier = Agent(role="Cashier", goal="Charge customers", llm=llm, tools=[record_charge])
    clerk = Agent(role="Clerk", goal="Report", llm=llm)
    tasks = {"charge": Task(description=f"Charge 42 to the card, ledger {ledger}",
                            agent=cashier, max_retries=0),
             "report": Task(description="Report the charge", agent=clerk,
                            context=["charge"])}
    process = Process(tasks=tasks, agents=[cashier, clerk], store=store, name="billing",
                      metrics=False, progress=False)
    resume = len(argv) > 4 and argv[4] == "resume"
    results = process.workflow(resume=run_id) if resume else process.workflow(run_id=run_id)
    print(json.dumps({name: out.raw for name, out in results.items()}))
    print(json.dumps(results["charge"].metadata.get("tool_calls", [])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
