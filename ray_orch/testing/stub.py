"""A stub OpenAI-compatible chat server on 127.0.0.1, for tests and benchmarks.

``StubLLMServer`` answers ``POST /v1/chat/completions`` and ``GET /v1/models`` over real
HTTP, so code under test goes through litellm exactly as it would against a provider.
It runs an ``aiohttp`` server on its own asyncio loop in a background thread: thousands
of concurrent requests cost no thread each, and latency is an ``asyncio.sleep``.

What it can script:

* replies: a default ``reply`` and ordered rules (``add_rule``) matched against the
  prompt; a reply is a string, a dict (sent as JSON), a list (successive replies) or a
  callable; ``handler=`` takes over completely;
* structured output: with a ``json_schema`` / ``json_object`` ``response_format`` the
  content is always valid JSON (see ``StubLLMServer`` for how a string reply is fitted);
* latency (global, per rule, jitter), faults per rule or as a seeded random plan
  (``set_faults``), and a requests-per-minute limit (``rpm_limit``);
* tool calls: a reply ``{"tool_calls": [{"name": ..., "arguments": {...}}, ...]}`` (or
  ``StubLLMServer.tool_call(name, args)``, ``StubLLMServer.tool_calls(...)`` for several
  parallel calls in one turn) is sent as an assistant message with ``tool_calls``;
  a callable reply can look at ``StubRequest.tool_results`` (the ``tool`` messages sent
  back) to answer once the results are in, or keep calling for an endless loop;
* a request log (``requests``) without the Authorization header; tool messages are in
  each record's ``messages`` (and ``tool_results``), the tools offered in ``tools``.

Tool-calling example (the model calls ``lookup_order``, then answers with its result)::

    def script(request):
        if not request.tool_results:
            return StubLLMServer.tool_call("lookup_order", {"customer": "alice"})
        return f"Your order: {request.tool_results[-1]['content']}"

    stub = StubLLMServer(reply=script)

Example:
    >>> import re
    >>> from ray_orch.testing import StubLLMServer
    >>> with StubLLMServer(reply="ok", latency=0.05) as stub:
    ...     _ = stub.add_rule(match="classify", reply="billing")
    ...     _ = stub.add_rule(match=re.compile(r"flaky"), fault="429", times=2)
    ...     # Agent(role="Support", goal="Help", llm=stub.llm) ...
    ...     stub.base_url.startswith("http://127.0.0.1:")
    True
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from ray_orch.testing.stub_http import (
    completion_body,
    error_response,
    prompt_text,
    stream_response,
    stream_tool_calls,
    tool_calls_body,
)
from ray_orch.testing.stub_rules import (
    FAULT_KINDS,
    Match,
    Reply,
    StubRequest,
    StubRule,
    check_fault,
    check_match,
    match_request,
    resolve_reply,
)
from ray_orch.testing.stub_schema import reply_content

__all__ = ["FAULT_KINDS", "StubLLMServer", "StubRequest", "StubRule"]

_HIDDEN_HEADERS = {"authorization", "proxy-authorization", "api-key", "x-api-key", "cookie"}


class StubLLMServer:
    """An OpenAI-compatible chat server on 127.0.0.1 with scripted replies and faults.

    How a reply becomes the message content: a dict is sent as JSON text; a list gives
    its i-th item to the i-th reply it sends (the last item repeats; faulted requests do
    not count); a callable gets the ``StubRequest`` and returns a str or dict (it may be
    async).

    When the request asks for JSON (``response_format`` ``json_schema`` or
    ``json_object``) the content is always valid JSON. A string that parses as a JSON
    object or array is sent as is. If the schema has exactly one required string
    property (the decision shape ``{"decision": {"enum": [...]}}``, a plain
    ``{"answer": "string"}``, an optional string, an enum behind ``$ref``), the string
    fills it verbatim, even when it is not in the enum, and the other required
    properties are synthesised. Otherwise an instance is synthesised from the schema:
    required properties only, strings ``"stub"`` (or a value of their ``format``), 0 and
    0.0 (within bounds), true, the first enum value, one array item, ``$ref`` and
    ``anyOf`` resolved (first branch), recursion ended by empty arrays deep down.
    With ``json_object`` and no schema, a plain string is sent as ``{"text": ...}``.

    Args:
        reply: the default reply, for requests no rule answers.
        latency: seconds to wait before each answer (an ``asyncio.sleep``).
        jitter: up to this many seconds are added at random to ``latency``.
        handler: replaces the default reply: gets the ``StubRequest`` and returns a
            reply (str or dict) or an ``aiohttp.web.Response`` for full control; may be
            async. Rules, faults and latency still apply.
        model_name: the model id served; ``model`` is ``"openai/<model_name>"``.
        port: the port to bind (0: a free one).
        host: the address to bind; keep the default, the stub is for local use only.
        retry_after: seconds in the ``Retry-After`` header of injected 429s.
        hang_seconds: how long a ``"timeout"`` fault holds the request (then 504).
        rpm_limit: requests per minute accepted over a sliding window; beyond it the
            stub answers 429 with ``Retry-After`` (None: no limit).
        rpm_window: the window of ``rpm_limit`` in seconds (shorten it in tests).
        require_api_key: answer 401 unless ``Authorization: Bearer <api_key>`` is sent.
        api_key: the fake key clients should send.

    Raises:
        ValueError: a negative latency, or an unknown fault name.

    Example:
        >>> with StubLLMServer(reply="hello") as stub:
        ...     # await litellm.acompletion(model=stub.model, api_base=stub.base_url,
        ...     #     api_key=stub.api_key, messages=[{"role": "user", "content": "hi"}])
        ...     stub.llm["model"]
        'openai/stub'
    """

    def __init__(self, reply: Reply = "ok", *, latency: float = 0.0, jitter: float = 0.0,
                 handler: Callable[[StubRequest], Any] | None = None,
                 model_name: str = "stub", port: int = 0, host: str = "127.0.0.1",
                 retry_after: float = 1.0, hang_seconds: float = 30.0,
                 rpm_limit: int | None = None, rpm_window: float = 60.0,
                 require_api_key: bool = False, api_key: str = "sk-stub-not-a-real-key") -> None:
        if latency < 0 or jitter < 0:
            raise ValueError(f"latency and jitter must be >= 0, got {latency} and {jitter}")
        self.reply: Reply = reply
        self.latency = latency
        # A streamed answer goes out a word a piece, this many seconds apart.
        self.stream_interval = 0.0
        self.jitter = jitter
        self.handler = handler
        self.model_name = model_name
        self.retry_after = retry_after
        self.hang_seconds = hang_seconds
        self.rpm_limit = rpm_limit
        self.rpm_window = rpm_window
        self.require_api_key = require_api_key
        self.api_key = api_key
        self.host = host
        self._want_port = port
        self._port: int | None = None
        self._lock = threading.Lock()
        self._rules: list[StubRule] = []
        self._log: list[StubRequest] = []
        self._next_index = 0
        self._default_served = 0
        self._accepted: deque[float] = deque()
        self._plan_rate = 0.0
        self._plan_kinds: tuple[str, ...] = ()
        self._plan_rng = random.Random()
        self._jitter_rng = random.Random()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._startup_error: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> StubLLMServer:
        """Bind the port and start serving in a background thread.

        Returns:
            The server itself (so ``stub = StubLLMServer().start()`` works).

        Raises:
            RuntimeError: the server is already running.
            OSError: the port could not be bound.

        Example:
            >>> stub = StubLLMServer().start()
            >>> stub.stop()
        """
        if self._thread is not None:
            raise RuntimeError("StubLLMServer is already running; call stop() first")
        ready = threading.Event()
        self._startup_error = None
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                        name="StubLLMServer")
        self._thread.start()
        ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise self._startup_error
        return self

    def stop(self) -> None:
        """Stop serving: in-flight requests are cancelled, the thread is joined.

        Calling it on a stopped server does nothing. The log and rules are kept.

        Example:
            >>> stub = StubLLMServer().start()
            >>> stub.stop(); stub.stop()
        """
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop may already be closed
            loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = None
        self._loop = None
        self._port = None

    def __enter__(self) -> StubLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self._port else "stopped"
        return f"<StubLLMServer {where} rules={len(self._rules)} requests={len(self._log)}>"

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        runner: web.AppRunner | None = None
        try:
            runner, self._port = loop.run_until_complete(self._serve())
            self._loop = loop
        except BaseException as exc:
            self._startup_error = exc
        ready.set()
        try:
            if runner is not None:
                loop.run_forever()
                loop.run_until_complete(self._shutdown(runner))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    async def _serve(self) -> tuple[web.AppRunner, int]:
        app = web.Application(client_max_size=64 * 2**20)
        for prefix in ("/v1", ""):
            app.router.add_post(f"{prefix}/chat/completions", self._chat)
            app.router.add_get(f"{prefix}/models", self._models)
        # handler_cancellation: a client that gave up (timeout) frees its handler.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                               shutdown_timeout=0.1)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._want_port))
            # A small backlog resets bursts of thousands of connections.
            await web.SockSite(runner, sock, backlog=4096).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        return runner, sock.getsockname()[1]

    async def _shutdown(self, runner: web.AppRunner) -> None:
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()

    # -- addresses -------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port. Raises RuntimeError when the server is not running."""
        if self._port is None:
            raise RuntimeError("StubLLMServer is not running; use it as a context manager "
                               "or call start()")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: litellm's ``api_base``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def model(self) -> str:
        """The litellm model string, ``"openai/<model_name>"``."""
        return f"openai/{self.model_name}"

    @property
    def llm(self) -> dict[str, Any]:
        """``{"model", "base_url", "api_key"}``, for ``Agent(llm=stub.llm)``."""
        return {"model": self.model, "base_url": self.base_url, "api_key": self.api_key}

    # -- scripting -------------------------------------------------------------------

    def add_rule(self, match: Match = None, reply: Reply | None = None, *,
                 latency: float | None = None, fault: str | int | None = None,
                 times: int | None = None) -> StubRule:
        """Add a rule after the existing ones; the first matching rule answers.

        Args:
            match: a substring or compiled regex searched in the prompt (all message
                contents joined), a callable ``(StubRequest) -> bool``, or None (all).
            reply: str, dict (sent as JSON), list (successive replies, the last
                repeats), or callable ``(StubRequest) -> str | dict``; None uses the
                server's default reply.
            latency: seconds before answering, instead of the server's latency.
            fault: inject one of ``FAULT_KINDS`` instead of answering normally.
            times: apply to the first ``times`` matches only.

        Returns:
            The rule; its ``hits`` counts the requests it answered.

        Raises:
            ValueError: an unknown fault, or ``times``/``latency`` below 0.
            TypeError: ``match`` has an unsupported type.

        Example:
            >>> stub = StubLLMServer()
            >>> stub.add_rule(match="route", reply=["billing", "technical"]).hits
            0
        """
        if times is not None and times < 0:
            raise ValueError(f"times must be >= 0, got {times}")
        if latency is not None and latency < 0:
            raise ValueError(f"latency must be >= 0, got {latency}")
        check_match(match)
        rule = StubRule(match=match, reply=reply, latency=latency, fault=check_fault(fault),
                        times=times)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        """Remove every rule (the default reply, faults plan and log stay).

        Example:
            >>> stub = StubLLMServer(); _ = stub.add_rule(reply="x"); stub.clear_rules()
        """
        with self._lock:
            self._rules.clear()

    def set_faults(self, rate: float, kinds: Sequence[str | int] = ("429", "500", "503"), *,
                   seed: int | None = None) -> None:
        """Inject random faults into requests that no faulting rule answers.

        One draw per request in arrival order, so a seed gives the same faults to the
        same request indexes on every run. ``set_faults(0)`` turns the plan off.

        Args:
            rate: probability of a fault per request, in [0, 1].
            kinds: faults to pick from, uniformly (``FAULT_KINDS`` names).
            seed: seed of the plan's own random generator.

        Raises:
            ValueError: ``rate`` outside [0, 1], no kinds, or an unknown kind.

        Example:
            >>> stub = StubLLMServer(); stub.set_faults(0.2, kinds=["429", "500"], seed=1)
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be within [0, 1], got {rate}")
        names = tuple(check_fault(k) or "" for k in kinds)
        if rate > 0 and not names:
            raise ValueError("kinds is empty; give at least one of " + ", ".join(FAULT_KINDS))
        with self._lock:
            self._plan_rate, self._plan_kinds = rate, names
            self._plan_rng = random.Random(seed)

    # -- tool calls ------------------------------------------------------------------

    @staticmethod
    def tool_call(name: str, arguments: dict[str, Any] | None = None, *,
                  id: str | None = None) -> dict[str, Any]:
        """A reply that asks for one tool call.

        Example:
            >>> StubLLMServer.tool_call("lookup_order", {"customer": "alice"})["tool_calls"][0]["name"]
            'lookup_order'
        """
        call: dict[str, Any] = {"name": name, "arguments": dict(arguments or {})}
        if id is not None:
            call["id"] = id
        return {"tool_calls": [call]}

    @staticmethod
    def tool_calls(*calls: tuple[str, dict[str, Any]] | dict[str, Any]) -> dict[str, Any]:
        """A reply that asks for several tool calls at once (run in parallel).

        Example:
            >>> len(StubLLMServer.tool_calls(("a", {}), ("b", {"x": 1}))["tool_calls"])
            2
        """
        items = [c if isinstance(c, dict) else {"name": c[0], "arguments": dict(c[1])}
                 for c in calls]
        return {"tool_calls": items}

    # -- the log ---------------------------------------------------------------------

    @property
    def requests(self) -> list[StubRequest]:
        """A snapshot of the request log, in arrival order (in-flight ones included)."""
        with self._lock:
            return list(self._log)

    def clear(self) -> None:
        """Empty the request log (and reset the ``rpm_limit`` window).

        Example:
            >>> StubLLMServer().clear()
        """
        with self._lock:
            self._log.clear()
            self._accepted.clear()

    def requests_matching(self, match: Match) -> list[StubRequest]:
        """The logged requests ``match`` selects (same forms as ``add_rule``).

        Args:
            match: substring, compiled regex, callable ``(StubRequest) -> bool``, or None.

        Returns:
            The matching records, in arrival order.

        Raises:
            TypeError: ``match`` has an unsupported type.

        Example:
            >>> StubLLMServer().requests_matching("billing")
            []
        """
        check_match(match)
        return [r for r in self.requests if match_request(match, r)]

    def count(self, match: Match = None) -> int:
        """How many logged requests ``match`` selects (all of them when None).

        Example:
            >>> StubLLMServer().count()
            0
        """
        return len(self.requests_matching(match))

    # -- serving ---------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.model_name, "object": "model", "created": 0, "owned_by": "ray-orch"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None:
            # Without NODELAY a keep-alive client can wait ~40 ms per request (Nagle).
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            body = await request.json()
        except ValueError:
            return error_response(400, "the request body is not valid JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return error_response(400, "the body must be a JSON object with a 'messages' list")
        record = self._record(body, request)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            response = await self._answer(record, request)
            record.status = response.status
            return response
        finally:
            record.t_end = time.time()
            if task is not None:
                self._tasks.discard(task)

    def _record(self, body: dict[str, Any], request: web.Request) -> StubRequest:
        messages = body["messages"]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HIDDEN_HEADERS}
        rf = body.get("response_format")
        with self._lock:
            record = StubRequest(
                index=self._next_index, t_start=time.time(), model=str(body.get("model", "")),
                messages=messages, prompt=prompt_text(messages),
                response_format=rf if isinstance(rf, dict) else None,
                stream=bool(body.get("stream")), headers=headers,
                body={k: v for k, v in body.items() if k.lower() not in ("api_key", "apikey")})
            self._next_index += 1
            self._log.append(record)
        return record

    async def _answer(self, record: StubRequest, request: web.Request) -> web.StreamResponse:
        if self.require_api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            record.fault = "401"
            return error_response(401, "Incorrect API key provided to the stub")
        limited = self._rpm_retry_after()
        if limited is not None:
            record.fault = "rpm_limit"
            return error_response(429, f"Rate limit reached: {self.rpm_limit} requests per "
                          f"{self.rpm_window:g} s", retry_after=limited)
        rule = self._pick(record)
        fault = rule.fault if rule is not None and rule.fault else self._planned_fault()
        record.fault = fault
        if fault == "timeout":
            await asyncio.sleep(self.hang_seconds)
            return error_response(504, f"the stub hung for {self.hang_seconds:g} s (fault 'timeout')")
        latency = rule.latency if rule is not None and rule.latency is not None else (
            self.latency + (self._jitter_rng.uniform(0, self.jitter) if self.jitter else 0.0))
        if latency > 0:
            await asyncio.sleep(latency)
        if fault in ("429", "500", "503", "401"):
            # litellm maps a 401 to AuthenticationError only with OpenAI's wording.
            text = ("Incorrect API key provided (stub fault 401)" if fault == "401"
                    else f"stub fault {fault}")
            return error_response(int(fault), text,
                          retry_after=self.retry_after if fault == "429" else None)
        reply, nth = self._reply_for(rule)
        try:
            value = await resolve_reply(reply, nth, record)
        except Exception as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            return error_response(500, f"the stub's reply callable raised {record.error}")
        if isinstance(value, web.StreamResponse):
            return value
        if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
            body = tool_calls_body(record, value)
            record.reply = json.dumps(body["choices"][0]["message"])
            if record.stream:
                return await stream_tool_calls(request, record, body)
            return web.json_response(body)
        if fault == "malformed":
            return web.Response(status=200, text="<html>malformed: not an OpenAI answer",
                                content_type="application/json")
        content = reply_content(value, record)
        if fault == "invalid_json":
            content = "Sure! Here it is: {not valid json"
        record.reply = content
        if record.stream:
            return await stream_response(request, record, content, self.stream_interval)
        return web.json_response(completion_body(record, content))

    def _pick(self, record: StubRequest) -> StubRule | None:
        with self._lock:
            rules = list(self._rules)
        for rule in rules:
            if rule.exhausted or not rule.matches(record):
                continue
            with self._lock:
                if rule.exhausted:
                    continue
                rule.hits += 1
            return rule
        return None

    def _reply_for(self, rule: StubRule | None) -> tuple[Any, int]:
        # Counted only for answers actually sent, so a faulted request does not use up
        # an item of a list reply: the retry gets the item the failed call would have.
        with self._lock:
            if rule is not None and rule.reply is not None:
                rule.served += 1
                return rule.reply, rule.served - 1
            self._default_served += 1
            nth = self._default_served - 1
        return (self.handler if self.handler is not None else self.reply), nth

    def _planned_fault(self) -> str | None:
        with self._lock:
            if self._plan_rate <= 0:
                return None
            if self._plan_rng.random() < self._plan_rate:
                return self._plan_rng.choice(self._plan_kinds)
        return None

    def _rpm_retry_after(self) -> float | None:
        if self.rpm_limit is None:
            return None
        now = time.monotonic()
        with self._lock:
            while self._accepted and now - self._accepted[0] >= self.rpm_window:
                self._accepted.popleft()
            if len(self._accepted) >= self.rpm_limit:
                return max(0.001, self._accepted[0] + self.rpm_window - now)
            self._accepted.append(now)
        return None
