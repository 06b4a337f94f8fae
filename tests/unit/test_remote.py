"""mailcore.store.remote over a real socket pair: what an SMTP worker process asks of runmail's main process."""
from __future__ import annotations

import asyncio
import os
import socket

import pytest

from mailcore.dns import TemporaryDNSError
from mailcore.smtp import headers
from mailcore.store import aio, blobs, remote
from mailcore.store.types import StorageFailure


async def connected() -> tuple[remote.MainProcess, asyncio.Task[None]]:
    """A worker's MainProcess, and the main process's side answering it in this same loop."""
    ours, theirs = socket.socketpair()
    main_process = await remote.MainProcess.connect(os.dup(ours.fileno()))
    ours.close()
    reader, writer = await asyncio.open_unix_connection(sock=theirs)
    return main_process, asyncio.get_running_loop().create_task(remote.serve_worker(reader, writer))


def run(scenario) -> None:  # type: ignore[no-untyped-def]
    # Store threads an earlier test left (with the database connection it was allowed) would check that
    # connection before each call, which these tests, without the database, may not do: fresh threads.
    aio.shutdown()

    async def with_pair() -> None:
        main_process, serving = await connected()
        try:
            await scenario(main_process)
        finally:
            main_process.close()
            await asyncio.wait_for(serving, 10)
            aio.shutdown()

    asyncio.run(with_pair())


def test_a_call_runs_in_the_main_process_and_its_result_comes_back():
    async def scenario(main_process: remote.MainProcess) -> None:
        calls = [main_process.call(aio.SHARED, headers.clean, (f"line {n}\r\nnext",), {}) for n in range(5)]
        assert await asyncio.gather(*calls) == [headers.clean(f"line {n}\r\nnext") for n in range(5)]

    run(scenario)


def test_a_store_error_raised_there_is_raised_here_with_its_type_and_text(blob_dir):
    async def scenario(main_process: remote.MainProcess) -> None:
        with pytest.raises(blobs.BlobError, match=r"^message blob 0{64} is unreadable: "):
            await main_process.call(aio.SHARED, blobs.get, ("0" * 64,), {})

    run(scenario)


def test_only_functions_of_the_store_modules_are_called():
    async def scenario(main_process: remote.MainProcess) -> None:
        with pytest.raises(TypeError, match=r"is not a mailcore store, directory, auth, SMTP policy or queue function"):
            await main_process.call(aio.SHARED, os.getcwd, (), {})
        with pytest.raises(LookupError, match=r"is not a module-level function"):
            await main_process.call(aio.SHARED, lambda: None, (), {})

    run(scenario)


def test_an_error_pickle_cannot_rebuild_comes_back_as_a_storage_failure_naming_it():
    portable = remote._portable(TemporaryDNSError("example.test", "TXT", "timeout"))
    assert type(portable) is StorageFailure
    assert str(portable) == "TemporaryDNSError: TXT lookup for example.test: timeout"


def test_calls_waiting_when_the_main_process_goes_fail_as_storage_failures_and_later_ones_at_once():
    async def scenario() -> None:
        ours, theirs = socket.socketpair()
        main_process = await remote.MainProcess.connect(os.dup(ours.fileno()))
        ours.close()
        reader, writer = await asyncio.open_unix_connection(sock=theirs)
        waiting = asyncio.get_running_loop().create_task(main_process.call(aio.DURABLE, headers.clean, ("x",), {}))
        await remote._read_frame(reader)  # the call arrived; the main process ends without answering it
        writer.close()
        with pytest.raises(StorageFailure, match=r"^the main runmail process is gone$"):
            await asyncio.wait_for(waiting, 10)
        assert main_process.closed.is_set()
        with pytest.raises(StorageFailure, match=r"^the main runmail process is gone$"):
            await main_process.call(aio.DURABLE, headers.clean, ("x",), {})
        main_process.close()

    asyncio.run(scenario())
