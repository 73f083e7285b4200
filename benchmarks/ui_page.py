"""The run viewer: how long the run page of a 1,000-item loop takes to open (stored, and
live while the loop streams), in headless Chromium; with ``--screenshots`` it also writes
docs/ui-runs.png, docs/ui-run.png and docs/ui-approval.png.

Usage: ui_page.py [--screenshots] [--items N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import start_ray

from ray_orch import Agent, Process, RunPaused, Task
from ray_orch.testing import StubLLMServer
from ray_orch.ui.server import UIServer
from ray_orch.ui.store_source import StoreSource

DOCS = Path(__file__).resolve().parent.parent / "docs"
HTML = '<b>Launch day</b> <img src=x onerror="alert(1)"> — our new <i>pricing</i> page'


def support(stub: StubLLMServer, directory: str) -> Process:
    """A decision routes a ticket: the page shows the path taken."""
    agent = Agent(role="Support", goal="Help", llm=stub.llm)
    tasks = {
        "read": Task(description="Read the ticket", agent=agent),
        "triage": Task(description="Classify the ticket", agent=agent, context=["read"],
                       task_type="decision",
                       condition={"billing": ["refund"], "technical": ["fix"]}),
        "refund": Task(description="Refund the customer", agent=agent),
        "fix": Task(description="Fix the bug", agent=agent),
        "reply": Task(description="Reply to the customer", agent=agent,
                      context=["refund"]),
    }
    return Process(tasks=tasks, agents=[agent], checkpoint_dir=directory, name="support")


def bulk(stub: StubLLMServer, directory: str, items: int, *, ask: bool) -> Process:
    """plan (asks a person when ``ask``) -> a loop over ``items`` -> report."""
    agent = Agent(role="Worker", goal="Work", llm=stub.llm)
    tasks = {
        "plan": Task(description="Plan the batch", agent=agent, human_input=ask),
        "items": Task(description="Handle item {name}", agent=agent, task_type="loop",
                      loop_data=[{"name": f"item-{i}"} for i in range(items)],
                      context=["plan"]),
        "report": Task(description="Report on the batch", agent=agent, context=["items"]),
    }
    return Process(tasks=tasks, agents=[agent], checkpoint_dir=directory,
                   name=f"bulk-{items}")


def blog(stub: StubLLMServer, directory: str) -> Process:
    agent = Agent(role="Writer", goal="Write", llm=stub.llm)
    tasks = {
        "research": Task(description="Research the topic", agent=agent),
        "draft": Task(description="Draft the post", agent=agent, context=["research"],
                      human_input=True),
        "publish": Task(description="Publish the post", agent=agent, context=["draft"]),
    }
    return Process(tasks=tasks, agents=[agent], checkpoint_dir=directory, name="blog")


def paused(process: Process) -> tuple[str, str]:
    try:
        process.workflow()
    except RunPaused as pause:
        return pause.run_id, pause.requests[0].id
    raise SystemExit("the run did not pause")


def open_time(browser: Any, url: str) -> float:
    """Seconds from navigation to the page drawn with its data (``body[data-ready]``)."""
    page = browser.new_page()
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_selector("body[data-ready]", timeout=60_000)
    took = time.perf_counter() - started
    if "-v" in sys.argv:
        slow = page.evaluate("""performance.getEntriesByType('resource').concat(
            performance.getEntriesByType('navigation')).map(
            e => `${e.name.split('/').slice(-2).join('/')} ${e.startTime.toFixed(0)}+${e.duration.toFixed(0)}`)""")
        print(f"  {took:.3f}: " + "; ".join(slow))
    page.close()
    return took


def main(screenshots: bool, items: int) -> None:
    from playwright.sync_api import sync_playwright

    print(f"ray start: {start_ray():.1f} s")
    directory = tempfile.mkdtemp(prefix="ui-bench-")
    with StubLLMServer() as stub:
        stub.add_rule(match="Classify", reply="billing")
        stub.add_rule(match="Draft the post", reply=HTML)
        stub.add_rule(match="Reply to the customer", reply="We refunded your order.")
        support(stub, directory).workflow()
        blog_run, _ = paused(blog(stub, directory))
        started = time.perf_counter()
        stored = bulk(stub, directory, items, ask=False)
        stored.workflow()
        stored_run = stored.last_result.run_id  # type: ignore[union-attr]
        print(f"{items}-item loop ran in {time.perf_counter() - started:.1f} s")
        live_run, request = paused(bulk(stub, directory, items, ask=True))
        with UIServer(StoreSource([directory])) as server, sync_playwright() as p:
            chromium = p.chromium.launch(executable_path="/usr/bin/chromium",
                                         args=["--no-sandbox"])
            browser = chromium.new_context(viewport={"width": 1400, "height": 900})
            base = server.url.split("/?")[0]
            page = browser.new_page()
            page.goto(server.url)  # the cookie
            page.close()
            times = [open_time(browser, f"{base}/runs/{stored_run}") for _ in range(5)]
            print(f"stored {items}-item loop, run page opens in: "
                  + ", ".join(f"{t:.3f}" for t in times) + " s")
            server.source.answer(live_run, request, __import__(
                "ray_orch.core.approvals", fromlist=["Approve"]).Approve(by="bench"))
            live = server.source.live[live_run]  # type: ignore[attr-defined]
            while live.active and live.iterations_done() < items // 10:
                time.sleep(0.05)
            times = []
            while live.active and len(times) < 5:
                times.append(open_time(browser, f"{base}/runs/{live_run}"))
            print(f"live {items}-item loop (streaming), run page opens in: "
                  + ", ".join(f"{t:.3f}" for t in times) + " s")
            if screenshots:
                shoot(browser, base, support_run=_latest(server, "support"), blog_run=blog_run)
            chromium.close()


def _latest(server: UIServer, workflow: str) -> str:
    return next(r.run_id for r in server.source.list_runs() if r.workflow == workflow)


def shoot(browser: Any, base: str, *, support_run: str, blog_run: str) -> None:
    page = browser.new_page()
    page.goto(f"{base}/")
    page.wait_for_selector("body[data-ready]")
    page.screenshot(path=str(DOCS / "ui-runs.png"), full_page=True)
    page.goto(f"{base}/runs/{support_run}")
    page.wait_for_selector("body[data-ready]")
    page.locator('[data-task="triage"]').click()
    page.wait_for_selector("#panel h3")
    page.screenshot(path=str(DOCS / "ui-run.png"), full_page=True)
    page.goto(f"{base}/runs/{blog_run}")
    page.wait_for_selector(".request")
    page.get_by_role("button", name="Edit").click()
    page.screenshot(path=str(DOCS / "ui-approval.png"), full_page=True)
    page.close()
    print("screenshots in", DOCS)


if __name__ == "__main__":
    args = sys.argv[1:]
    count = int(args[args.index("--items") + 1]) if "--items" in args else 1000
    main("--screenshots" in args, count)
