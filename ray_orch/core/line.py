"""Lines: one-way messages between the processes of one machine, beside Ray's calls.

A Ray actor call that reaches a process which has idled for a model call's length takes
~2 ms here (the receiver's gRPC, core-worker and event-loop threads wake in turn); the
same message on a Unix socket takes ~0.2 ms. A chain's steps cross processes at every
hop (a run's start, a task's start on a member, a member's output to its Supervisor, a
hand-off to another agent's member, a run's result to its driver), so ray-orch sends
those messages on a line too, and the receiver takes whichever copy comes first.

A line only ever carries a copy: the Ray call that carries the original is still made,
and the receiver drops the copy it no longer waits for. So a line that is missing, slow,
refused or broken changes nothing but speed: nothing is lost and nothing runs twice.

Each process has one inbox, a Linux abstract Unix socket named after the process (an
actor's id, or a driver's pid and a random part): no file to clean up, gone with the
process. It takes connections only from processes of its own user (``SO_PEERCRED``),
the trust a private socket file would give. Another machine's processes are never
reached (the name does not exist here), and where abstract sockets do not exist (macOS,
Windows) there are no lines: every message goes by Ray alone.

Example:
    >>> async def demo() -> object:
    ...     inbox = await Line.here().open(f"demo-{os.getpid()}")
    ...     waiting = inbox.expect(("run", "t1"))
    ...     await Line.here().send(inbox.name, "reply", ("run", "t1"), "done")
    ...     return await asyncio.wait_for(waiting, 5)
    >>> asyncio.run(demo()) if usable() else "done"
    'done'
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import pickle
import socket
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["Line", "actor_line", "first_of", "open_inbox", "send_blocking", "usable"]

_HEADER = struct.Struct("!I")
_CRED = struct.Struct("iII")  # pid, uid, gid (struct ucred)
_MAX_FRAME = 256 * 1024 * 1024
_REDIAL_S = 1.0
_lines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Line] = \
    weakref.WeakKeyDictionary()


def usable() -> bool:
    """Whether lines exist here: Linux (abstract sockets), not turned off with
    ``RAY_ORCH_LINES=0``."""
    return sys.platform.startswith("linux") and os.environ.get("RAY_ORCH_LINES", "1") != "0"


async def open_inbox(name: str | None) -> Line | None:
    """This loop's line with its inbox open under ``name``; None where lines do not exist,
    without a name, or if it cannot be opened (then every message goes by call)."""
    if name is None or not usable():
        return None
    try:
        return await Line.here().open(name)
    except OSError:
        return None


def actor_line(handle: Any) -> str | None:
    """The line of the Ray actor ``handle`` (an actor's inbox is named after its id:
    ``open_inbox(<actor id>)``); None for what is no actor handle (an in-process fake)."""
    actor_id = getattr(handle, "_actor_id", None)
    return None if actor_id is None else str(actor_id.hex())


def _address(name: str) -> str:
    return "\0ray-orch-line-" + name


_blocking: dict[str, socket.socket] = {}
_blocking_lock = threading.Lock()


def send_blocking(name: str | None, kind: str, key: Any, value: Any) -> bool:
    """``Line.send`` from a thread without an event loop (a sync actor's call): False if
    it could not be sent."""
    frame = _frame(name, kind, key, value)
    if frame is None:
        return False
    assert name is not None
    with _blocking_lock:
        sock = _blocking.get(name)
        try:
            if sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(0.5)  # a stuck reader must not hold the call's reply
                sock.connect(_address(name))
                _blocking[name] = sock
            sock.sendall(_HEADER.pack(len(frame)) + frame)
        except OSError:
            _blocking.pop(name, None)
            if sock is not None:
                sock.close()
            return False
    return True


async def first_of(line: Any, ref: Any, key: Hashable) -> Any:
    """The result of the call ``ref`` (an awaitable), or of its copy under ``key`` on
    ``line`` (``expect`` / ``forget``) if that comes first. A copy is only ever sent for
    a success: a failure comes by the call. Cancelled, it stops waiting (the caller
    cancels the call)."""
    copy = line.expect(key)
    original = asyncio.ensure_future(_result(ref))
    try:
        await asyncio.wait((original, copy), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        original.cancel()
        raise
    finally:
        line.forget(key)
    if copy.done() and not copy.cancelled():
        if not original.done():
            original.cancel()  # only this wait: the call itself has returned
        elif not original.cancelled():
            original.exception()  # read: a late failure of a call that succeeded
        return copy.result()
    return original.result()


async def _result(ref: Any) -> Any:
    # Its own task: cancelling it stops this wait, not the awaitable (a fake's future).
    return await asyncio.shield(ref) if isinstance(ref, asyncio.Future) else await ref


def _frame(name: str | None, kind: str, key: Any, value: Any) -> bytes | None:
    if name is None or not usable():
        return None
    try:
        return pickle.dumps((kind, key, value), protocol=5)
    except Exception:  # the original carries it (cloudpickle there)
        return None


class Line:
    """This event loop's inbox and its connections to other processes' inboxes."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.handlers: dict[str, Callable[[Any, Any], None]] = {}
        self.waiting: dict[Hashable, asyncio.Future[Any]] = {}
        self.taken = 0  # copies that arrived before the original (for ``info``)
        self._server: asyncio.AbstractServer | None = None
        self._opening: asyncio.Future[None] | None = None
        self._out: dict[str, asyncio.StreamWriter] = {}
        self._connecting: dict[str, asyncio.Future[asyncio.StreamWriter | None]] = {}
        self._posting: set[asyncio.Future[Any]] = set()
        self._refused: dict[str, float] = {}  # inboxes not found, until when

    @classmethod
    def here(cls) -> Line:
        """The running event loop's line (one per loop)."""
        loop = asyncio.get_running_loop()
        line = _lines.get(loop)
        if line is None:
            line = _lines[loop] = cls()
        return line

    async def open(self, name: str) -> Line:
        """Start this loop's inbox under ``name`` (once; a later name is ignored).
        Raises ``OSError`` if it cannot be opened (the name is taken)."""
        if self._server is None:
            if self._opening is None:
                self.name = name
                # From an empty context: what its handlers start (a run, an attempt) must
                # not run in the Ray call's that opened it (its task id, its cancel).
                self._opening = contextvars.Context().run(asyncio.ensure_future,
                                                          self._serve(name))
            await asyncio.shield(self._opening)
        return self

    async def _serve(self, name: str) -> None:
        try:
            self._server = await asyncio.start_unix_server(self._read, _address(name))
        except BaseException:
            self._opening, self.name = None, None
            raise

    def on(self, kind: str, handler: Callable[[Any, Any], None]) -> None:
        """Call ``handler(key, value)`` for each message of ``kind`` that arrives."""
        self.handlers[kind] = handler

    def expect(self, key: Hashable) -> asyncio.Future[Any]:
        """A future that a ``reply`` message with this key resolves (``forget`` it when
        the original arrived first)."""
        future = self.waiting.get(key)
        if future is None:
            future = self.waiting[key] = asyncio.get_running_loop().create_future()
        return future

    def forget(self, key: Hashable) -> None:
        """No longer wait for a copy with this key."""
        self.waiting.pop(key, None)

    def _arrived(self, kind: str, key: Any, value: Any) -> None:
        if kind == "reply":
            future = self.waiting.pop(key, None)
            if future is not None and not future.done():
                self.taken += 1
                future.set_result(value)
            return
        handler = self.handlers.get(kind)
        if handler is not None:
            handler(key, value)

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            raw = writer.get_extra_info("socket").getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
            if _CRED.unpack(raw)[1] != os.getuid():  # another user's process
                return
            while True:
                size = _HEADER.unpack(await reader.readexactly(_HEADER.size))[0]
                if size > _MAX_FRAME:
                    return
                frame = await reader.readexactly(size)
                try:
                    kind, key, value = pickle.loads(frame)
                    self._arrived(kind, key, value)
                except Exception:  # a copy that cannot be read: the original comes
                    continue
        except (OSError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:  # the loop is ending (asyncio logs a cancelled one)
            return
        finally:
            writer.close()

    async def send(self, name: str | None, kind: str, key: Any, value: Any) -> bool:
        """Send a copy to the inbox ``name``; False if it could not be sent (no such
        inbox here, a value that plain pickle cannot carry): the original still goes."""
        frame = _frame(name, kind, key, value)
        if frame is None:
            return False
        assert name is not None
        writer = self._out.get(name)
        if writer is None or writer.is_closing():
            writer = await self._connect(name)
        return writer is not None and self._write(name, writer, frame)

    def post(self, name: str | None, kind: str, key: Any, value: Any) -> bool:
        """``send`` from synchronous code: True if written now (it is then read there
        unless that process ends or cannot unpickle it); False if not connected yet
        (it connects now, for the next one) or it cannot be sent."""
        writer = self._out.get(name) if name is not None else None
        if writer is None or writer.is_closing():
            if name is not None and usable() and name not in self._connecting:
                dialing = asyncio.ensure_future(self._connect(name))
                self._posting.add(dialing)
                dialing.add_done_callback(self._posting.discard)
            return False
        frame = _frame(name, kind, key, value)
        return frame is not None and self._write(name, writer, frame)  # type: ignore[arg-type]

    def _write(self, name: str, writer: asyncio.StreamWriter, frame: bytes) -> bool:
        try:
            writer.write(_HEADER.pack(len(frame)) + frame)
        except (OSError, RuntimeError):
            self._out.pop(name, None)
            return False
        return True

    async def _connect(self, name: str) -> asyncio.StreamWriter | None:
        pending = self._connecting.get(name)
        if pending is None:
            pending = self._connecting[name] = asyncio.ensure_future(self._dial(name))
            pending.add_done_callback(lambda _: self._connecting.pop(name, None))
        return await asyncio.shield(pending)

    async def _dial(self, name: str) -> asyncio.StreamWriter | None:
        # An inbox not found here (another machine's process) is not dialed again for a
        # while: each of its messages would pay a failed connect.
        if time.monotonic() < self._refused.get(name, 0.0):
            return None
        try:
            reader, writer = await asyncio.open_unix_connection(_address(name))
        except OSError:
            if len(self._refused) > 1024:
                self._refused.clear()
            self._refused[name] = time.monotonic() + _REDIAL_S
            return None
        self._out[name] = writer
        watch = asyncio.ensure_future(self._watch(name, reader, writer))
        self._posting.add(watch)
        watch.add_done_callback(self._posting.discard)
        return writer

    async def _watch(self, name: str, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        # Nothing comes back on a connection: its end means the inbox's process ended.
        # Drop it then (a member sends to many peers over its life).
        with contextlib.suppress(OSError, asyncio.CancelledError):  # (the loop is ending)
            await reader.read()
        if self._out.get(name) is writer:
            del self._out[name]
        writer.close()

    async def close(self) -> None:
        """Stop the inbox and drop the connections."""
        for writer in self._out.values():
            writer.close()
        self._out.clear()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
