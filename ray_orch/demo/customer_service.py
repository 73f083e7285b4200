"""``ray-orch demo``: the guide's customer-service workflow, offline, on a local Ray.

Runs the "When to Use Workflow Process" example of the guide (Support, Technical, Billing
and Escalation agents; ``categorize`` decides the route, ``tech_support`` decides again,
every branch ends in ``send_confirmation``) and shows the inquiry, the route taken, each
task's output and time, the metrics endpoint, the bottleneck summary, and writes the
workflow picture (Mermaid text and a PNG).

With no model configured it uses the embedded offline models: no key, no network. Its
decisions compare the inquiry's meaning with each route's description and example
messages (all-MiniLM-L6-v2 sentence embeddings; see ``ray_orch.policy.decide_local``),
and the demo prints each key's score; the free text comes from SmolLM2-135M-Instruct on llama.cpp
and is illustrative only. Point
``RAY_ORCH_MODEL`` at any litellm model for real answers.

Usage::

    python -m ray_orch.demo                      # the first canned inquiry
    ray-orch demo "I was charged twice this month"   # your own inquiry
    python -m ray_orch.demo --inquiry 2          # another canned inquiry
    python -m ray_orch.demo --inquiry "My invoice shows the wrong VAT number"
    RAY_ORCH_MODEL=gpt-4o-mini python -m ray_orch.demo
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from ray_orch.api.process import Process
from ray_orch.core.errors import RayOrchError, RunError
from ray_orch.core.output import TaskOutput
from ray_orch.policy.agent import Agent
from ray_orch.policy.task import Task

__all__ = ["INQUIRIES", "build_workflow", "main"]

#: Canned inquiries, one per route of the workflow (``--inquiry N`` picks one, from 1).
INQUIRIES = [
    "Since yesterday's update the mobile app crashes every time I try to upload a photo. "
    "I already reinstalled it.",
    "I was charged twice for my March subscription. Please refund the duplicate payment.",
    "This is the third time I report that my account was locked after a suspected data "
    "breach; my lawyer wants a written explanation.",
    "What are your support hours on weekends?",
]

_BY_MEANING = (
    "Routes are chosen offline by meaning: the inquiry's sentence embedding against each "
    "route's description and example messages (about 9 in 10 right on labelled inquiries "
    "we did not tune on).")
_BY_LIKELIHOOD = (
    "Routes are chosen offline by the language model's likelihood of each route's "
    "description (about 3 in 4 right; install the sentence model, as `make venv` does, "
    "for about 9 in 10).")
_HOW_TO_SWITCH = (
    " The text comes from a 135M-parameter model on this CPU and is "
    "illustrative only. For real answers, point RAY_ORCH_MODEL at any litellm model:\n"
    "  RAY_ORCH_MODEL=gpt-4o-mini OPENAI_API_KEY=... ray-orch demo\n"
    "  RAY_ORCH_MODEL=ollama/llama3.1 ray-orch demo\n"
    "  RAY_ORCH_MODEL=openai/<name> RAY_ORCH_BASE_URL=http://host:port/v1 ray-orch demo")


def _about() -> str:
    from ray_orch.model.sentence import sentence_model_available

    return (_BY_MEANING if sentence_model_available() else _BY_LIKELIHOOD) + _HOW_TO_SWITCH


#: The categorize decision's keys, each described with examples in parentheses: the
#: embedded default compares the inquiry with these.
_CATEGORIES = (
    "technical: a bug, crash or error in the app (an outage, a login or sync failure, a "
    "slow or broken app, website or device); "
    "billing: a payment, charge, invoice or refund (a receipt, a price, a discount, a "
    "subscription or plan change); "
    "complex: legal, security, privacy or repeated complaints (a lawyer, a hacked account, "
    "a data breach, a personal data demand, a regulator, an angry customer asking for a "
    "manager); "
    "simple: a general question (opening hours, contact details, countries, languages, "
    "features, a thank-you).")


def build_workflow(inquiry: str, *, max_tokens: int = 80
                   ) -> tuple[dict[str, Task], list[Agent]]:
    """The guide's customer-service workflow, with the inquiry in each task.

    Args:
        inquiry: the customer's message.
        max_tokens: the longest reply an agent writes (keeps a small local model fast).

    Returns:
        ``(tasks, agents)`` for ``Process(tasks=tasks, agents=agents).workflow()``.

    Example:
        >>> tasks, agents = build_workflow("Where is my invoice?")
        >>> tasks["categorize"].condition["billing"]
        ['billing_support']
    """
    def agent(role: str, goal: str) -> Agent:
        return Agent(role=role, goal=goal, max_tokens=max_tokens,
                     instructions="Be brief: at most three sentences.")

    support_agent = agent("Support", "Handle inquiries")
    tech_agent = agent("Technical", "Solve technical issues")
    billing_agent = agent("Billing", "Handle payments")
    escalation_agent = agent("Escalation", "Handle complex cases")
    quoted = f'"{inquiry}"'
    tasks = {
        "categorize": Task(
            description=f"Categorize this customer inquiry: {quoted}\n{_CATEGORIES}",
            agent=support_agent,
            task_type="decision",
            condition={
                "technical": ["tech_support"],
                "billing": ["billing_support"],
                "complex": ["escalate"],
                "simple": ["quick_response"],
            },
        ),
        "tech_support": Task(
            description=(f"Resolve the technical issue in this inquiry: {quoted}\n"
                         "resolved: standard troubleshooting fixes it; needs_escalation: "
                         "it needs an engineer."),
            agent=tech_agent,
            task_type="decision",
            condition={
                "resolved": ["send_confirmation"],
                "needs_escalation": ["escalate"],
            },
        ),
        "billing_support": Task(
            description=f"Handle the billing inquiry and reply to the customer: {quoted}",
            agent=billing_agent,
            next_tasks=["send_confirmation"],
        ),
        "escalate": Task(
            description=("Handle this complex case: tell the customer that a senior "
                         f"specialist now owns it and what happens next: {quoted}"),
            agent=escalation_agent,
            next_tasks=["send_confirmation"],
        ),
        "quick_response": Task(
            description=f"Send a short automated response to this inquiry: {quoted}",
            agent=support_agent,
            next_tasks=["send_confirmation"],
        ),
        "send_confirmation": Task(
            description=(f"Send the customer who wrote {quoted} a two-sentence "
                         "confirmation that their inquiry has been handled."),
            agent=support_agent,
        ),
    }
    return tasks, [support_agent, tech_agent, billing_agent, escalation_agent]


def _model_line() -> str:
    from ray_orch.model.client import EMBEDDED
    from ray_orch.model.resolve import default_llm

    config = default_llm(who="the demo")
    if config.model == EMBEDDED:
        from ray_orch.model.sentence import sentence_model_available

        routes = ("all-MiniLM-L6-v2 embeddings" if sentence_model_available()
                  else "the same model's likelihoods")
        return ("embedded offline models (no key, no network): SmolLM2-135M-Instruct on "
                f"llama.cpp writes; routes are chosen by {routes}")
    where = f" at {config.base_url}" if config.base_url else ""
    return f"{config.model}{where} (from RAY_ORCH_MODEL)"


def _pick_inquiry(choice: str | None) -> str:
    if not choice:
        return INQUIRIES[0]
    if choice.isdigit():
        index = int(choice)
        if not 1 <= index <= len(INQUIRIES):
            raise ValueError(f"--inquiry must be 1..{len(INQUIRIES)} or a text, not {choice}")
        return INQUIRIES[index - 1]
    return choice


def _short(text: str, limit: int = 220) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _route(process: Process, outputs: dict[str, TaskOutput]) -> Text:
    """The tasks that ran, in finishing order, with each decision's answer."""
    order = [e.task for e in process.events
             if e.kind == "task_finished" and e.status == "completed" and e.task]
    route = Text()
    for i, name in enumerate(dict.fromkeys(order)):
        if i:
            route.append(" → ", style="dim")
        route.append(name, style="bold")
        decision = outputs[name].metadata.get("decision") if name in outputs else None
        if decision is not None:
            route.append(f" [{decision}]", style="magenta")
    return route


