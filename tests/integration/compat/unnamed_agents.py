from ray_orch import Agent, AgentTeam

summariser = Agent(instructions="Summarise the benefits of solar power")
translator = Agent(instructions="Translate the summary into French")

agents = AgentTeam(agents=[summariser, translator])
result = agents.start()
print(f"RESULT: {result}")
print(f"NAMES: {[t.name for t in agents.tasks.values()]}")
