from ray_orch import Agent, Task, AgentTeam
from pydantic import BaseModel
from typing import List


class Records(BaseModel):
    items: List[str]


collector = Agent(name="Collector", role="Data collector", goal="Collect records")
processor = Agent(name="Processor", role="Record processor", goal="Process one record")

collect_task = Task(
    name="collect_data",
    description="Collect the customer records",
    expected_output="A JSON object with an 'items' array",
    agent=collector,
    is_start=True,
    next_tasks=["process_data"],
    output_json=Records,
)

process_task = Task(
    name="process_data",
    description="Process one record at a time",
    expected_output="The processed record",
    agent=processor,
    task_type="loop",
    condition={
        "more records to process": ["process_data"],
        "all records processed": [],
    },
    context=[collect_task],
)

workflow = AgentTeam(
    agents=[collector, processor],
    tasks=[collect_task, process_task],
    process="workflow",
)

result = workflow.start()
print(f"STATUS: {workflow.get_all_tasks_status()}")
print(f"ITERATIONS: {len(process_task.result.iterations)}")
