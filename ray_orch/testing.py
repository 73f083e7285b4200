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
* a request log (``requests``) without the Authorization header.

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
import inspect
import json
import math
import random
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["FAULT_KINDS", "StubLLMServer", "StubRequest", "StubRule"]

#: Fault names accepted by ``add_rule(fault=...)`` and ``set_faults(kinds=...)``.
FAULT_KINDS = ("429", "500", "503", "401", "timeout", "malformed", "invalid_json")

_HIDDEN_HEADERS = {"authorization", "proxy-authorization", "api-key", "x-api-key", "cookie"}
_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
    504: ("server_error", "timeout"),
}
_MAX_DEPTH = 32
_SOFT_DEPTH = 8


@dataclass(kw_only=True)
class StubRequest:
    """One chat-completion request as the stub saw and answered it.

    Attributes:
        index: arrival order, from 0 (``clear()`` does not reset it).
        t_start: ``time.time()`` when the request arrived.
        t_end: ``time.time()`` when the answer was ready (None while in flight).
        model: the model name in the body (litellm strips the ``openai/`` prefix).
        messages: the chat messages as sent.
        prompt: the text of every message, joined with newlines (what rules match).
        response_format: the ``response_format`` sent, or None.
        stream: whether the client asked for ``stream: true``.
        status: the HTTP status sent; None if no answer was sent (client gone, stopped).
        fault: the fault injected (a ``FAULT_KINDS`` name or ``"rpm_limit"``), or None.
        reply: the message content sent, or None when no completion was sent.
        headers: the request headers, without Authorization or other credentials.
        body: the whole JSON body (other options: temperature, tools, ...).
        error: why a reply callable or handler failed (the stub then answers 500).
    """

    index: int
    t_start: float
    t_end: float | None = None
    model: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    prompt: str = ""
    response_format: dict[str, Any] | None = None
    stream: bool = False
    status: int | None = None
    fault: str | None = None
    reply: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict, repr=False)
    error: str | None = None

    @property
    def schema(self) -> dict[str, Any] | None:
        """The JSON schema of a ``json_schema`` response format, else None."""
        rf = self.response_format or {}
        if rf.get("type") == "json_schema":
            schema = (rf.get("json_schema") or {}).get("schema")
            return schema if isinstance(schema, dict) else None
        return None

    @property
    def wants_json(self) -> bool:
        """True when the response format asks for JSON (``json_schema``/``json_object``)."""
        return (self.response_format or {}).get("type") in ("json_schema", "json_object")

    @property
    def duration(self) -> float | None:
        """Seconds between arrival and answer, or None while in flight."""
        return None if self.t_end is None else self.t_end - self.t_start


_Match = str | re.Pattern[str] | Callable[[StubRequest], bool] | None
_Reply = str | dict[str, Any] | list[Any] | Callable[[StubRequest], Any]


@dataclass(kw_only=True)
class StubRule:
    """A scripted answer for the requests it matches (made by ``add_rule``).

    Attributes:
        match: substring or regex searched in the prompt, a predicate on the
            ``StubRequest``, or None for every request.
        reply: what to answer (None: the server's default reply).
        latency: seconds before answering (None: the server's latency and jitter).
        fault: a ``FAULT_KINDS`` name to inject instead of a normal answer, or None.
        times: apply only to the first ``times`` matches (None: always).
        hits: how many requests this rule has matched so far (faulted ones included).
        served: how many replies it has sent (a list reply advances with this).
    """

    match: _Match = None
    reply: _Reply | None = None
    latency: float | None = None
    fault: str | None = None
    times: int | None = None
    hits: int = 0
    served: int = 0

    def matches(self, request: StubRequest) -> bool:
        """Whether this rule applies to ``request`` (ignores ``times``)."""
        return _matches(self.match, request)

    @property
    def exhausted(self) -> bool:
        """True once the rule has been used ``times`` times."""
        return self.times is not None and self.hits >= self.times


