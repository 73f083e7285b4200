from ray_orch import Agent, Task, AgentTeam

researcher = Agent(name="Researcher", role="Researcher", goal="Research topics",
                   backstory="A researcher")
writer = Agent(name="Writer", role="Writer", goal="Write articles", backstory="A writer")

research = Task(name="research", description="Research the history of Ray",
                expected_output="Research notes", agent=researcher)
article = Task(name="article", description="Write an article about Ray",
               expected_output="An article", agent=writer)

agents = AgentTeam(agents=[researcher, writer], tasks=[research, article],
                   process="hierarchical", manager_llm="gpt-4o-mini")
result = agents.start(return_dict=True)
print("STATUS:", result["task_status"])
print("RESULT:", result["task_results"][1].raw)
