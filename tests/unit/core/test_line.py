"""Lines (``core/line.py``): copies of messages between this machine's processes, on
abstract Unix sockets; and how their receivers take a copy or the original."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from ray_orch.api.result_line import items
from ray_orch.core.line import Line, usable
from ray_orch.engine.replies import Replies, first

pytestmark = pytest.mark.skipif(not usable(), reason="lines need Linux abstract sockets")


def name(tag: str) -> str:
    return f"test-{os.getpid()}-{tag}-{id(asyncio.get_running_loop()):x}"


async def test_a_copy_reaches_its_waiter_and_a_handler():
    inbox = await Line.here().open(name("inbox"))
    seen = []
    inbox.on("deliver", lambda key, value: seen.append((key, value)))
    waiting = inbox.expect(("r", "t1"))
    sender = Line()  # another process's side, as far as the socket goes
    assert await sender.send(inbox.name, "reply", ("r", "t1"), {"text": "done"})
    assert await sender.send(inbox.name, "deliver", ("r", "t2"), "handed")
    assert await asyncio.wait_for(waiting, 5) == {"text": "done"}
    while not seen:
        await asyncio.sleep(0.01)
    assert seen == [(("r", "t2"), "handed")] and inbox.taken == 1
    await sender.close()
    await inbox.close()


async def test_what_cannot_go_on_a_line_is_refused_and_nothing_waits_for_it():
    inbox = await Line.here().open(name("refuse"))
    sender = Line()
    # No inbox by that name on this machine; a value plain pickle cannot carry.
    assert not await sender.send("nobody-here", "reply", "k", 1)
    assert not await sender.send(inbox.name, "reply", "k", lambda: 1)
    assert not await sender.send(None, "reply", "k", 1)
    # A copy nobody waits for (or no longer: ``forget``) is dropped.
    waiting = inbox.expect("late")
    inbox.forget("late")
    assert await sender.send(inbox.name, "reply", "late", 1)
    await asyncio.sleep(0.1)
    assert not waiting.done() and inbox.taken == 0
    await sender.close()
    await inbox.close()


async def test_post_writes_at_once_when_connected_else_dials_for_the_next():
    inbox = await Line.here().open(name("post"))
    sender = Line()
    assert not sender.post(inbox.name, "reply", "a", 1)  # not connected yet: dials
    for _ in range(100):
        if sender.post(inbox.name, "reply", "b", 2):
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("never connected")
    waiting = inbox.expect("c")
    assert sender.post(inbox.name, "reply", "c", 3)
    assert await asyncio.wait_for(waiting, 5) == 3
    await sender.close()
    await inbox.close()


async def test_a_frame_that_cannot_be_read_is_skipped_and_the_next_is_read():
    inbox = await Line.here().open(name("garbage"))
    waiting = inbox.expect("k")
    _reader, writer = await asyncio.open_unix_connection("\0ray-orch-line-" + inbox.name)
    writer.write(len(b"not a pickle").to_bytes(4, "big") + b"not a pickle")
    sender = Line()
    assert await sender.send(inbox.name, "reply", "k", "ok")
    assert await asyncio.wait_for(waiting, 5) == "ok"
    writer.close()
    await sender.close()
    await inbox.close()


def test_lines_are_off_when_the_environment_says_so(monkeypatch):
    monkeypatch.setenv("RAY_ORCH_LINES", "0")
    assert not usable()


async def test_an_inbox_name_taken_on_this_machine_cannot_be_opened_twice():
    taken = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tag = name("taken")
    taken.bind("\0ray-orch-line-" + tag)
    try:
        with pytest.raises(OSError):
            await Line().open(tag)
    finally:
        taken.close()


# -- receivers: the Supervisor takes an attempt's reply, the driver a run's result ------

class FakeLine:
    def __init__(self):
        self.waiting = {}

    def expect(self, key):
        return self.waiting.setdefault(key, asyncio.get_running_loop().create_future())

    def forget(self, key):
        self.waiting.pop(key, None)


async def waiting_on(line, key):
    """A call not yet answered, and ``first`` waiting on it and on its copy under ``key``."""
    call = asyncio.get_running_loop().create_future()
    waiting = asyncio.ensure_future(first(Replies(line=line, run_id="run"), call, key))
    await asyncio.sleep(0)
    return call, waiting


async def test_the_supervisor_takes_the_call_s_reply_when_it_comes_first():
    line = FakeLine()
    call, waiting = await waiting_on(line, "run:1")
    call.set_result("from the call")
    assert await waiting == "from the call"
    assert line.waiting == {}  # no longer waited for


async def test_a_failed_call_fails_the_attempt_unless_its_copy_came_first():
    line = FakeLine()
    call, waiting = await waiting_on(line, "run:2")
    call.set_exception(LookupError("member lost"))
    with pytest.raises(LookupError):
        await waiting
    # The copy first: the member had finished; its later failure is not the attempt's.
    call, waiting = await waiting_on(line, "run:3")
    line.waiting["run:3"].set_result("output")
    call.set_exception(LookupError("member lost after"))
    assert await waiting == "output"


async def test_cancelling_the_wait_leaves_the_call_to_its_caller():
    line = FakeLine()
    call, waiting = await waiting_on(line, "run:4")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not call.cancelled() and line.waiting == {}  # the caller cancels the call


async def test_reply_keys_are_unique_and_a_hand_off_s_comes_from_its_token():
    replies = Replies(line=FakeLine(), run_id="run")
    assert replies.key() != replies.key()
    assert replies.key("step1#1#2") == replies.key("step1#1#2") == "run:step1#1#2"


class Stream:
    """A Supervisor's stream: items (futures of ``(kind, payload)``) as they come."""

    def __init__(self):
        self.items: asyncio.Queue = asyncio.Queue()

    def __aiter__(self):
        return self

    async def __anext__(self):
        item = await self.items.get()
        if item is None:
            raise StopAsyncIteration
        return item


def done(value):
    future = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


async def test_the_result_s_copy_waits_for_every_event_item_streamed_before_it():
    stream, copy = Stream(), asyncio.get_running_loop().create_future()
    Line.here().expect("k")
    got = []

    async def follow():
        async for item in items(stream, ("driver", "k"), copy):
            got.append(await item)

    following = asyncio.ensure_future(follow())
    stream.items.put_nowait(done(("events", [1])))
    # Two event items went before the result; the second is still on its way by Ray.
    copy.set_result((2, ("result", ("copied", [3]))))
    await asyncio.sleep(0.05)
    assert got == [("events", [1])]
    stream.items.put_nowait(done(("events", [2])))
    await asyncio.wait_for(following, 5)
    assert got == [("events", [1]), ("events", [2]), ("result", ("copied", [3]))]
    assert "k" not in Line.here().waiting


async def test_without_a_copy_the_stream_s_own_result_is_taken():
    stream = Stream()
    for item in (done(("events", [1])), done(("result", ("streamed", []))), None):
        stream.items.put_nowait(item)
    got = [await item async for item in items(stream, None, None)]
    assert got == [("events", [1]), ("result", ("streamed", []))]
