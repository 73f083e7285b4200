from ray_orch import Agent, PraisonAIAgents

idea = Agent(name="Ideas", instructions="Suggest a name for a coffee shop")
slogan = Agent(name="Slogans", instructions="Write a slogan for the coffee shop named before")
check = Agent(name="Checker", role="Checker", goal="Check the slogan fits the name",
              reflection=True)

agents = PraisonAIAgents(agents=[idea, slogan, check])
result = agents.start()
print("RESULT:", result)
