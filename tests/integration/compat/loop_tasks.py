import os
import tempfile

from ray_orch import Agent, Task, AgentTeam

folder = tempfile.mkdtemp()
csv_path = os.path.join(folder, "tasks.csv")
with open(csv_path, "w") as f:
    f.write("What is 2+2?,4\nWhat is the capital of France?,Paris\nName a primary colour,red\n")

loop_agent = Agent(name="Teacher", role="Teacher", goal="Check answers",
                   instructions="Say whether the answer is right")
summary_agent = Agent(name="Summariser", role="Summariser", goal="Summarise",
                      instructions="Summarise the checks")

loop_task = Task(name="check_answers", description="Check this question and answer",
                 expected_output="correct or incorrect", agent=loop_agent, is_start=True,
                 task_type="loop", input_file=csv_path, next_tasks=["summary"])
summary_task = Task(name="summary", description="Summarise all checks",
                    expected_output="A summary", agent=summary_agent)

agents = AgentTeam(agents=[loop_agent, summary_agent], tasks=[loop_task, summary_task],
                   process="workflow")
result = agents.start()
print("RESULT:", result)
