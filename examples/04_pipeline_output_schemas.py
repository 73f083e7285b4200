"""Guide section: "The Pipeline Pattern" (typed stages, a data-quality guardrail).

fetch -> enrich -> validate -> store. ``output_json`` makes a stage answer JSON that
follows a pydantic model (the provider is asked for that schema; the reply is parsed into
``TaskOutput.json_dict`` and ``.pydantic``); a reply that does not parse is re-asked with
the error. ``guardrails=[data_quality_check]`` rejects a validated dataset with
duplicates; the rejection is fed back to the agent (up to ``validation_steps`` times).

Run:
    python examples/04_pipeline_output_schemas.py

Model: ``RAY_ORCH_MODEL`` when set, else the embedded offline model (which is constrained
to the JSON schema, so even a 135M model returns valid records).
"""

from __future__ import annotations

import sys
from typing import Literal

from pydantic import BaseModel, Field

from ray_orch import Agent, GuardrailResult, Process, RunError, Task


class Customer(BaseModel):
    name: str = Field(min_length=1, max_length=40)
    city: str = Field(min_length=1, max_length=40)


class RawDataSchema(BaseModel):
    customers: list[Customer] = Field(min_length=1, max_length=3)


class EnrichedCustomer(Customer):
    country: str = Field(min_length=1, max_length=40)
    segment: Literal["consumer", "business"]


class EnrichedDataSchema(BaseModel):
    customers: list[EnrichedCustomer] = Field(min_length=1, max_length=3)


def data_quality_check(output):
    """Reject a dataset with no customers or with the same customer twice."""
    customers = (output.json_dict or {}).get("customers", [])
    if not customers:
        return GuardrailResult(success=False, error="no customers in the validated data")
    names = [c["name"].strip().lower() for c in customers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        return GuardrailResult(success=False, error=f"duplicate customers: {duplicates}")
    return GuardrailResult(success=True)


def main() -> int:
    def agent(role: str, goal: str) -> Agent:
        return Agent(role=role, goal=goal, max_tokens=300)

    fetcher = agent("Fetcher", "Fetch raw customer records")
    enricher = agent("Enricher", "Add country and segment to customer records")
    validator = agent("Validator", "Remove invalid and duplicate records")
    storer = agent("Storer", "Store records and confirm")

    # Data enrichment pipeline
    pipeline_tasks = {
        "fetch": Task(
            description="Fetch raw data from source: two or three customers with name and city",
            agent=fetcher,
            expected_output="Raw data",
            output_json=RawDataSchema,
        ),
        "enrich": Task(
            description="Enrich data with external sources: add each customer's country "
                        "and segment",
            agent=enricher,
            context=["fetch"],
            expected_output="Enriched data",
            output_json=EnrichedDataSchema,
        ),
        "validate": Task(
            description="Validate enriched data: drop duplicate customers",
            agent=validator,
            context=["enrich"],
            output_json=EnrichedDataSchema,
            guardrails=[data_quality_check],
            validation_steps=3,
            expected_output="Validated data",
        ),
        "store": Task(
            description="Store in database and confirm how many records were stored",
            agent=storer,
            context=["validate"],
            expected_output="Storage confirmation",
        ),
    }

    process = Process(tasks=pipeline_tasks, agents=[fetcher, enricher, validator, storer],
                      name="enrichment_pipeline")
    try:
        results = process.sequential()
    except RunError as exc:
        print(f"pipeline failed: {exc}")
        return 1

    validated = results["validate"].pydantic
    assert isinstance(validated, EnrichedDataSchema)  # parsed into the pydantic model
    for customer in validated.customers:
        print(f"validated: {customer.name} ({customer.city}, {customer.country}, "
              f"{customer.segment})")
    print(f"guardrail retries on validate: {results['validate'].metadata['retry_count']}")
    print(f"store: {results['store'].raw[:100]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
