"""The run viewer in a real browser: an edit is checked against the task's schema before
the run goes on; Cancel stops a running run and Resume continues it from its store."""

from __future__ import annotations

import json

import pytest
from integration.ui_helpers import browser, pause, viewer

from ray_orch.store.factory import open_store

pytestmark = pytest.mark.usefixtures("ray_session")
WAIT_MS = 240_000


def test_an_edit_is_checked_against_the_schema_then_continues(stub, tmp_path):
    stub.add_rule(match="Draft the post", reply={"title": "<b>Draft</b>", "words": 3})
    stub.add_rule(match="Publish the post", reply="Published")
    run_id, request_id = pause(stub, str(tmp_path), structured=True)
    with viewer(str(tmp_path)) as server, browser() as chromium:
        page = chromium.new_page()
        page.goto(server.url.replace("/?", f"/runs/{run_id}?"))
        card = page.locator(f'.request[data-request="{request_id}"]')
        card.wait_for()
        card.get_by_role("button", name="Edit").click()
        editor = card.get_by_role("textbox", name="edited value")
        assert json.loads(editor.input_value()) == {"title": "<b>Draft</b>", "words": 3}
        editor.fill('{"title": "No word count"}')
        card.get_by_role("button", name="Save edit").click()
        error = card.locator(".error")
        error.filter(has_text="words").wait_for()
        assert "draft" in error.inner_text() and "Post" in error.inner_text()
        assert page.locator("body").get_attribute("data-state") == "paused"
        assert stub.count("Publish the post") == 0  # nothing went on
        editor.fill('{"title": "Final title", "words": 2}')
        card.get_by_role("button", name="Save edit").click()
        page.wait_for_selector('body[data-state="completed"]', timeout=WAIT_MS)
    with open_store(str(tmp_path)) as store:
        draft = store.load_task(run_id, "draft")
    assert draft is not None and draft["json_dict"] == {"title": "Final title", "words": 2}
    assert draft["metadata"]["approval"]["answer"] == "edit"
    assert draft["metadata"]["approval"]["by"] == "ui"
    [publish] = stub.requests_matching("Publish the post")
    assert "Final title" in publish.prompt


def test_cancel_stops_a_running_run_and_resume_continues_it(stub, tmp_path):
    stub.add_rule(match="Publish the post", reply="slow", latency=120.0, times=1)
    stub.add_rule(match="Publish the post", reply="Published")
    run_id, request_id = pause(stub, str(tmp_path))
    with viewer(str(tmp_path)) as server, browser() as chromium:
        page = chromium.new_page()
        page.goto(server.url.replace("/?", f"/runs/{run_id}?"))
        page.locator(f'.request[data-request="{request_id}"]').get_by_role(
            "button", name="Approve").click()
        page.wait_for_selector('[data-task="publish"][data-status="running"]',
                               timeout=WAIT_MS)
        page.get_by_role("button", name="Cancel").click()
        page.wait_for_selector('body[data-state="cancelled"]', timeout=WAIT_MS)
        with open_store(str(tmp_path)) as store:
            assert store.get_run(run_id).status == "cancelled"
            assert store.load_task(run_id, "publish") is None
            assert store.load_task(run_id, "draft") is not None  # kept
        assert page.locator('[data-task="draft"]').get_attribute("data-status") == "completed"
        page.get_by_role("button", name="Resume").click()
        page.wait_for_selector('body[data-state="completed"]', timeout=WAIT_MS)
    assert stub.count("Draft the post") == 1  # nothing completed ran again
    assert stub.count("Publish the post") == 2  # the cancelled call, then the resumed one
    with open_store(str(tmp_path)) as store:
        assert store.load_task(run_id, "publish")["raw"] == "Published"
