from ray_orch import Agent, Task, AgentTeam

analyst = Agent(role="Skills Analysis Expert", goal="Analyze skills in a CV")
writer = Agent(role="Report Writer", goal="Write the report")

skills = Task(
    description="Analyze the CV's technical and soft skills",
    expected_output="Skill analysis",
    agent=analyst,
    context=["Candidate: Ada, ten years of Python and distributed systems"],
)

report = Task(
    description="Write the final CV report",
    expected_output="Final report",
    agent=writer,
    context=[skills],
)

agents = AgentTeam(agents=[analyst, writer], tasks=[skills, report],
                   process="sequential")
print(f"RESULT: {agents.start()}")
