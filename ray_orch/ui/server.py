"""The run viewer's HTTP server (aiohttp): two pages, their static files, a JSON API over a
``RunSource``, and each run's state as server-sent events.

Security: it binds 127.0.0.1 unless told otherwise; every request carries the session's
token (``?token=`` once, then a ``SameSite=Strict``, ``HttpOnly`` cookie); a POST must
come from the page's own origin (``Origin`` checked) as JSON; every response forbids
inline scripts (``Content-Security-Policy``), framing and sniffing. The pages build their
DOM with ``textContent``: what a run holds is shown as text, never markup.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
import threading
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from ray_orch.core.approvals import Approve, Edit, Reject, edit_from_text
from ray_orch.core.errors import RayOrchError
from ray_orch.ui.source import RunSource

__all__ = ["UIServer", "make_app"]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store"}
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
          ".svg": "image/svg+xml"}
_SOURCE: web.AppKey[RunSource] = web.AppKey("source", RunSource)
_TOKEN: web.AppKey[str] = web.AppKey("token", str)
_STATIC: web.AppKey[dict[str, tuple[bytes, str]]] = web.AppKey("static", dict)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _static_files() -> dict[str, tuple[bytes, str]]:
    files = {}
    for item in resources.files("ray_orch.ui").joinpath("static").iterdir():
        suffix = "." + item.name.rpartition(".")[2]
        if item.is_file() and suffix in _TYPES:
            files[item.name] = (item.read_bytes(), _TYPES[suffix])
    return files


def _cookie(request: web.Request) -> str:
    return f"rayorch_ui_{request.url.port or 80}"


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The token (query once, then the cookie), the origin of a POST, and the headers."""
    token = request.app[_TOKEN]
    given = request.query.get("token")
    if given is not None and hmac.compare_digest(given.encode(), token.encode()):
        if request.method == "GET" and not request.path.startswith("/api/"):
            # The token leaves the address bar (and history) once the cookie holds it.
            query = {k: v for k, v in request.query.items() if k != "token"}
            response: web.StreamResponse = web.HTTPSeeOther(request.rel_url.with_query(query))
        else:
            response = await handler(request)
        response.set_cookie(_cookie(request), token, httponly=True, samesite="Strict",
                            path="/")
        response.headers.update(_HEADERS)
        return response
    cookie = request.cookies.get(_cookie(request), "")
    if not hmac.compare_digest(cookie.encode(), token.encode()):
        return _plain(401, "unauthorized: open the URL `ray-orch ui` printed (with its token)")
    if request.method not in ("GET", "HEAD"):
        origin = request.headers.get("Origin")
        if origin != f"{request.scheme}://{request.host}":
            return _plain(403, "forbidden: a request from another origin")
        if request.content_type != "application/json":
            return _plain(415, "a POST sends JSON")
    response = await handler(request)
    response.headers.update(_HEADERS)
    return response


def _plain(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, headers=_HEADERS)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data, default=str),
                        content_type="application/json")


def _error(exc: BaseException, status: int = 400) -> web.Response:
    body: dict[str, Any] = {"error": str(exc), "type": type(exc).__name__}
    for name in ("task", "field", "request_id"):
        if getattr(exc, name, None) is not None:
            body[name] = getattr(exc, name)
    return _json(body, status)


# -- handlers -----------------------------------------------------------------------------


def _page(name: str) -> Handler:
    async def page(request: web.Request) -> web.StreamResponse:
        body, kind = request.app[_STATIC][name]
        return web.Response(body=body, content_type=kind, charset="utf-8")
    return page


async def _static(request: web.Request) -> web.StreamResponse:
    found = request.app[_STATIC].get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    body, kind = found
    return web.Response(body=body, content_type=kind, charset="utf-8")


async def _runs(request: web.Request) -> web.StreamResponse:
    from dataclasses import asdict

    rows = await asyncio.to_thread(request.app[_SOURCE].list_runs)
    state = request.query.get("state")
    return _json([asdict(r) for r in rows if not state or r.state == state])


async def _run(request: web.Request) -> web.StreamResponse:
    snapshot = await asyncio.to_thread(request.app[_SOURCE].run, request.match_info["run"])
    return _json({"error": "no such run"}, 404) if snapshot is None else _json(snapshot)


async def _task(request: web.Request) -> web.StreamResponse:
    found = await asyncio.to_thread(request.app[_SOURCE].task, request.match_info["run"],
                                    request.match_info["task"])
    return _json({"error": "no such task"}, 404) if found is None else _json(found)


