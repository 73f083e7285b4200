"""The two model clients behind ``_llm.acomplete``: the lean HTTP client for
OpenAI-compatible servers and ``litellm.acompletion``. Both are driven against the stub
over real HTTP; whatever the client, a call must send the same request and fail the same
way, because retries, rate limits and fallbacks act on that classification."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from ray_orch.core.errors import LLMError, ModelNotConfiguredError
from ray_orch.model.client import LLMConfig, acomplete, uses_litellm
from ray_orch.testing import StubLLMServer

CLIENTS = ["auto", "litellm"]


class Verdict(BaseModel):
    label: Literal["yes", "no"]
    reasons: list[str]


def config(stub: StubLLMServer, client: str, **options: Any) -> LLMConfig:
    return LLMConfig.from_spec({**stub.llm, "client": client, **options}, timeout=5)


MESSAGES = [{"role": "system", "content": "You judge."}, {"role": "user", "content": "ok?"}]


# -- which client a config takes --------------------------------------------------------


@pytest.mark.parametrize(("spec", "litellm"), [
    ({"model": "openai/m", "base_url": "http://127.0.0.1:1/v1"}, False),
    ({"model": "hosted_vllm/m", "base_url": "http://127.0.0.1:1/v1", "temperature": 0}, False),
    ({"model": "openai/m", "base_url": "http://127.0.0.1:1/v1", "client": "litellm"}, True),
    ({"model": "gpt-4o-mini"}, True),  # no base_url: litellm knows the provider's quirks
    ({"model": "anthropic/claude-3-5-haiku-latest", "base_url": "http://127.0.0.1:1"}, True),
    ({"model": "openai/m", "base_url": "http://127.0.0.1:1/v1", "tools": []}, True),
    ({"model": "openai/m", "base_url": "http://127.0.0.1:1/v1", "stream": True}, True),
    # ray-orch's own limit keys are never sent, so they do not decide the client
    ({"model": "openai/m", "base_url": "http://127.0.0.1:1/v1", "rpm": 60}, False),
])
def test_which_client(spec: dict[str, Any], litellm: bool) -> None:
    assert uses_litellm(LLMConfig.from_spec(spec)) is litellm


def test_unknown_client_is_a_typed_error() -> None:
    with pytest.raises(ModelNotConfiguredError, match=r"'httpx'.*RAY_ORCH_LLM_CLIENT"):
        LLMConfig.from_spec({"model": "openai/m", "client": "httpx"})


def test_client_default_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ORCH_LLM_CLIENT", "litellm")
    assert LLMConfig.from_spec("openai/m", base_url="http://127.0.0.1:1/v1").client == "litellm"
    assert uses_litellm(LLMConfig(model="openai/m", base_url="http://127.0.0.1:1/v1"))


# -- same request, same answer ----------------------------------------------------------


async def test_both_clients_send_the_same_request(stub: StubLLMServer) -> None:
    bodies = []
    for client in CLIENTS:
        result = await acomplete(config(stub, client, temperature=0.2, max_tokens=64),
                                 MESSAGES, schema=Verdict)
        assert json.loads(result.text)["reasons"]
        bodies.append(stub.requests[-1].body)
    ours, theirs = bodies
    for key in ("model", "messages", "response_format", "temperature", "max_tokens"):
        assert ours[key] == theirs[key], key
    assert ours["response_format"]["json_schema"]["strict"] is True


@pytest.mark.parametrize("client", CLIENTS)
async def test_tokens_and_cost_of_a_priced_model(client: str) -> None:
    import litellm

    # A proxy serving a model litellm has a price for: the call is priced as litellm does.
    with StubLLMServer(model_name="gpt-4o-mini") as stub:
        spec = {**stub.llm, "model": "openai/gpt-4o-mini", "client": client}
        result = await acomplete(LLMConfig.from_spec(spec), MESSAGES)
    request = stub.requests[-1]
    assert request.model == "gpt-4o-mini"
    assert result.prompt_tokens > 0 and result.completion_tokens > 0
    expected = sum(litellm.cost_per_token(model="gpt-4o-mini",
                                          prompt_tokens=result.prompt_tokens,
                                          completion_tokens=result.completion_tokens))
    assert expected > 0
    assert result.cost_usd == pytest.approx(expected)


# -- same failures ------------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "name", "retryable", "status"), [
    ("429", "RateLimitError", True, 429),
    ("500", "InternalServerError", True, 500),
    ("503", "ServiceUnavailableError", True, 503),
    ("401", "AuthenticationError", False, 401),
])
async def test_both_clients_classify_http_faults_alike(fault: str, name: str,
                                                       retryable: bool, status: int) -> None:
    with StubLLMServer(retry_after=1.5) as stub:
        stub.add_rule(fault=fault)
        for client in CLIENTS:
            with pytest.raises(LLMError) as info:
                await acomplete(config(stub, client), MESSAGES)
            error = info.value
            assert str(error).startswith(f"{name} from model openai/stub"), (client, error)
            assert (error.retryable, error.status_code) == (retryable, status), client
            if fault == "429":
                assert error.retry_after == 1.5, client
            assert stub.api_key not in str(error)


@pytest.mark.parametrize("client", CLIENTS)
async def test_malformed_reply_is_retryable(stub: StubLLMServer, client: str) -> None:
    stub.add_rule(fault="malformed")
    with pytest.raises(LLMError) as info:
        await acomplete(config(stub, client), MESSAGES)
    assert info.value.retryable


@pytest.mark.parametrize("client", CLIENTS)
async def test_timeout_is_retryable(client: str) -> None:
    with StubLLMServer(hang_seconds=10) as stub:
        stub.add_rule(fault="timeout")
        with pytest.raises(LLMError, match=r"(?i)time") as info:
            await acomplete(config(stub, client), MESSAGES, timeout=0.5)
    assert info.value.retryable


async def test_connection_refused_is_retryable() -> None:
    with StubLLMServer() as stub:
        dead = {**stub.llm}
    with pytest.raises(LLMError, match="APIConnectionError") as info:
        await acomplete(LLMConfig.from_spec(dead, timeout=2), MESSAGES)
    assert info.value.retryable


# -- the lean client stays lean -----------------------------------------------------------


def test_lean_client_never_imports_litellm_and_closes_its_session() -> None:
    code = textwrap.dedent("""
        import asyncio, sys
        from ray_orch.model.client import LLMConfig, acomplete
        from ray_orch.testing import StubLLMServer
        with StubLLMServer() as stub:
            result = asyncio.run(acomplete(LLMConfig.from_spec(stub.llm),
                                           [{"role": "user", "content": "hi"}]))
        print(result.text, "litellm" in sys.modules)
    """)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ORCH_LLM_CLIENT"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "False"]
    assert "Unclosed" not in out.stderr, out.stderr
