"""``ray-orch ui`` as a user starts it: one line with the URL (token included), served
on 127.0.0.1; a paused run (markup in its output) is approved with a click in headless
Chromium and completes, continued by the viewer's process from the stored definition."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from integration.ui_helpers import HTML, browser, pause

from ray_orch.store.definitions import KEY_ENV
from ray_orch.store.factory import open_store

pytestmark = pytest.mark.usefixtures("ray_session")
ROOT = Path(__file__).resolve().parents[2]
WAIT_MS = 300_000  # the viewer's process starts a Ray of its own


def _first_line(process: subprocess.Popen, timeout: float) -> str:
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.append(process.stdout.readline()))
    reader.start()
    reader.join(timeout)
    assert found, "ray-orch ui printed nothing"
    return found[0]


def test_ray_orch_ui_serves_a_paused_run_that_is_approved_with_a_click(stub, tmp_path,
                                                                      monkeypatch):
    # The viewer runs under a private HOME: it verifies the paused run's definition with
    # the key the driver signed it with, shared as a cluster's would be.
    monkeypatch.setenv(KEY_ENV, "the viewer test's shared key")
    stub.add_rule(match="Draft the post", reply=HTML)
    directory = tmp_path / "checkpoints"
    run_id, request_id = pause(stub, str(directory))
    home = tmp_path / "home"  # no standing runtime of anyone else's is joined
    env = {**os.environ, "HOME": str(home),
           "RAY_ORCH_RUNTIME_FILE": str(home / ".ray-orch" / "runtime.json"),
           "RAY_ORCH_AUTO_RUNTIME": "0"}  # a private Ray that ends with the viewer
    env.pop("RAY_ADDRESS", None)
    server = subprocess.Popen([sys.executable, "-m", "ray_orch.cli", "ui", "--dir",
                               str(directory)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT, env=env)
    try:
        url = _first_line(server, 120).strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\?token=[\w-]{20,}", url), url
        with browser() as chromium:
            page = chromium.new_page()
            page.goto(url)
            page.get_by_role("link", name=run_id).click()
            card = page.locator(f'.request[data-request="{request_id}"]')
            assert card.locator(".output-raw").inner_text() == HTML
            card.get_by_role("button", name="Approve").click()
            page.wait_for_selector('body[data-state="completed"]', timeout=WAIT_MS)
            assert page.locator("#injected").count() == 0
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            rest, errors = server.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
            rest, errors = server.communicate()
    assert server.returncode == 0, errors[-3000:]
    assert rest.strip() == ""  # the URL was its one line
    with open_store(str(directory)) as store:
        assert store.get_run(run_id).status == "completed"
        assert store.load_task(run_id, "draft")["metadata"]["approval"]["by"] == "ui"
    assert stub.count("Publish the post") == 1
