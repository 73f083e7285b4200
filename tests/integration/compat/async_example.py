import asyncio
from typing import List

from pydantic import BaseModel

from ray_orch import Agent, Task, AgentTeam, TaskOutput


class SearchResult(BaseModel):
    query: str
    results: List[str]
    total_results: int


async_agent = Agent(name="AsyncSearch", role="Search Specialist",
                    goal="Find information", backstory="Expert in search")
summary_agent = Agent(name="Summary", role="Summariser", goal="Summarise findings",
                      backstory="Expert in summaries")

seen = []


async def async_callback(output: TaskOutput):
    await asyncio.sleep(0)
    seen.append(output.output_format)
    print(f"Callback: {output.output_format} {output.pydantic.query if output.pydantic else ''}")


async def main():
    tasks = [
        Task(name=f"search_{i}", description=f"Search for information about {topic}",
             expected_output="A SearchResult", agent=async_agent, async_execution=True,
             output_pydantic=SearchResult, callback=async_callback)
        for i, topic in enumerate(["climate", "oceans"])
    ]
    summary = Task(name="summary", description="Summarise the search results",
                   expected_output="A summary", agent=summary_agent, context=tasks)
    agents = AgentTeam(agents=[async_agent, summary_agent], tasks=tasks + [summary],
                       process="sequential")
    result = await agents.astart(return_dict=True)
    for task_id, output in result["task_results"].items():
        print(f"Task {task_id}: {result['task_status'][task_id]} {type(output.pydantic).__name__}")
    print("CALLBACKS:", sorted(seen))


if __name__ == "__main__":
    asyncio.run(main())