async def _events(request: web.Request) -> web.StreamResponse:
    """The run's snapshot each time it changes (at most 4 a second: updates come batched)."""
    source, run_id = request.app[_SOURCE], request.match_info["run"]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store", **_HEADERS})
    await response.prepare(request)
    sent, seen, quiet = "", object(), 0.0
    with contextlib.suppress(ConnectionError, asyncio.CancelledError):
        while True:
            version = source.version(run_id)
            if version is None or version != seen:
                snapshot = await asyncio.to_thread(source.run, run_id)
                text = json.dumps(snapshot, default=str)
                if text != sent:
                    await response.write(f"data: {text}\n\n".encode())
                    sent, quiet = text, 0.0
                seen = version
            if quiet > 15:
                await response.write(b": keep-alive\n\n")
                quiet = 0.0
            step = 0.25 if version is not None else 1.0
            await asyncio.sleep(step)
            quiet += step
    return response


async def _answer(request: web.Request) -> web.StreamResponse:
    try:
        body = await request.json()
    except ValueError:
        return _json({"error": "the body is not JSON"}, 400)
    kind = body.get("answer") if isinstance(body, dict) else None
    if kind == "approve":
        answer: Approve | Edit | Reject = Approve(by="ui")
    elif kind == "edit":
        answer = edit_from_text(str(body.get("value", "")), by="ui")
    elif kind == "reject":
        answer = Reject(str(body.get("reason") or "rejected"), by="ui")
    else:
        return _json({"error": "answer is approve, edit or reject", "field": "answer"}, 400)
    try:
        await asyncio.to_thread(request.app[_SOURCE].answer, request.match_info["run"],
                                request.match_info["request"], answer)
    except RayOrchError as exc:
        return _error(exc)
    return _json({"ok": True})


async def _cancel(request: web.Request) -> web.StreamResponse:
    done = await asyncio.to_thread(request.app[_SOURCE].cancel, request.match_info["run"])
    return _json({"ok": done}, 200 if done else 409)


async def _resume(request: web.Request) -> web.StreamResponse:
    try:
        await asyncio.to_thread(request.app[_SOURCE].resume, request.match_info["run"])
    except RayOrchError as exc:
        return _error(exc)
    return _json({"ok": True})


def make_app(source: RunSource, *, token: str) -> web.Application:
    """The viewer's application over ``source``, guarded by ``token``."""
    app = web.Application(middlewares=[_guard])
    app[_SOURCE], app[_TOKEN], app[_STATIC] = source, token, _static_files()
    app.router.add_get("/", _page("index.html"))
    app.router.add_get("/runs/{run}", _page("run.html"))
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/api/runs", _runs)
    app.router.add_get("/api/runs/{run}", _run)
    app.router.add_get("/api/runs/{run}/tasks/{task}", _task)
    app.router.add_get("/api/runs/{run}/events", _events)
    app.router.add_post("/api/runs/{run}/requests/{request}", _answer)
    app.router.add_post("/api/runs/{run}/cancel", _cancel)
    app.router.add_post("/api/runs/{run}/resume", _resume)
    return app


class UIServer:
    """The viewer served from a thread of its own (``ray-orch ui``, ``ray-orch up``,
    tests).

    Args:
        source: what it shows.
        host: the address to bind (127.0.0.1 unless you mean to share it).
        port: the port (0: any free one).
        token: the session's token (default: a fresh random one).
    """

    def __init__(self, source: RunSource, *, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None) -> None:
        self.source = source
        self.host = host
        self.port = port
        self.token = token or secrets.token_urlsafe(24)
        self.loop = asyncio.new_event_loop()
        self.thread: threading.Thread | None = None
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The URL to open, token included."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    def start(self) -> UIServer:
        """Bind and serve; returns once the port is open."""
        ready = threading.Event()
        failed: list[BaseException] = []

        async def begin() -> None:
            self.runner = web.AppRunner(make_app(self.source, token=self.token),
                                        access_log=None, handler_cancellation=True)
            await self.runner.setup()
            site = web.TCPSite(self.runner, self.host, self.port)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(begin())
            except BaseException as exc:
                failed.append(exc)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, name="ray-orch-ui", daemon=True)
        self.thread.start()
        ready.wait()
        if failed:
            raise failed[0]
        return self

    def stop(self) -> None:
        """Stop serving and close the source."""
        if self.runner is not None and self.thread is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)
        self.source.close()

    def __enter__(self) -> UIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