def _task_table(tasks: dict[str, Task]) -> Table:
    table = Table(title="Tasks", show_lines=True, expand=True)
    table.add_column("task", style="bold", no_wrap=True)
    table.add_column("agent", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("time s", justify="right", no_wrap=True)
    table.add_column("output (truncated)")
    colours = {"completed": "green", "failed": "red", "skipped": "dim"}
    for name, task in tasks.items():
        out = task.result
        seconds = f"{out.metadata.get('execution_time', 0.0):.2f}" if out else ""
        if out is None:
            shown = ""
        elif out.metadata.get("decision") is not None:
            shown = f"decision: {out.metadata['decision']}"
        else:
            shown = _short(out.raw)
        style = colours.get(task.status, "")
        table.add_row(name, task.agent_role or "", Text(task.status, style=style), seconds,
                      Text(shown, style=style if task.status != "completed" else ""))
    return table


def _write_pictures(process: Process, out_dir: Path, console: Console) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    mmd = out_dir / "customer_service.mmd"
    process.graph("mermaid", mmd)
    console.print(f"workflow picture (Mermaid): [cyan]{mmd}[/]")
    try:
        png = process.graph("png", out_dir / "customer_service.png")
    except ImportError as exc:  # networkx / matplotlib are the optional [viz] extra
        console.print(f"[yellow]PNG skipped: {exc}[/]")
    else:
        console.print(f"workflow picture (PNG):     [cyan]{png}[/]")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ray-orch demo",
        description="Run the guide's customer-service workflow on a local Ray "
                    "(offline: the embedded model, unless RAY_ORCH_MODEL is set).")
    parser.add_argument("text", nargs="?", metavar="INQUIRY",
                        help="the customer's inquiry, e.g. \"I was charged twice this "
                             "month\" (default: the first canned inquiry)")
    parser.add_argument("--inquiry", metavar="N|TEXT",
                        help=f"a canned inquiry (1-{len(INQUIRIES)}) or your own text")
    parser.add_argument("--no-tools", action="store_true",
                        help="skip the offline tool call after the workflow")
    parser.add_argument("--out", default="ray-orch-demo", type=Path,
                        help="directory for the workflow picture (default: ./ray-orch-demo)")
    parser.add_argument("--max-tokens", type=int, default=80,
                        help="longest reply per agent (default: 80)")
    return parser


