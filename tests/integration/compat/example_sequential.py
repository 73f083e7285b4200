from ray_orch import Agent, Task, AgentTeam

researcher = Agent(
    name="Researcher",
    role="Senior Research Analyst",
    goal="Uncover cutting-edge developments in AI",
    backstory="You are an expert at a technology research group.",
)
writer = Agent(
    name="Writer",
    role="Tech Content Strategist",
    goal="Craft compelling content on tech advancements",
    backstory="You are a content strategist known for making complex topics accessible.",
)

research_task = Task(
    name="research_task",
    description="Analyze the latest AI developments of the year.",
    expected_output="A list of the five most important developments",
    agent=researcher,
)
writing_task = Task(
    name="writing_task",
    description="Write a short blog post about the developments the researcher found.",
    expected_output="A four-paragraph blog post",
    agent=writer,
)

agents = AgentTeam(
    agents=[researcher, writer],
    tasks=[research_task, writing_task],
    process="sequential",
)

result = agents.start()
print("RESULT:", result)