def _matches(match: _Match, request: StubRequest) -> bool:
    if match is None:
        return True
    if isinstance(match, str):
        return match in request.prompt
    if isinstance(match, re.Pattern):
        return match.search(request.prompt) is not None
    if callable(match):
        return bool(match(request))
    _check_match(match)
    return False


def _check_match(match: Any) -> None:
    if match is None or isinstance(match, (str, re.Pattern)) or callable(match):
        return
    raise TypeError(f"match must be a str, a compiled regex or a callable, not {type(match).__name__}")


def _check_fault(fault: str | int | None) -> str | None:
    if fault is None:
        return None
    name = str(fault)
    if name not in FAULT_KINDS:
        raise ValueError(f"fault {fault!r} is not one of {', '.join(FAULT_KINDS)}")
    return name


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

    def __init__(self, reply: _Reply = "ok", *, latency: float = 0.0, jitter: float = 0.0,
                 handler: Callable[[StubRequest], Any] | None = None,
                 model_name: str = "stub", port: int = 0, host: str = "127.0.0.1",
                 retry_after: float = 1.0, hang_seconds: float = 30.0,
                 rpm_limit: int | None = None, rpm_window: float = 60.0,
                 require_api_key: bool = False, api_key: str = "sk-stub-not-a-real-key") -> None:
        if latency < 0 or jitter < 0:
            raise ValueError(f"latency and jitter must be >= 0, got {latency} and {jitter}")
        self.reply: _Reply = reply
        self.latency = latency
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

    def add_rule(self, match: _Match = None, reply: _Reply | None = None, *,
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
        _check_match(match)
        rule = StubRule(match=match, reply=reply, latency=latency, fault=_check_fault(fault),
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
        names = tuple(_check_fault(k) or "" for k in kinds)
        if rate > 0 and not names:
            raise ValueError("kinds is empty; give at least one of " + ", ".join(FAULT_KINDS))
        with self._lock:
            self._plan_rate, self._plan_kinds = rate, names
            self._plan_rng = random.Random(seed)

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

    def requests_matching(self, match: _Match) -> list[StubRequest]:
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
        _check_match(match)
        return [r for r in self.requests if _matches(match, r)]

    def count(self, match: _Match = None) -> int:
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
            return _error(400, "the request body is not valid JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "the body must be a JSON object with a 'messages' list")
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
                messages=messages, prompt=_prompt_text(messages),
                response_format=rf if isinstance(rf, dict) else None,
                stream=bool(body.get("stream")), headers=headers,
                body={k: v for k, v in body.items() if k.lower() not in ("api_key", "apikey")})
            self._next_index += 1
            self._log.append(record)
        return record

    async def _answer(self, record: StubRequest, request: web.Request) -> web.StreamResponse:
        if self.require_api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            record.fault = "401"
            return _error(401, "Incorrect API key provided to the stub")
        limited = self._rpm_retry_after()
        if limited is not None:
            record.fault = "rpm_limit"
            return _error(429, f"Rate limit reached: {self.rpm_limit} requests per "
                          f"{self.rpm_window:g} s", retry_after=limited)
        rule = self._pick(record)
        fault = rule.fault if rule is not None and rule.fault else self._planned_fault()
        record.fault = fault
        if fault == "timeout":
            await asyncio.sleep(self.hang_seconds)
            return _error(504, f"the stub hung for {self.hang_seconds:g} s (fault 'timeout')")
        latency = rule.latency if rule is not None and rule.latency is not None else (
            self.latency + (self._jitter_rng.uniform(0, self.jitter) if self.jitter else 0.0))
        if latency > 0:
            await asyncio.sleep(latency)
        if fault in ("429", "500", "503", "401"):
            # litellm maps a 401 to AuthenticationError only with OpenAI's wording.
            text = ("Incorrect API key provided (stub fault 401)" if fault == "401"
                    else f"stub fault {fault}")
            return _error(int(fault), text,
                          retry_after=self.retry_after if fault == "429" else None)
        reply, nth = self._reply_for(rule)
        try:
            value = await _resolve(reply, nth, record)
        except Exception as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            return _error(500, f"the stub's reply callable raised {record.error}")
        if isinstance(value, web.StreamResponse):
            return value
        if fault == "malformed":
            return web.Response(status=200, text="<html>malformed: not an OpenAI answer",
                                content_type="application/json")
        content = _content(value, record)
        if fault == "invalid_json":
            content = "Sure! Here it is: {not valid json"
        record.reply = content
        if record.stream:
            return await _stream(request, record, content)
        return web.json_response(_completion(record, content))

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


# -- helpers -----------------------------------------------------------------------


def _prompt_text(messages: list[Any]) -> str:
    parts: list[str] = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):  # multimodal parts
            parts.extend(p.get("text", "") for p in content
                         if isinstance(p, dict) and isinstance(p.get("text"), str))
    return "\n".join(parts)


async def _resolve(reply: Any, nth: int, record: StubRequest) -> Any:
    if isinstance(reply, list):
        if not reply:
            raise ValueError("a list reply must not be empty")
        reply = reply[min(nth, len(reply) - 1)]
    if callable(reply):
        reply = reply(record)
        if inspect.isawaitable(reply):
            reply = await reply
    return reply


def _content(value: Any, record: StubRequest) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    text = "" if value is None else str(value)
    if not record.wants_json:
        return text
    try:
        if isinstance(json.loads(text), (dict, list)):
            return text
    except ValueError:
        pass
    schema = record.schema
    if schema is None:
        return json.dumps({"text": text})
    instance = _synthesize(schema)
    slot = _single_string_slot(schema)
    if slot is not None and isinstance(instance, dict):
        instance[slot] = text
    return json.dumps(instance)


def _deref(schema: Any, root: dict[str, Any]) -> Any:
    seen = 0
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < _MAX_DEPTH:
        node: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if part else node
        schema, seen = node, seen + 1
    return schema


def _single_string_slot(schema: dict[str, Any]) -> str | None:
    node = _deref(schema, schema)
    props = node.get("properties") if isinstance(node, dict) else None
    if not isinstance(props, dict):
        return None
    slots = [name for name in node.get("required", [])
             if _is_string(_deref(props.get(name, {}), schema), schema)]
    return slots[0] if len(slots) == 1 else None


def _is_string(node: Any, root: dict[str, Any]) -> bool:
    if not isinstance(node, dict):
        return False
    branches = node.get("anyOf") or node.get("oneOf")
    if branches:  # Optional[str] is a string slot too
        return any(_is_string(_deref(b, root), root) for b in branches)
    if node.get("type") == "string":
        return True
    values = node.get("enum") or ([node["const"]] if "const" in node else [])
    return bool(values) and all(isinstance(v, str) for v in values)


def _synthesize(schema: dict[str, Any], root: dict[str, Any] | None = None,
               depth: int = 0) -> Any:
    """A valid instance of a JSON schema (first enum value, required properties only).

    Args:
        schema: the (sub)schema.
        root: the document ``$ref`` points into (default: ``schema``).
        depth: recursion depth; recursive schemas end through empty arrays or null
            branches past a fixed depth.

    Returns:
        A JSON-compatible value.

    Example:
        >>> _synthesize({"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}})
        {'n': 0}
    """
    root = schema if root is None else root
    node = _deref(schema, root)
    if not isinstance(node, dict):
        return "stub"
    if "const" in node:
        return node["const"]
    if node.get("enum"):
        return node["enum"][0]
    for key in ("anyOf", "oneOf"):
        if node.get(key):
            branches = node[key]
            if depth >= _SOFT_DEPTH and {"type": "null"} in branches:
                return None  # ends an Optional[Self] recursion
            return _synthesize(branches[0], root, depth + 1)
    if node.get("allOf"):
        parts = [_synthesize(s, root, depth + 1) for s in node["allOf"]]
        if all(isinstance(p, dict) for p in parts):
            return {k: v for p in parts for k, v in p.items()}
        return parts[0]
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in node else "array" if "items" in node else "string"
    if kind == "object":
        if depth >= _MAX_DEPTH:
            return {}
        props = node.get("properties") or {}
        return {name: _synthesize(props.get(name, {}), root, depth + 1)
                for name in node.get("required", [])}
    if kind == "array":
        prefix = node.get("prefixItems") or []
        items = [_synthesize(s, root, depth + 1) for s in prefix]
        # Deep down, arrays stay empty where allowed: that ends list[Self] recursion.
        want = max(node.get("minItems", 1 if depth < _SOFT_DEPTH else 0), len(items))
        if "maxItems" in node:
            want = min(want, node["maxItems"])
        extra = node.get("items")
        while len(items) < want and isinstance(extra, dict):
            items.append(_synthesize(extra, root, depth + 1))
        return items[:want]
    if kind in ("integer", "number"):
        return _number(node, kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(node)


def _number(node: dict[str, Any], integer: bool) -> int | float:
    value = 0.0
    if "minimum" in node:
        value = max(value, float(node["minimum"]))
    if "exclusiveMinimum" in node:
        value = max(value, float(node["exclusiveMinimum"]) + (1 if integer else 1e-6))
    if "maximum" in node:
        value = min(value, float(node["maximum"]))
    if "exclusiveMaximum" in node:
        value = min(value, float(node["exclusiveMaximum"]) - (1 if integer else 1e-6))
    return math.ceil(value) if integer else value


_FORMATS = {"date-time": "1970-01-01T00:00:00Z", "date": "1970-01-01", "time": "00:00:00",
            "email": "stub@example.com", "uri": "https://example.com/stub",
            "uuid": "00000000-0000-0000-0000-000000000000"}


def _string(node: dict[str, Any]) -> str:
    text = _FORMATS.get(node.get("format", ""), "stub")
    text = text.ljust(int(node.get("minLength", 0)), "x")
    return text[: node["maxLength"]] if "maxLength" in node else text


def _error(status: int, message: str, *, retry_after: float | None = None) -> web.Response:
    kind, code = _ERRORS.get(status, ("server_error", None))
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}" if retry_after >= 1 else f"{retry_after:.3f}"
        headers["retry-after-ms"] = str(int(retry_after * 1000))
    return web.json_response({"error": {"message": message, "type": kind, "param": None,
                                        "code": code}}, status=status, headers=headers)


def _usage(record: StubRequest, content: str) -> dict[str, int]:
    prompt, completion = len(record.prompt.split()), len(content.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _completion(record: StubRequest, content: str) -> dict[str, Any]:
    return {"id": f"chatcmpl-stub-{record.index}", "object": "chat.completion",
            "created": int(record.t_start), "model": record.model or "stub",
            "system_fingerprint": "stub",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content}}],
            "usage": _usage(record, content)}


async def _stream(request: web.Request, record: StubRequest, content: str) -> web.StreamResponse:
    head = {"id": f"chatcmpl-stub-{record.index}", "object": "chat.completion.chunk",
            "created": int(record.t_start), "model": record.model or "stub"}
    chunks: list[dict[str, Any]] = [
        {**head, "choices": [{"index": 0, "finish_reason": None,
                              "delta": {"role": "assistant", "content": content}}]},
        {**head, "choices": [{"index": 0, "finish_reason": "stop", "delta": {}}]}]
    if (record.body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**head, "choices": [], "usage": _usage(record, content)})
    response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream",
                                                       "Cache-Control": "no-cache"})
    record.status = 200
    await response.prepare(request)
    payload = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    await response.write(payload.encode())
    await response.write_eof()
    return response
