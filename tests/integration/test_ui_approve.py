"""The run viewer in a real browser, over an SQLite and a PostgreSQL run store: a paused
run approved with a click completes, its nodes turning from running to completed live;
markup in an output stays text."""

from __future__ import annotations

import pytest
from integration.ui_helpers import HTML, browser, pause, viewer

from ray_orch.store.factory import open_store

pytestmark = pytest.mark.usefixtures("ray_session")
WAIT_MS = 240_000  # Ray under load on a shared 2-core machine


def test_a_paused_run_is_approved_with_a_click_and_completes(stub, store_spec):
    stub.add_rule(match="Draft the post", reply=HTML)
    stub.add_rule(match="Publish the post", reply="Published", latency=4.0)
    run_id, request_id = pause(stub, store_spec)
    with viewer(store_spec) as server, browser() as chromium:
        page = chromium.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(server.url)
        row = page.locator(f'tr[data-run="{run_id}"]')
        row.wait_for()
        assert row.get_attribute("data-state") == "paused"
        assert "1 waiting" in row.inner_text()
        row.get_by_role("link", name=run_id).click()
        page.wait_for_selector('body[data-state="paused"]')
        card = page.locator(f'.request[data-request="{request_id}"]')
        # The markup the model answered is shown as text, never parsed.
        assert card.locator(".output-raw").inner_text() == HTML
        assert page.locator("#injected").count() == 0 and page.locator("img").count() == 0
        node = page.locator('[data-task="draft"]')
        assert node.get_attribute("data-status") == "paused"
        assert page.locator('[data-task="research"]').get_attribute("data-status") == "completed"
        card.get_by_role("button", name="Approve").click()
        publish = page.locator('[data-task="publish"]')
        publish.and_(page.locator('[data-status="running"]')).wait_for(timeout=WAIT_MS)
        page.wait_for_selector('body[data-state="completed"]', timeout=WAIT_MS)
        assert publish.get_attribute("data-status") == "completed"
        assert node.get_attribute("data-status") == "completed"
        # The panel shows the approved output, as text too.
        node.click()
        page.locator("#panel .output-raw").first.wait_for()
        assert page.locator("#panel .output-raw").first.inner_text() == HTML
        assert page.locator("#injected").count() == 0
        assert page.title() != "owned" and dialogs == []
    store = open_store(store_spec)
    record = store.get_run(run_id)
    assert record is not None and record.status == "completed"
    assert list(store.load_graph(run_id)["tasks"]) == ["research", "draft", "publish"]
    store.close()
    assert stub.count("Draft the post") == 1 and stub.count("Publish the post") == 1
