"""The run viewer's guard: every request needs the session's token (then its cookie),
a POST must come from the page's own origin as JSON, and every response forbids inline
scripts. The browser is refused without the token."""

from __future__ import annotations

import http.client
import json
import re
from importlib import resources
from urllib.parse import urlsplit

import pytest
from integration.ui_helpers import browser, viewer

from ray_orch.store.factory import open_store


def _request(server, method, path, headers=None, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        connection.close()


@pytest.fixture
def served(tmp_path):
    open_store(str(tmp_path)).begin_run("r1", "demo", "abc")
    with viewer(str(tmp_path)) as server:
        yield server


def test_every_request_needs_the_token(served):
    for path in ("/", "/runs/r1", "/api/runs", "/api/runs/r1", "/static/run.js",
                 "/api/runs/r1/events"):
        status, _, body = _request(served, "GET", path)
        assert status == 401, path
        assert "token" in body
    status, _, _ = _request(served, "GET", "/api/runs?token=not-the-token")
    assert status == 401
    status, _, _ = _request(served, "GET", "/", {"Cookie": f"rayorch_ui_{served.port}=wrong"})
    assert status == 401


def test_the_token_becomes_a_strict_cookie_and_leaves_the_address(served):
    status, headers, _ = _request(served, "GET", f"/?token={served.token}")
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"rayorch_ui_{served.port}={served.token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    status, headers, body = _request(served, "GET", "/api/runs",
                                     {"Cookie": f"rayorch_ui_{served.port}={served.token}"})
    assert status == 200 and json.loads(body)[0]["run_id"] == "r1"
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp and headers["X-Content-Type-Options"] == "nosniff"


def test_a_post_from_another_origin_is_refused(served):
    cookie = {"Cookie": f"rayorch_ui_{served.port}={served.token}"}
    own = f"http://127.0.0.1:{served.port}"
    body = json.dumps({"answer": "approve"})
    path = "/api/runs/r1/requests/q1"
    for headers, expected in (
            ({"Origin": "http://evil.example", "Content-Type": "application/json"}, 403),
            ({"Content-Type": "application/json"}, 403),  # no Origin at all
            ({"Origin": own, "Content-Type": "text/plain"}, 415),  # a simple cross-site form
            ({"Origin": own, "Content-Type": "application/json"}, 400)):  # no such request
        status, _, text = _request(served, "POST", path, {**cookie, **headers}, body)
        assert status == expected, (headers, text)
    assert "no pending request 'q1'" in json.loads(text)["error"]
    status, _, _ = _request(served, "POST", path, {"Origin": own,
                                                   "Content-Type": "application/json"}, body)
    assert status == 401  # the origin alone is not enough


def test_the_pages_hold_no_inline_script():
    static = resources.files("ray_orch.ui").joinpath("static")
    for name in ("index.html", "run.html"):
        html = static.joinpath(name).read_text()
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
        assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts)
        assert not re.search(r"\son[a-z]+\s*=", html), name
    for name in ("common.js", "runs.js", "run.js", "graph.js", "panel.js"):
        code = static.joinpath(name).read_text()
        assert "innerHTML" not in code and "insertAdjacentHTML" not in code, name
        assert "document.write" not in code and "eval(" not in code, name


def test_the_browser_is_refused_without_the_token(served):
    with browser() as chromium:
        page = chromium.new_page()
        split = urlsplit(served.url)
        response = page.goto(f"{split.scheme}://{split.netloc}/")
        assert response.status == 401
        assert page.locator("table").count() == 0
        response = page.goto(served.url)
        assert response.status == 200
        page.locator('tr[data-run="r1"]').wait_for()
