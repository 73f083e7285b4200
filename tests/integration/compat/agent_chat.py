import asyncio

from ray_orch import Agent
from pydantic import BaseModel


class Weather(BaseModel):
    city: str
    temperature: int


def get_weather(city: str) -> str:
    """Get the weather for a city."""
    print(f"looking up the weather in {city}")
    return f"It is 21 degrees in {city}"


def polite(output):
    if "please" in output.raw.lower():
        return True, output
    return False, "Answer politely: say please"


agent = Agent(instructions="You are a weather assistant", tools=[get_weather])
print("START:", agent.start("What is the weather in Paris?"))
print("CHAT:", agent.chat("And what did I just ask you?"))
print("HISTORY:", len(agent.chat_history))
agent.clear_history()
print("RUN:", agent.run("Hello again"))
print("ARUN:", asyncio.run(agent.arun("One more time")))

structured = Agent(name="Structured", instructions="Answer in JSON")
reply = structured.chat(prompt="Weather in Oslo as JSON", output_json=Weather)
print("JSON:", Weather.model_validate_json(reply).temperature)
reply = structured.chat(prompt="Weather in Rome as JSON", output_pydantic=Weather)
print("PYDANTIC:", Weather.model_validate_json(reply).city)

guarded = Agent(name="Guarded", instructions="Answer briefly", guardrails=polite)
print("GUARDED:", guarded.start("Greet the customer"))