def _scores_line(name: str, decision: object) -> Text | None:
    """``categorize → billing  (billing 0.52 · technical 0.18 · ...)``, or None."""
    scores = getattr(decision, "scores", None)
    if not scores:
        return None
    line = Text(f"  {name}: ", style="bold").append(str(decision), style="magenta")
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    line.append("   scores: ", style="dim")
    for i, (key, score) in enumerate(ranked):
        if i:
            line.append(" · ", style="dim")
        line.append(f"{key} {score:+.2f}", style="bold" if key == str(decision) else "")
    return line


def main(argv: list[str] | None = None) -> int:
    """Run the demo.

    Args:
        argv: command-line options (an inquiry text, ``--inquiry``, ``--out``,
            ``--max-tokens``); None
            means none (so ``ray-orch demo`` can call ``main()`` as is).

    Returns:
        0 when the workflow completed, 1 when it failed, 2 on bad options or no model.

    Example:
        >>> # raise SystemExit(main(["--inquiry", "2"]))
    """
    args = _parser().parse_args([] if argv is None else argv)
    console = Console()
    try:
        if args.text and args.inquiry:
            raise ValueError("give the inquiry once: as text or with --inquiry")
        inquiry = _pick_inquiry(args.text or args.inquiry)
        model = _model_line()
    except (ValueError, RayOrchError) as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    console.print(Panel.fit(
        "The guide's customer-service workflow: categorize → technical / billing / "
        "complex / simple → send_confirmation\n"
        f"model: {model}", title="ray-orch demo", border_style="blue"))
    console.print(Panel(inquiry, title="Inquiry", border_style="cyan"))

    tasks, agents = build_workflow(inquiry, max_tokens=args.max_tokens)
    process = Process(tasks=tasks, agents=agents, name="customer_service",
                      ray_init={"log_to_driver": False})
    started = time.perf_counter()
    failed: RunError | None = None
    console.print("[dim]running the workflow on a local Ray (Ray starts first: a few "
                  "seconds)…[/]")
    try:
        outputs = process.workflow()  # live progress on a terminal
    except RunError as exc:
        failed, outputs = exc, dict(exc.results or {})
    elapsed = time.perf_counter() - started

    console.print(Text("Route: ").append_text(_route(process, outputs)))
    for name, out in outputs.items():
        line = _scores_line(name, out.metadata.get("decision"))
        if line is not None:
            console.print(line)
    console.print(_task_table(tasks))
    if failed is not None:
        console.print(f"[red]the run failed:[/] {failed}")
    console.print(f"metrics endpoint (Prometheus): [cyan]{process.metrics_url or 'off'}[/]")
    metrics = process.metrics
    console.print(Rule("Bottlenecks: process.metrics.summary()", style="blue"))
    # soft_wrap: the summary is a fixed-width table; wrapping it would scramble the columns.
    console.print(metrics.summary(), soft_wrap=True, highlight=False, markup=False)
    for hint in metrics.suggestions():
        console.print(f"- {hint}", highlight=False, markup=False)
    console.print(Rule(style="blue"))
    _write_pictures(process, args.out, console)
    console.print(f"\nworkflow ran in {elapsed:.1f} s (including Ray start-up)")
    if not args.no_tools:
        console.print(Rule(style="blue"))
        from ray_orch.demo.orders import show_order_lookup

        if not show_order_lookup(console):
            failed = failed or RunError("the tool workflow failed")
    if os.environ.get("RAY_ORCH_MODEL"):
        console.print(f"[dim]model from RAY_ORCH_MODEL={os.environ['RAY_ORCH_MODEL']}[/]")
    else:
        console.print(Panel(_about(), title="About these answers", border_style="yellow"))
    return 1 if failed is not None else 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
