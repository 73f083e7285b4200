from typing import Any, Tuple

from ray_orch import Agent, Task, TaskOutput


def email_validator(task_output: TaskOutput) -> Tuple[bool, Any]:
    content = task_output.raw.lower()
    if "subject:" not in content:
        return False, "Email must include a subject line"
    return True, task_output


agent = Agent(name="Email Assistant", role="Professional Email Writer",
              goal="Write clear, professional emails")

task = Task(description="Write a professional email", expected_output="An email",
            agent=agent, guardrails=email_validator, max_retries=2)

good = TaskOutput(description="Email task", raw="Subject: Done\n\nDear Client, ...",
                  agent="Email Assistant")
result = task._process_guardrail(good)
print(f"Good email result: {'PASSED' if result.success else 'FAILED'}")

bad = TaskOutput(description="Email task", raw="Hi there", agent="Email Assistant")
result = task._process_guardrail(bad)
print(f"Bad email result: {'PASSED' if result.success else 'FAILED'}: {result.error}")

plain = Task(description="Write a thank you note", expected_output="A note", agent=agent)
print(f"Guardrail function: {plain._guardrail_fn}")
print(f"No guardrail result: {'PASSED' if plain._process_guardrail(good).success else 'FAILED'}")
