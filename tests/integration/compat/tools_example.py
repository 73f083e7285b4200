from ray_orch import Agent, Task, AgentTeam


def get_weather(city: str) -> str:
    """Get the weather of a city."""
    return f"The weather in {city} is sunny, 21C"


weather_agent = Agent(name="Weather", role="Weather Reporter", goal="Report the weather",
                      instructions="Use the tool to report the weather", tools=[get_weather])
task = Task(name="weather", description="What is the weather in Paris?",
            expected_output="The weather", agent=weather_agent, tools=[get_weather])

agents = AgentTeam(agents=[weather_agent], tasks=[task])
print("RESULT:", agents.start())
