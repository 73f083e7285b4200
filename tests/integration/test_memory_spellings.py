"""PraisonAI's and CrewAI's memory spellings on Ray, and the ``remember`` / ``recall``
tools: what the model saw is read from the stub's request log."""

from __future__ import annotations

import warnings

import pytest

from ray_orch import Agent, AgentTeam, Memory, Process, Task
from ray_orch.testing import StubLLMServer


@pytest.fixture
def memory_dir(tmp_path, monkeypatch):
    folder = tmp_path / "default-memory"
    monkeypatch.setenv("RAY_ORCH_MEMORY_DIR", str(folder))
    return folder


def test_praisonai_team_memory_user_id_and_memory_config(ray_session, tmp_path):
    store = tmp_path / "praison"
    with StubLLMServer(reply="Understood.") as stub:
        stub.add_rule("Remember", reply="Noted: Alice's anniversary is on June 3rd.")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # honoured: no "has no effect" warning
            writer = Agent(name="Assistant", instructions="Help Alice", llm=stub.llm,
                           memory=True)
            AgentTeam(agents=[writer], tasks=[Task(description="Remember: Alice's "
                                                   "anniversary is on June 3rd",
                                                   agent=writer)],
                      memory=True, user_id="alice",
                      memory_config={"provider": "rag", "storage": {"path": str(store)}}
                      ).start()
        stub.clear()
        asker = Agent(name="Assistant", instructions="Help", llm=stub.llm)
        AgentTeam(agents=[asker], tasks=[Task(description="When is the anniversary "
                                                          "dinner to be booked?",
                                              agent=asker)],
                  memory=True, user_id="alice",
                  memory_config={"provider": "rag", "storage": {"path": str(store)}}).start()
        assert "anniversary is on June 3rd" in stub.requests[-1].prompt
        stub.clear()
        AgentTeam(agents=[asker], tasks=[Task(description="When is the anniversary "
                                                          "dinner to be booked?",
                                              agent=asker)],
                  memory=True, user_id="bob",
                  memory_config={"provider": "rag", "storage": {"path": str(store)}}).start()
        assert "June 3rd" not in stub.requests[-1].prompt
    kept = Memory(store).search("anniversary", user_id="alice")[0].metadata
    assert kept["agent"] == "Assistant" and kept["task"] and kept["run_id"]


def test_crewai_memory_config_embedder_and_knowledge_sources(ray_session, tmp_path,
                                                             memory_dir):
    faq = tmp_path / "faq.md"
    faq.write_text("# Opening hours\nThe spa is open from 7am to 10pm every day.\n")
    with StubLLMServer(reply="The spa opens at 7am.") as stub:
        agent = Agent(role="Concierge", goal="Answer guests", llm=stub.llm,
                      knowledge_sources=[str(faq)])
        process = Process(tasks={"q": Task(description="What time can I use the spa?",
                                           agent=agent)}, agents=[agent],
                          memory=True, embedder={"provider": "sentence-transformers"},
                          memory_config={"provider": "mem0", "config": {"user_id": "john"}})
        out = process.workflow()["q"]
        assert "open from 7am to 10pm" in stub.requests[-1].prompt
    assert out.metadata["memory"]["user_id"] == "john"
    kept = Memory().search("spa hours", user_id="john")
    assert kept[0].text == "The spa opens at 7am." and kept[0].metadata["agent"] == "Concierge"
    assert (memory_dir / "memory.sqlite").exists()


def test_agent_memory_true_alone_and_memory_tools(ray_session, memory_dir):
    with StubLLMServer(reply="Saved.") as stub:
        stub.add_rule("Keep in mind", reply=StubLLMServer.tool_call(
            "remember", {"text": "Carla's seat preference is the aisle"}), times=1)
        agent = Agent(role="Booker", goal="Book", llm=stub.llm, memory=True,
                      memory_tools=True)
        other = Agent(role="Clerk", goal="File", llm=stub.llm)
        tasks = {"a": Task(description="Keep in mind that Carla likes aisle seats",
                           agent=agent),
                 "b": Task(description="File the booking", agent=other, context=["a"])}
        Process(tasks=tasks, agents=[agent, other], user_id="carla").workflow()
        tools = [t["function"]["name"] for t in stub.requests[0].body.get("tools", [])]
        assert tools == ["remember", "recall"]
    memory = Memory()
    found = [i.text for i in memory.search("seat", user_id="carla", limit=5)]
    assert "Carla's seat preference is the aisle" in found  # the tool's
    assert "Saved." in found  # the task's output (agent "a" remembers)
    assert all(i.metadata["agent"] == "Booker" for i in memory.search("seat", user_id="carla"))
