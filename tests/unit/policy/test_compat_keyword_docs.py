"""docs/PRAISONAI.md's keyword tables say what the code does: the "no effect" rows list
exactly the keywords the code warns about (each with why), and every keyword the docs
call honoured is accepted without a warning."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from ray_orch import Agent, AgentTeam, PraisonCompatWarning, Task
from ray_orch.policy.praison import AGENT_NO_EFFECT, TASK_NO_EFFECT, TEAM_NO_EFFECT

DOCS = Path(__file__).resolve().parents[3] / "docs" / "PRAISONAI.md"
TABLES = {"Task": TASK_NO_EFFECT, "Agent": AGENT_NO_EFFECT,
          "AgentTeam (`Agents`, `PraisonAIAgents`)": TEAM_NO_EFFECT}


def rows(title):
    """(keywords, what the docs say) for each row of one keyword table."""
    text = DOCS.read_text()
    section = text.split(f"### {title}\n", 1)[1].split("\n#", 1)[0]
    found = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`"):
            names = re.findall(r"`([a-z_]+)`", cells[0])
            found.append((set(names), cells[1]))
    return found


@pytest.mark.parametrize("title", list(TABLES))
def test_the_no_effect_rows_are_the_codes_table(title):
    documented = set().union(*(names for names, says in rows(title)
                               if says.startswith("no effect")))
    assert documented == set(TABLES[title])


@pytest.mark.parametrize("title", ["Task", "Agent"])
def test_each_no_effect_row_says_why_except_the_memory_ones(title):
    for names, says in rows(title):
        if says.startswith("no effect") and not names & {"memory", "knowledge"}:
            assert says.startswith("no effect: ") and len(says) > 30, names


def test_honoured_keywords_are_accepted_without_a_warning():
    agent = Agent(name="A", guardrails=lambda o: True, handoffs=[Agent(name="B")],
                  max_handoffs=2, tools=[])
    with warnings.catch_warnings():
        warnings.simplefilter("error", PraisonCompatWarning)
        task = Task(description="d {{x}}", agent=agent, variables={"x": 1},
                    human_input=True, tools=[], guardrails=lambda o: True)
        AgentTeam(agents=[agent], tasks=[task], output="verbose", execution={"max_iter": 5},
                  guardrails="safety", hooks={"on_task_start": print})
    assert task.variables == {"x": 1} and agent.guardrails and len(agent.tools) == 1


def test_no_effect_keywords_still_warn(monkeypatch):
    from ray_orch.policy import praison

    monkeypatch.setattr(praison, "_warned", set())  # once per process: start afresh
    with pytest.warns(PraisonCompatWarning, match="images"):
        Task(description="d", images=["a.png"])
