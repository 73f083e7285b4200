from ray_orch import Agent, Task, AgentTeam
from typing import List

# Create agents
collector = Agent(
    name="Collector",
    role="Data Collector",
    goal="Collect the raw data",
    instructions="Collect three data points about renewable energy.",
)
validator = Agent(
    name="Validator",
    role="Data Validator",
    goal="Check that the data is complete",
    instructions="Answer 'valid' if the data is complete, else 'invalid'.",
)
processor = Agent(
    name="Processor",
    role="Data Processor",
    goal="Summarise the validated data",
    instructions="Summarise the data in one paragraph.",
)

collect_task = Task(
    name="collect_data",
    description="Collect three data points about renewable energy",
    expected_output="Three data points",
    agent=collector,
    is_start=True,
    next_tasks=["validate_data"],
)
validate_task = Task(
    name="validate_data",
    description="Validate the collected data",
    expected_output="'valid' or 'invalid'",
    agent=validator,
    task_type="decision",
    condition={"valid": ["process_data"], "invalid": ["collect_data"]},
)
process_task = Task(
    name="process_data",
    description="Summarise the validated data",
    expected_output="A one-paragraph summary",
    agent=processor,
)

agents = AgentTeam(
    agents=[collector, validator, processor],
    tasks=[collect_task, validate_task, process_task],
    process="workflow",
)

result = agents.start()
print("RESULT:", result)
