"""Store calls from SMTP worker processes, run by runmail's main process (MAIL_SMTP_PROCESSES > 1).

A worker process speaks SMTP and checks what it reads (recipients, SPF, DKIM,
DMARC) itself, but every durable write goes to the main process, which runs it
through its group commit: one writer, so SQLite never has writers of several
processes waiting on its lock (its busy handler sleeps, up to 100 ms a time),
and store events (IMAP IDLE) start where the IMAP sessions are.

Each worker has one end of a socket pair the main process made for it (no path
on disk, no one else can connect). Frames are a 4-octet length and a pickle:
a call `(id, kind, module, qualname, args, kwargs)` and its answer
`(id, ok, result or exception)`; calls are answered out of order, as their
batches commit. Only functions of the modules `aio` allows are called.
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import logging
import pickle
import socket
import struct
from collections.abc import Callable
from typing import Any

from mailcore.conf import conf
from mailcore.store import aio
from mailcore.store.types import StorageFailure

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("!I")
READY = 0  # the id of the frame a worker sends once it listens (its answer carries no call)
_KINDS = {aio.DURABLE: aio.run_durable, aio.SHARED: aio.run}


def _frame_limit() -> int:
    """The largest frame accepted: a message of the largest size, twice (raw and with trace fields), and room."""
    return 2 * conf.max_message_size + 1024 * 1024


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if length > _frame_limit():
        raise ConnectionError(f"a frame of {length} octets is over the limit")
    return pickle.loads(await reader.readexactly(length))


def _write_frame(writer: asyncio.StreamWriter, value: Any) -> None:
    """One frame, written whole before any other (no await in between); the length apart from the
    pickle, which may hold a 50 MB message, so that it is not copied once more to be joined."""
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(_LENGTH.pack(len(data)))
    writer.write(data)


# The worker's side --------------------------------------------------------------------------


class MainProcess:
    """A worker's connection to the main process: `call` sends a call and awaits its answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(READY + 1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.closed = asyncio.Event()
        self._receiver = asyncio.get_running_loop().create_task(self._receive())

    @classmethod
    async def connect(cls, fd: int) -> MainProcess:
        reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fd))
        return cls(reader, writer)

    async def say_ready(self) -> None:
        _write_frame(self._writer, (READY, True, None))
        await self._writer.drain()

    async def call(self, kind: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.closed.is_set():
            raise StorageFailure("the main runmail process is gone")
        call_id = next(self._ids)
        answer = self._pending[call_id] = asyncio.get_running_loop().create_future()
        try:
            _write_frame(self._writer, (call_id, kind, fn.__module__, fn.__qualname__, args, kwargs))
            await self._writer.drain()
        except (ConnectionError, RuntimeError) as err:
            self._pending.pop(call_id, None)
            raise StorageFailure(f"the main runmail process is gone: {err}") from None
        return await answer

    async def _receive(self) -> None:
        try:
            while True:
                call_id, ok, value = await _read_frame(self._reader)
                answer = self._pending.pop(call_id, None)
                if answer is None or answer.done():
                    continue
                if ok:
                    answer.set_result(value)
                else:
                    answer.set_exception(value)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as err:
            log.warning("connection to the main runmail process lost: %s", err or "closed")
        except Exception:  # an answer that would not unpickle: the connection cannot be trusted after it
            log.exception("unreadable answer from the main runmail process; closing the connection")
        finally:
            self.closed.set()
            for answer in self._pending.values():
                if not answer.done():  # whether it committed is unknown: the client is told to try again
                    answer.set_exception(StorageFailure("the main runmail process is gone"))
            self._pending.clear()

    def close(self) -> None:
        self._receiver.cancel()
        self._writer.close()


# The main process's side --------------------------------------------------------------------


def _resolve(module: str, qualname: str) -> Callable[..., Any]:
    """The function a worker names; only plain module-level functions of the modules `aio` runs."""
    if "<" in qualname:
        raise LookupError(f"{module}.{qualname} is not a module-level function")
    fn: Any = importlib.import_module(module)
    for part in qualname.split("."):
        fn = getattr(fn, part)
    if not callable(fn):
        raise LookupError(f"{module}.{qualname} is not callable")
    aio.check_allowed(fn)
    return fn


async def wait_ready(reader: asyncio.StreamReader) -> None:
    """Wait for a new worker's first frame, which says it listens."""
    call_id, _ok, _value = await _read_frame(reader)
    if call_id != READY:
        raise ConnectionError(f"a worker's first frame was call {call_id}, not its ready frame")


async def serve_worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer one worker's calls until it closes its end; each call runs as its own task."""
    calls: set[asyncio.Task[None]] = set()
    try:
        while True:
            request = await _read_frame(reader)
            task = asyncio.get_running_loop().create_task(_answer(writer, *request))
            calls.add(task)
            task.add_done_callback(calls.discard)
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        pass  # the worker exited (its supervisor logs why)
    finally:
        if calls:  # what was asked before the worker went is still stored (its client retries)
            await asyncio.gather(*calls, return_exceptions=True)
        writer.close()


async def _answer(
    writer: asyncio.StreamWriter, call_id: int, kind: str, module: str, qualname: str,
    args: tuple[Any, ...], kwargs: dict[str, Any],
) -> None:
    try:
        result = await _KINDS[kind](_resolve(module, qualname), *args, **kwargs)
        answer: tuple[int, bool, Any] = (call_id, True, result)
    except Exception as err:  # noqa: BLE001 - it belongs to the worker's caller, as if the call ran there
        answer = (call_id, False, _portable(err))
    try:
        _write_frame(writer, answer)
    except (pickle.PicklingError, TypeError, AttributeError) as err:
        log.exception("answer to %s.%s could not be sent", module, qualname)
        _write_frame(writer, (call_id, False, StorageFailure(f"answer could not be sent: {err}")))
    with contextlib.suppress(ConnectionError):  # the worker is gone; its session's client retries
        await writer.drain()


def _portable(err: Exception) -> Exception:
    """`err`, or a StorageFailure naming it when it would not come out of pickle whole (custom __init__)."""
    try:
        pickle.loads(pickle.dumps(err, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # noqa: BLE001 - any failure of the round trip
        return StorageFailure(f"{type(err).__name__}: {err}")
    return err
