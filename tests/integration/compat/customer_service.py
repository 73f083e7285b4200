from ray_orch import Agent, Task, AgentTeam

classifier = Agent(name="Query Classifier", role="Query Classification",
                   goal="Classify incoming customer queries")
handler = Agent(name="Query Handler", role="Query Resolution", goal="Handle queries")
evaluator = Agent(name="Satisfaction Evaluator", role="Satisfaction Assessment",
                  goal="Evaluate customer satisfaction")
optimizer = Agent(name="Response Optimizer", role="Service Optimization",
                  goal="Optimize service based on feedback")

classification_task = Task(
    name="classify_query",
    description="Classify customer query",
    expected_output="Query classification",
    agent=classifier,
    is_start=True,
    task_type="decision",
    condition={
        "high": ["handle_query", "evaluate_satisfaction"],
        "low": ["handle_query"],
    },
)

handling_task = Task(name="handle_query", description="Handle customer query",
                     expected_output="Query response", agent=handler,
                     next_tasks=["evaluate_satisfaction"])

evaluation_task = Task(name="evaluate_satisfaction",
                       description="Evaluate customer satisfaction",
                       expected_output="Satisfaction level", agent=evaluator,
                       next_tasks=["optimize_response"])

optimization_task = Task(
    name="optimize_response",
    description="Optimize response strategy",
    expected_output="Optimization recommendations",
    agent=optimizer,
    task_type="decision",
    condition={"major_revision": ["classify_query"], "maintain_approach": ""},
)

workflow = AgentTeam(
    agents=[classifier, handler, evaluator, optimizer],
    tasks=[classification_task, handling_task, evaluation_task, optimization_task],
    process="workflow",
)
workflow.start()
print(f"STATUS: {workflow.get_all_tasks_status()}")
