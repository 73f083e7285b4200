from ray_orch import Agent, Task, AgentTeam


def get_time_check():
    """Check which worker should run."""
    print("checking the time")
    print("worker 2 is free")
    return 2


router = Agent(name="Router", role="Task router",
               goal="Route tasks based on get_time_check", tools=[get_time_check])
workers = [Agent(name=f"Worker {i}", role="Specialized worker", goal=f"Handle type {i}")
           for i in (1, 2, 3)]
synthesizer = Agent(name="Synthesizer", role="Result synthesizer", goal="Combine results")

router_task = Task(
    name="route_task",
    description="Call get_time_check and route to the right worker",
    expected_output="Task routing decision, 1, 2 or 3",
    agent=router,
    is_start=True,
    task_type="decision",
    next_tasks=["worker1_task", "worker2_task", "worker3_task"],
    condition={"1": ["worker1_task"], "2": ["worker2_task"], "3": ["worker3_task"]},
)
worker_tasks = [Task(name=f"worker{i}_task", description=f"Process type {i} operation",
                     expected_output=f"Worker {i} result", agent=workers[i - 1],
                     next_tasks=["synthesize_task"]) for i in (1, 2, 3)]
synthesize_task = Task(name="synthesize_task", description="Synthesize worker results",
                       expected_output="Final result", agent=synthesizer,
                       context=worker_tasks)

workflow = AgentTeam(agents=[router, *workers, synthesizer],
                     tasks=[router_task, *worker_tasks, synthesize_task],
                     process="workflow")
result = workflow.start()
print(f"RESULT: {result}")
print(f"ROUTE RAW: {router_task.result.raw}")
print(f"STATUS: {workflow.get_all_tasks_status()}")
