import asyncio

from ray_orch import Agent, Task, AgentTeam

market_agent = Agent(name="Market", role="Market Researcher", goal="Research the market",
                     instructions="Research market trends")
competitor_agent = Agent(name="Competitor", role="Competitor Analyst", goal="Analyse competitors",
                         instructions="Analyse the competitors")
customer_agent = Agent(name="Customer", role="Customer Researcher", goal="Understand customers",
                       instructions="Research customer needs")
aggregator = Agent(name="Aggregator", role="Research Aggregator", goal="Combine the research",
                   instructions="Combine all research into one report")

market_task = Task(description="Research market trends for electric cars",
                   expected_output="Market trends", agent=market_agent, async_execution=True,
                   name="market")
competitor_task = Task(description="Analyse competitors of electric car makers",
                       expected_output="Competitor analysis", agent=competitor_agent,
                       async_execution=True, name="competitors")
customer_task = Task(description="Research what electric car customers need",
                     expected_output="Customer needs", agent=customer_agent,
                     async_execution=True, name="customers")
aggregate_task = Task(description="Combine the research into one report",
                      expected_output="A combined report", agent=aggregator,
                      context=[market_task, competitor_task, customer_task], name="aggregate")


async def main():
    agents = AgentTeam(
        agents=[market_agent, competitor_agent, customer_agent, aggregator],
        tasks=[market_task, competitor_task, customer_task, aggregate_task],
        process="workflow",
    )
    result = await agents.astart()
    print("RESULT:", result)
    return result


if __name__ == "__main__":
    asyncio.run(main())
