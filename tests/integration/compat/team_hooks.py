from ray_orch import Agent, Task, AgentTeam
from ray_orch.config.feature_configs import MultiAgentHooksConfig

researcher = Agent(name="Researcher", role="Research Assistant", goal="Research topics")

task1 = Task(
    name="research",
    description="Research the topic: {{topic}}",
    expected_output="A brief summary of the topic",
    agent=researcher,
    variables={"topic": "artificial intelligence"},
)

task2 = Task(
    name="facts",
    description="List 3 facts about {{subject}}",
    expected_output="3 facts",
    agent=researcher,
)


def on_start(task, task_id):
    print(f"Starting task: {task.name} (ID: {task_id})")


def on_complete(task, output):
    print(f"Completed task: {task.name}: {output.raw}")


agents = AgentTeam(
    agents=[researcher],
    tasks=[task1, task2],
    process="workflow",
    hooks=MultiAgentHooksConfig(on_task_start=on_start, on_task_complete=on_complete),
    variables={"subject": "REST APIs"},
)

result = agents.start()
print(f"RESULT: {result}")
print(f"DESCRIPTION AFTER: {task1.description}")
