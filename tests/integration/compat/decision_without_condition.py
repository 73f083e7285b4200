from ray_orch import Agent, Task, AgentTeam

generator = Agent(name="Generator", role="Generator", goal="Generate ideas")
evaluator = Agent(name="Evaluator", role="Evaluator", goal="Evaluate ideas")

generate = Task(
    name="generate",
    description="Generate three startup ideas",
    expected_output="Three ideas",
    agent=generator,
    is_start=True,
    task_type="decision",
    next_tasks=["evaluate"],
)

evaluate = Task(
    name="evaluate",
    description="Evaluate the ideas and pick the best",
    expected_output="The best idea",
    agent=evaluator,
    context=[generate],
)

workflow = AgentTeam(agents=[generator, evaluator], tasks=[generate, evaluate],
                     process="workflow")
result = workflow.start()
print(f"RESULT: {result}")
print(f"GENERATED: {generate.result.raw}")
