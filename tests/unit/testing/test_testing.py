"""StubLLMServer, exercised through litellm over real HTTP (no Ray)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import threading
import time
from datetime import datetime
from enum import Enum
from typing import Any, Literal

import aiohttp
import pytest
from pydantic import BaseModel, Field

from ray_orch.testing import FAULT_KINDS, StubLLMServer, StubRequest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import litellm

litellm.suppress_debug_info = True


async def ask(stub: StubLLMServer, content: str = "hi", **kwargs: Any) -> Any:
    kwargs.setdefault("num_retries", 0)  # else the OpenAI client retries 429/5xx twice
    return await litellm.acompletion(model=stub.model, api_base=stub.base_url,
                                     api_key=stub.api_key,
                                     messages=[{"role": "system", "content": "You help."},
                                               {"role": "user", "content": content}],
                                     **kwargs)


async def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def text(response: Any) -> str:
    return response.choices[0].message.content


# -- lifecycle and addresses ---------------------------------------------------------


def test_start_stop_is_fast_and_leaves_no_thread() -> None:
    before = set(threading.enumerate())
    started = time.perf_counter()
    stub = StubLLMServer().start()
    assert stub.base_url == f"http://127.0.0.1:{stub.port}/v1"
    assert stub.llm == {"model": "openai/stub", "base_url": stub.base_url,
                        "api_key": stub.api_key}
    stub.stop()
    assert time.perf_counter() - started < 0.5
    assert set(threading.enumerate()) == before
    stub.stop()  # idempotent
    with pytest.raises(RuntimeError, match="not running"):
        _ = stub.base_url


def test_explicit_port_and_double_start() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with StubLLMServer(port=port) as stub:
        assert stub.port == port
        with pytest.raises(RuntimeError, match="already running"):
            stub.start()
        with pytest.raises(OSError):
            StubLLMServer(port=port).start()


async def test_stop_cancels_hanging_requests_quickly() -> None:
    stub = StubLLMServer(hang_seconds=30).start()
    stub.add_rule(fault="timeout")
    call = asyncio.create_task(ask(stub, timeout=10))
    await wait_for(lambda: bool(stub.requests))
    started = time.perf_counter()
    await asyncio.to_thread(stub.stop)
    assert time.perf_counter() - started < 0.5
    with pytest.raises(litellm.InternalServerError, match="Connection error"):
        await call  # the connection was closed under it


# -- replies ---------------------------------------------------------------------------


async def test_default_reply_envelope_and_log(stub: StubLLMServer) -> None:
    response = await ask(stub, "hello there world")
    assert text(response) == "ok"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.prompt_tokens == 5  # "You help." + "hello there world"
    assert response.usage.completion_tokens == 1
    assert response.usage.total_tokens == 6
    [record] = stub.requests
    assert record.index == 0 and record.status == 200 and record.fault is None
    assert record.model == "stub" and record.reply == "ok"
    assert record.prompt == "You help.\nhello there world"
    assert record.t_end is not None and record.t_start <= record.t_end
    assert record.response_format is None
    assert all(k.lower() != "authorization" for k in record.headers)
    assert stub.api_key not in repr(record) + json.dumps(record.body)


async def test_raw_envelope_and_models_endpoint(stub: StubLLMServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{stub.base_url}/models") as resp:
            assert (await resp.json())["data"][0]["id"] == "stub"
        body = {"model": "stub", "messages": [{"role": "user", "content": "hi"}]}
        async with session.post(f"{stub.base_url}/chat/completions", json=body) as resp:
            data = await resp.json()
        assert data["object"] == "chat.completion" and data["id"] and data["created"] > 0
        assert data["choices"][0]["message"] == {"role": "assistant", "content": "ok"}
        async with session.post(f"{stub.base_url}/chat/completions", data="{nope") as resp:
            assert resp.status == 400


async def test_rules_substring_regex_callable_first_wins(stub: StubLLMServer) -> None:
    stub.add_rule(match="invoice", reply="billing")
    stub.add_rule(match=re.compile(r"crash(es|ed)"), reply="technical")
    stub.add_rule(match=lambda r: r.body.get("temperature") == 0.5, reply="warm")
    stub.add_rule(match="invoice", reply="never reached")
    assert text(await ask(stub, "my invoice is wrong")) == "billing"
    assert text(await ask(stub, "the app crashed")) == "technical"
    assert text(await ask(stub, "anything", temperature=0.5)) == "warm"
    assert text(await ask(stub, "anything")) == "ok"
    assert stub.count("invoice") == 1 and len(stub.requests_matching(re.compile("crash"))) == 1


async def test_list_sequence_times_dict_and_callable_replies(stub: StubLLMServer) -> None:
    seq = stub.add_rule(match="next", reply=["one", "two"])
    stub.add_rule(match="once", reply="first time", times=1)
    stub.add_rule(match="json", reply={"a": 1})
    stub.add_rule(match="echo", reply=lambda r: r.prompt.upper())

    async def slow_echo(r: StubRequest) -> str:
        return f"#{r.index}"

    stub.add_rule(match="async", reply=slow_echo)
    assert [text(await ask(stub, "next")) for _ in range(3)] == ["one", "two", "two"]
    assert seq.hits == seq.served == 3
    assert [text(await ask(stub, "once")) for _ in range(2)] == ["first time", "ok"]
    assert json.loads(text(await ask(stub, "json"))) == {"a": 1}
    assert text(await ask(stub, "echo")) == "YOU HELP.\nECHO"
    assert text(await ask(stub, "async")) == f"#{stub.requests[-1].index}"


async def test_default_reply_list_and_handler() -> None:
    with StubLLMServer(reply=["a", "b"]) as stub:
        assert [text(await ask(stub)) for _ in range(3)] == ["a", "b", "b"]
    with StubLLMServer(handler=lambda r: f"{len(r.messages)} messages") as stub:
        stub.add_rule(match="rule", reply="from rule")
        assert text(await ask(stub)) == "2 messages"
        assert text(await ask(stub, "rule")) == "from rule"


async def test_faulted_requests_do_not_use_up_list_replies() -> None:
    with StubLLMServer(reply=["a", "b"]) as stub:
        stub.add_rule(fault="500", times=1)
        with pytest.raises(litellm.InternalServerError):
            await ask(stub)
        assert [text(await ask(stub)) for _ in range(2)] == ["a", "b"]


async def test_failing_reply_callable_answers_500(stub: StubLLMServer) -> None:
    stub.add_rule(reply=lambda r: 1 / 0)
    with pytest.raises(litellm.InternalServerError):
        await ask(stub)
    assert stub.requests[0].error == "ZeroDivisionError: division by zero"


def test_invalid_arguments() -> None:
    stub = StubLLMServer()
    with pytest.raises(ValueError, match="fault 'boom'"):
        stub.add_rule(fault="boom")
    with pytest.raises(ValueError, match="rate"):
        stub.set_faults(1.5)
    with pytest.raises(ValueError, match="latency"):
        StubLLMServer(latency=-1)
    with pytest.raises(TypeError, match="match"):
        stub.requests_matching(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="match"):
        stub.add_rule(match=b"bytes")  # type: ignore[arg-type]


# -- structured output ---------------------------------------------------------------


class Decision(BaseModel):
    decision: Literal["technical", "billing"]


class Color(str, Enum):
    RED = "red"
    BLUE = "blue"


class Item(BaseModel):
    name: str
    qty: int
    price: float
    color: Color
    tags: list[str]


class Order(BaseModel):
    items: list[Item]
    rush: bool
    note: str | None
    total: float
    status: Literal["open", "closed"]


async def test_decision_shape_keeps_reply_verbatim(stub: StubLLMServer) -> None:
    stub.add_rule(match="route", reply=["  Billing ", "refund"])
    first = text(await ask(stub, "route", response_format=Decision))
    assert json.loads(first) == {"decision": "  Billing "}  # the client normalises
    assert json.loads(text(await ask(stub, "route", response_format=Decision))) == {
        "decision": "refund"}  # not in the enum: the no-match path
    rf = stub.requests[0].response_format
    assert rf is not None and rf["type"] == "json_schema"
    assert rf["json_schema"]["schema"]["properties"]["decision"]["enum"] == ["technical",
                                                                             "billing"]


async def test_dict_json_schema_and_single_string_slot(stub: StubLLMServer) -> None:
    schema = {"type": "object", "required": ["answer", "confidence"],
              "properties": {"answer": {"type": "string"},
                             "confidence": {"type": "number", "minimum": 0.5}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": True}}
    stub.reply = "Paris"
    assert json.loads(text(await ask(stub, response_format=fmt))) == {
        "answer": "Paris", "confidence": 0.5}


async def test_schema_synthesis_nested_refs_arrays(stub: StubLLMServer) -> None:
    stub.reply = "free text, not JSON"
    order = Order.model_validate_json(text(await ask(stub, response_format=Order)))
    assert order.items[0].color is Color.RED and order.items[0].tags == ["stub"]
    assert order.status == "open" and order.rush is True and order.total == 0.0
    assert "$defs" in (stub.requests[0].schema or {})


class Node(BaseModel):
    name: str = Field(min_length=6)
    weight: int = Field(ge=3, lt=10)
    when: datetime
    children: list[Node]


class Route(BaseModel):
    route: Color  # an Enum: a $ref into $defs


async def test_schema_synthesis_recursion_bounds_and_enum_ref(stub: StubLLMServer) -> None:
    stub.reply = "not json"
    node = Node.model_validate_json(text(await ask(stub, response_format=Node)))
    assert node.weight == 3 and len(node.name) >= 6 and node.children[0].children
    stub.reply = "Purple"  # a $ref'd enum is a string slot too; kept verbatim
    assert json.loads(text(await ask(stub, response_format=Route))) == {"route": "Purple"}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "required": ["a", "b", "c"],
        "properties": {"a": {"const": 7}, "b": {"allOf": [{"type": "boolean"}]},
                       "c": {"type": "array", "prefixItems": [{"type": "number"}],
                             "minItems": 2, "items": {"type": ["null", "integer"]}}}}}}
    assert json.loads(text(await ask(stub, response_format=fmt))) == {
        "a": 7, "b": True, "c": [0.0, 0]}


async def test_json_replies_pass_through(stub: StubLLMServer) -> None:
    stub.add_rule(match="str", reply='{"decision": "technical"}')
    stub.add_rule(match="dict", reply={"decision": "billing"})
    got = [Decision.model_validate_json(text(await ask(stub, m, response_format=Decision)))
           for m in ("str", "dict")]
    assert [d.decision for d in got] == ["technical", "billing"]
    assert json.loads(text(await ask(stub, response_format={"type": "json_object"}))) == {
        "text": "ok"}


# -- latency -------------------------------------------------------------------------


async def test_concurrent_latency_overlaps() -> None:
    with StubLLMServer(latency=0.1) as stub:
        started = time.perf_counter()
        replies = await asyncio.gather(*(ask(stub, f"q{i}") for i in range(200)))
        elapsed = time.perf_counter() - started
    assert {text(r) for r in replies} == {"ok"}
    records = stub.requests
    assert all(r.duration is not None and r.duration >= 0.1 for r in records)
    # Sequentially this takes 20 s. litellm itself costs ~7 ms of CPU per call here, so
    # the wall clock is ~1.5 s idle but 4-5 s on a loaded 2-CPU box: the bound is loose
    # and the overlap seen by the server is the sharp check.
    assert elapsed < 10.0
    events = sorted([(r.t_start, 1) for r in records] + [(r.t_end or 0.0, -1) for r in records])
    in_flight = peak = 0
    for _, step in events:
        in_flight += step
        peak = max(peak, in_flight)
    assert peak >= 50


async def test_rule_latency_and_jitter() -> None:
    with StubLLMServer(latency=0.0, jitter=0.05) as stub:
        stub.add_rule(match="slow", latency=0.3)
        started = time.perf_counter()
        await ask(stub, "slow")
        assert time.perf_counter() - started >= 0.3
        await ask(stub, "fast")
        assert stub.requests[1].duration is not None and stub.requests[1].duration < 0.3


# -- faults ----------------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "error", "status"), [
    ("429", litellm.RateLimitError, 429),
    ("500", litellm.InternalServerError, 500),
    ("503", litellm.ServiceUnavailableError, 503),
    ("401", litellm.AuthenticationError, 401),
    ("malformed", litellm.InternalServerError, 200),  # "Expecting value: line 1 column 1"
])
async def test_http_faults(stub: StubLLMServer, fault: str, error: type[Exception],
                           status: int) -> None:
    stub.add_rule(match="fail", fault=fault, times=1)
    with pytest.raises(error):
        await ask(stub, "fail")
    assert text(await ask(stub, "fail")) == "ok"  # times=1: the next call passes
    first = stub.requests[0]
    assert (first.fault, first.status) == (fault, status)


async def test_429_carries_retry_after() -> None:
    with StubLLMServer(retry_after=2.5) as stub:
        stub.add_rule(fault="429")
        with pytest.raises(litellm.RateLimitError) as info:
            await ask(stub)
    # litellm's exception.response is synthetic; the real headers are kept here.
    assert getattr(info.value, "litellm_response_headers", {})["retry-after"] == "2.5"


async def test_invalid_json_fault(stub: StubLLMServer) -> None:
    stub.add_rule(fault="invalid_json")
    content = text(await ask(stub, response_format=Decision))
    with pytest.raises(ValueError):
        json.loads(content)
    assert stub.requests[0].reply == content


async def test_timeout_fault_times_out_without_blocking_others() -> None:
    with StubLLMServer(hang_seconds=30) as stub:
        stub.add_rule(match="hang", fault="timeout")
        hung = asyncio.create_task(ask(stub, "hang", timeout=1))
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        assert text(await ask(stub, "quick")) == "ok"
        assert time.perf_counter() - started < 0.5
        with pytest.raises(litellm.Timeout):
            await hung
        hang = stub.requests_matching("hang")[0]
        await wait_for(lambda: hang.t_end is not None)  # the stub saw the client leave
        assert hang.fault == "timeout" and hang.status is None and hang.t_end is not None


async def test_seeded_fault_plan_is_deterministic() -> None:
    plans = []
    for _ in range(2):
        with StubLLMServer() as stub:
            stub.set_faults(0.3, kinds=["429", "500"], seed=1)
            for i in range(30):
                with contextlib.suppress(litellm.RateLimitError, litellm.InternalServerError):
                    await ask(stub, f"q{i}")
            plans.append([(r.index, r.fault) for r in stub.requests])
    assert plans[0] == plans[1]
    faults = [f for _, f in plans[0] if f]
    assert 3 <= len(faults) <= 18 and set(faults) <= {"429", "500"}


async def test_rpm_limit_sliding_window() -> None:
    with StubLLMServer(rpm_limit=5, rpm_window=0.5) as stub:
        results = await asyncio.gather(*(ask(stub) for _ in range(8)), return_exceptions=True)
        limited = [r for r in results if isinstance(r, litellm.RateLimitError)]
        assert len(limited) == 3 and stub.count(lambda r: r.fault == "rpm_limit") == 3
        await asyncio.sleep(0.55)
        assert text(await ask(stub)) == "ok"


async def test_require_api_key() -> None:
    with StubLLMServer(require_api_key=True) as stub:
        assert text(await ask(stub)) == "ok"
        with pytest.raises(litellm.AuthenticationError):
            await litellm.acompletion(model=stub.model, api_base=stub.base_url,
                                      api_key="sk-wrong", num_retries=0,
                                      messages=[{"role": "user", "content": "hi"}])
    assert all("sk-wrong" not in json.dumps(r.headers) for r in stub.requests)


async def test_streaming(stub: StubLLMServer) -> None:
    stub.reply = "streamed reply"
    chunks = [c async for c in await ask(stub, stream=True)]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "streamed reply"
    assert stub.requests[0].stream and stub.requests[0].status == 200


def test_log_helpers_and_clear(stub: StubLLMServer) -> None:
    assert stub.count() == 0 and set(FAULT_KINDS) >= {"429", "timeout", "invalid_json"}

    async def two() -> None:
        await ask(stub, "alpha")
        await ask(stub, "beta")

    asyncio.run(two())
    assert stub.count() == 2 and stub.count("alpha") == 1
    assert [r.index for r in stub.requests_matching(None)] == [0, 1]
    stub.clear()
    assert stub.requests == []
