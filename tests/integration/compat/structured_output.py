from pydantic import BaseModel

from ray_orch import Agent, Task, AgentTeam


class Recipe(BaseModel):
    name: str
    ingredients: list[str]
    minutes: int


class Review(BaseModel):
    verdict: str
    score: int


chef = Agent(name="Chef", role="Chef", goal="Create recipes", backstory="A creative chef")
critic = Agent(name="Critic", role="Food Critic", goal="Review recipes", backstory="A strict critic")

recipe_task = Task(name="recipe", description="Create a quick pasta recipe",
                   expected_output="A recipe", agent=chef, output_pydantic=Recipe)
review_task = Task(name="review", description="Review the recipe",
                   expected_output="A review", agent=critic, output_json=Review)

agents = AgentTeam(agents=[chef, critic], tasks=[recipe_task, review_task])
result = agents.start(return_dict=True)

recipe = result["task_results"][0]
review = result["task_results"][1]
print("RECIPE:", recipe.pydantic.name, recipe.pydantic.minutes, recipe.output_format)
print("REVIEW:", review.json_dict["verdict"], review.json_dict["score"], review.output_format)
print("STR:", str(review).replace("\n", " "))
