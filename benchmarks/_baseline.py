"""The floor the benchmarks compare against: plain asyncio + one aiohttp session.

``run_baseline`` sends ``n`` chat-completion requests straight to an OpenAI-compatible
server (the stub) with no orchestration, no litellm and no Ray, and returns the makespan.
With a fixed server latency L and enough concurrency, the floor is about L plus the
per-request cost of HTTP on this machine; anything ray-orch adds is measured above it.

Run ``python benchmarks/_baseline.py`` to print the figures for n=200 and n=1000 at
100 ms latency.
"""

from __future__ import annotations

import asyncio
import resource
import time

import aiohttp

__all__ = ["run_baseline"]


async def run_baseline(base_url: str, n: int, concurrency: int | None = None, *,
                       model: str = "stub", api_key: str = "sk-stub-not-a-real-key") -> float:
    """Send ``n`` chat completions with plain asyncio and return the makespan.

    Args:
        base_url: the server's OpenAI base URL, e.g. ``stub.base_url``.
        n: how many requests to send.
        concurrency: the most requests in flight at once (None: all ``n`` at once).
        model: the model name put in each request body.
        api_key: the bearer token sent.

    Returns:
        Seconds from the first request sent to the last answer read.

    Raises:
        aiohttp.ClientResponseError: a request got a non-2xx answer.
        ValueError: ``n`` or ``concurrency`` is below 1.

    Example:
        >>> # with StubLLMServer(latency=0.1) as stub:
        >>> #     asyncio.run(run_baseline(stub.base_url, 1000))   # about 0.3-0.6 s
    """
    if n < 1 or (concurrency is not None and concurrency < 1):
        raise ValueError(f"n and concurrency must be >= 1, got n={n}, concurrency={concurrency}")
    limit = concurrency or n
    url = f"{base_url.rstrip('/')}/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"}
    gate = asyncio.Semaphore(limit)
    connector = aiohttp.TCPConnector(limit=limit)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        body = {"model": model, "messages": [{"role": "user", "content": f"request {i}"}]}
        async with gate, session.post(url, json=body, headers=headers) as resp:
            resp.raise_for_status()
            await resp.read()

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(one(session, i) for i in range(n)))
        return time.perf_counter() - started


def _raise_fd_limit() -> None:
    # Client and server share this process: each connection costs two descriptors.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    from ray_orch.testing import StubLLMServer

    _raise_fd_limit()
    latency = 0.1
    with StubLLMServer(latency=latency) as stub:
        asyncio.run(run_baseline(stub.base_url, 20))  # warm up
        print(f"baseline: plain asyncio + one aiohttp session, stub latency {latency * 1000:.0f} ms")
        for n in (200, 1000):
            stub.clear()
            makespan = asyncio.run(run_baseline(stub.base_url, n))
            print(f"  n={n:>5}  makespan {makespan:6.3f} s  throughput {n / makespan:8.0f} req/s"
                  f"  overhead over latency {makespan - latency:6.3f} s")


if __name__ == "__main__":
    main()
