"""Workflow pictures: Mermaid text and PNG, before a run and after one (statuses, times,
the path taken), and the guide's ``visualize_workflow(tasks)``."""

from __future__ import annotations

import re
import struct
import sys

import pytest
from workflows import customer_service

from ray_orch import Agent, Process, Task
from ray_orch.observe.visualize import mermaid, process_graph, render_png, visualize_workflow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def edge_lines(text):
    return [line.strip() for line in text.splitlines() if "-->" in line or "-.->" in line]


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    width, height = struct.unpack(">II", data[16:24])
    return len(data), width, height


# -- before a run ---------------------------------------------------------------------------


def test_mermaid_of_the_guide_customer_service_workflow():
    tasks, _ = customer_service()
    text = mermaid(tasks)

    assert text.startswith("flowchart LR\n")
    assert 'categorize{"categorize<br/>Support"}' in text  # decision = rhombus
    assert 'tech_support{"tech_support<br/>Technical"}' in text
    assert 'billing_support["billing_support<br/>Billing"]' in text  # task = box
    edges = edge_lines(text)
    assert "categorize -- technical --> tech_support" in edges
    assert "categorize -- simple --> quick_response" in edges
    assert "tech_support -- needs_escalation --> escalate" in edges
    assert "billing_support -.-> send_confirmation" in edges  # next_tasks dashed
    assert len(edges) == 9
    assert "classDef" not in text  # nothing ran yet


def test_loops_context_defaults_and_escaping():
    worker = Agent(role="Worker", goal="Work", llm="openai/never-called")
    fetch = Task(description="Fetch rows", agent=worker)
    tasks = {
        "fetch": fetch,
        "per row": Task(description="Handle {item}", agent=worker, task_type="loop",
                        loop_data=["a", "b", "c"], context=[fetch]),
        "end": Task(description='Judge "quality" <of> [rows] #1', agent=worker,
                    task_type="decision", context=["per row"],
                    condition={'ok "go"': ["publish"], "default": ["fix"]}),
        "publish": Task(description="Publish", agent=worker),
        "fix": Task(description="Fix", agent=worker),
        "after_fix": Task(description="Report the failure", agent=worker,
                          condition_on_previous_failure=True),
    }
    text = mermaid(tasks)

    # names that are not Mermaid identifiers (space, the reserved word 'end') get safe ids
    assert 't_per_row[["per row<br/>Worker<br/>loop over 3 items"]]' in text
    assert 't_end{"end<br/>Worker"}' in text
    edges = edge_lines(text)
    assert "fetch --> t_per_row" in edges  # context (given as a Task object) solid
    assert "t_per_row --> t_end" in edges
    assert 't_end -->|"ok #quot;go#quot;"| publish' in edges  # escaped route label
    assert "t_end -- default --> fix" in edges  # the default route is labelled
    assert 'fix -.->|"on failure"| after_fix' in edges


def test_label_escaping_in_node_names():
    worker = Agent(role='Ops "A" <team> #1', goal="Work", llm="openai/never-called")
    text = mermaid([Task(name="a", description="x", agent=worker)])
    assert 'a["a<br/>Ops #quot;A#quot; #lt;team#gt; #35;1"]' in text


def test_sequential_mode_draws_the_implicit_chain():
    worker = Agent(role="Worker", goal="Work", llm="openai/never-called")
    tasks = {name: Task(description=name, agent=worker) for name in ("extract", "transform",
                                                                   "load")}
    assert edge_lines(mermaid(tasks, mode="sequential")) == ["extract --> transform",
                                                             "transform --> load"]


def test_png_before_a_run_is_a_real_picture(tmp_path):
    tasks, _ = customer_service()
    path = render_png(tasks, tmp_path / "cs.png")
    size, width, height = png_size(path)
    assert size > 20_000 and width > 600 and height > 300


def test_png_with_a_decision_cycle(tmp_path):
    worker = Agent(role="Worker", goal="Work", llm="openai/never-called")
    tasks = {
        "draft": Task(description="Draft", agent=worker, next_tasks=["review"]),
        "review": Task(description="Review", agent=worker, task_type="decision",
                       condition={"revise": ["draft"], "accept": ["publish"]}),
        "publish": Task(description="Publish", agent=worker),
    }
    assert "review -- revise --> draft" in edge_lines(mermaid(tasks))
    assert png_size(render_png(tasks, tmp_path / "cycle.png"))[0] > 10_000


def test_visualize_workflow_as_the_guide_calls_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tasks, _ = customer_service()
    # the guide's form: context entries may be Task objects (it reads dep.id)
    tasks["send_confirmation"].context = [tasks["categorize"]]

    path = visualize_workflow(tasks)

    assert path.name == "workflow_visualization.png"
    assert (tmp_path / "workflow_visualization.png").is_file()
    assert png_size(tmp_path / "workflow_visualization.png")[0] > 20_000


def test_png_without_networkx_names_the_extra(monkeypatch, tmp_path):
    tasks, _ = customer_service()
    monkeypatch.setitem(sys.modules, "networkx", None)
    with pytest.raises(ImportError, match=r"pip install 'ray-orch\[viz\]'"):
        render_png(tasks, tmp_path / "x.png")
    assert mermaid(tasks)  # Mermaid needs neither


# -- after a run ----------------------------------------------------------------------------


@pytest.mark.usefixtures("ray_session")
def test_after_a_run_statuses_times_and_the_path_taken(stub, tmp_path):
    stub.add_rule(match="Categorize customer inquiry", reply="technical")
    stub.add_rule(match="Resolve technical issue", reply="needs_escalation")
    tasks, agents = customer_service(stub.llm)
    process = Process(tasks=tasks, agents=agents)
    process.workflow()

    text = process_graph(process)
    assert text == mermaid(process)
    ran = ["categorize", "tech_support", "escalate", "send_confirmation"]
    classes = dict(re.findall(r"^\s*class (\S+) (\w+)$", text, re.M)[::-1])
    by_status = {status: names.split(",") for names, status in classes.items()}
    assert sorted(by_status["completed"]) == sorted(ran)
    assert sorted(by_status["skipped"]) == ["billing_support", "quick_response"]
    assert "classDef completed" in text and "classDef skipped" in text
    # each node that ran shows its status and execution time
    assert re.search(r'categorize\{"categorize<br/>Support<br/>completed · \d+\.\d\d s"\}', text)
    assert 'quick_response["quick_response<br/>Support<br/>skipped"]' in text

    edges = edge_lines(text)
    taken_line = next(line for line in text.splitlines() if "stroke-width:3px" in line)
    taken = {edges[int(i)] for i in taken_line.split()[1].split(",")}
    assert taken == {"categorize -- technical --> tech_support",
                     "tech_support -- needs_escalation --> escalate",
                     "escalate -.-> send_confirmation"}

    path = process_graph(process, "png", tmp_path / "run.png")
    assert png_size(path)[0] > 20_000
    # the guide's call after the run: the Tasks carry their status and result
    after = visualize_workflow(tasks, tmp_path / "after.png")
    assert png_size(after)[0] > 20_000
    from_tasks = mermaid(tasks)
    assert "classDef completed" in from_tasks and "classDef skipped" in from_tasks
    assert "stroke-width:3px" in from_tasks
