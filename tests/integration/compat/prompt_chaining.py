from ray_orch import Agent, Task, AgentTeam


def get_time_check():
    import time
    current_time = int(time.time())
    result = "even" if current_time % 2 == 0 else "odd"
    print(f"Time check: {current_time} is {result}")
    return result


create_agent = lambda name, role, goal: Agent(name=name, role=role, goal=goal,
                                              instructions=f"You are the {role}. {goal}")

timer_agent = create_agent("Timer", "Time Checker", "Check the time")
first_agent = create_agent("Drafter", "First Processor", "Draft the answer")
second_agent = create_agent("Polisher", "Second Processor", "Polish the draft")
third_agent = create_agent("Finisher", "Final Processor", "Finish the answer")

timer_task = Task(
    name="time_check",
    description="Get the time and check if it is even or odd",
    expected_output="Either 'even' or 'odd'",
    agent=timer_agent,
    is_start=True,
    task_type="decision",
    condition={"even": ["draft"], "odd": ["exit"]},
)
draft_task = Task(name="draft", description="Draft the answer", expected_output="A draft",
                  agent=first_agent, next_tasks=["polish"])
polish_task = Task(name="polish", description="Polish the draft", expected_output="A polished draft",
                   agent=second_agent, next_tasks=["finish"])
finish_task = Task(name="finish", description="Finish the answer", expected_output="The final answer",
                   agent=third_agent)

workflow = AgentTeam(
    agents=[timer_agent, first_agent, second_agent, third_agent],
    tasks=[timer_task, draft_task, polish_task, finish_task],
    process="workflow",
)
results = workflow.start(return_dict=True)

print("\nTask Results:")
for task_id, result in results["task_results"].items():
    if result:
        print(f"Task {task_id}: {result.raw}")
print("STATUS:", results["task_status"])
