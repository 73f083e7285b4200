import os
import tempfile

from ray_orch import Agent, Task, AgentTeam

log = []


def task_callback(output):
    log.append(output.raw)
    print(f"Callback: agent={output.agent} description={output.description[:20]!r} raw={output.raw}")


out_dir = tempfile.mkdtemp()
report_path = os.path.join(out_dir, "reports", "report.md")

analyst = Agent(name="Analyst", role="Sales Analyst", goal="Analyse", backstory="An analyst")
reporter = Agent(name="Reporter", role="Reporter", goal="Report", backstory="A reporter")

analysis = Task(name="analysis", description="Analyse the quarterly sales",
                expected_output="An analysis", agent=analyst, callback=task_callback)
report = Task(name="report", description="Write the sales report",
              expected_output="A report", agent=reporter, callback=task_callback,
              output_file=report_path, create_directory=True)

agents = AgentTeam(agents=[analyst, reporter], tasks=[analysis, report], process="sequential")
agents.start()
print("CALLED:", len(log))
print("FILE:", open(report_path).read())
