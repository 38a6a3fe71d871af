"""The embedded engine in a process of its own: errors cross over, a killed or stuck process is handled, the folder's
lock goes with the process, and the engine's own loop (`edge_worker.serve`) ends when its parent goes away."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
from qdrant_client import models

from bookchat.retrieval.store import DENSE_VECTOR, SPARSE_VECTOR
from bookchat.retrieval.stores import edge_folder, edge_worker
from bookchat.retrieval.stores.edge_client import EdgeQdrantClient
from bookchat.retrieval.stores.edge_folder import HOLDER_NOTE_WAIT_S, ORPHAN_WAIT_S, EdgeFolder
from bookchat.retrieval.stores.edge_process import EdgeProcessClient
from bookchat.retrieval.stores.errors import FolderInUse, UnsupportedRequest, VectorStoreError

VECTORS = {DENSE_VECTOR: models.VectorParams(size=4, distance=models.Distance.DOT)}
SPARSE = {SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)}


def points(count: int, start: int = 0) -> list[models.PointStruct]:
    return [
        models.PointStruct(
            id=str(uuid.UUID(int=start + n + 1)),
            vector={DENSE_VECTOR: [1.0, float(n % 3), 0.0, 0.5]},
            payload={"text": f"point {start + n}"},
        )
        for n in range(count)
    ]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[EdgeProcessClient]:
    client = EdgeProcessClient(tmp_path / "edge", close_timeout=5)
    await client.create_collection("c", vectors_config=VECTORS, sparse_vectors_config=SPARSE)
    yield client
    await client.close()


def running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (an exited child not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def resume(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


async def test_the_engines_errors_reach_the_caller_as_they_were_raised(engine: EdgeProcessClient) -> None:
    assert engine.pid != os.getpid()
    with pytest.raises(ValueError, match="Collection nowhere not found"):
        await engine.count("nowhere")
    with pytest.raises(VectorStoreError, match="embedded Qdrant engine failed"):
        await engine.upsert("c", [models.PointStruct(id=1, vector={DENSE_VECTOR: [1.0, 2.0]})])  # wrong size
    with pytest.raises(UnsupportedRequest):
        await engine.upsert("c", [models.PointStruct(id=1, vector=[1.0] * 4)])  # unnamed vector
    with pytest.raises(VectorStoreError, match="no call 'drop_everything'"):
        await engine._call("drop_everything")
    # Still serving after all of them.
    await engine.upsert("c", points(3))
    assert (await engine.count("c")).count == 3


async def test_a_killed_engine_fails_the_calls_it_had_and_the_next_call_restarts_it(
    engine: EdgeProcessClient, caplog: pytest.LogCaptureFixture
) -> None:
    await engine.upsert("c", points(20))
    first_pid = engine.pid
    os.kill(first_pid, signal.SIGSTOP)  # the call below cannot be answered before the kill
    try:
        in_flight = asyncio.ensure_future(engine.count("c"))
        await asyncio.sleep(0.1)
        assert not in_flight.done()
    finally:
        os.kill(first_pid, signal.SIGKILL)
        resume(first_pid)
    with pytest.raises(VectorStoreError, match=r"process stopped \(exit code -9\); the next call starts it again"):
        await asyncio.wait_for(in_flight, timeout=10)
    with caplog.at_level(logging.WARNING, logger="bookchat.retrieval.stores.edge_process"):
        counted = await engine.count("c")
    assert counted.count == 20  # everything acknowledged before the kill is there
    assert engine.pid != first_pid
    assert "starting it again" in caplog.text


async def test_a_caller_that_gives_up_leaves_the_engine_usable(engine: EdgeProcessClient) -> None:
    await engine.upsert("c", points(5))
    os.kill(engine.pid, signal.SIGSTOP)
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(engine.count("c"), timeout=0.2)
    finally:
        resume(engine.pid)
    # The late answer to the abandoned call is dropped; the next call gets its own.
    assert (await engine.count("c")).count == 5
    hits = await engine.query_points("c", query=[1.0, 0.0, 0.0, 0.0], using=DENSE_VECTOR, limit=2)
    assert len(hits.points) == 2


async def test_the_folder_is_locked_by_the_engines_process_and_released_when_it_closes(tmp_path: Path) -> None:
    folder = tmp_path / "edge"
    engine = EdgeProcessClient(folder)
    with pytest.raises(FolderInUse, match=rf"another bookchat process \(pid {engine.pid}\).*BOOKCHAT_QDRANT_URL"):
        EdgeProcessClient(folder)
    with pytest.raises(FolderInUse):
        EdgeQdrantClient(folder)
    await engine.create_collection("c", vectors_config=VECTORS)
    await engine.upsert("c", points(4))
    await engine.close()
    await engine.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        await engine.count("c")
    reopened = EdgeQdrantClient(folder)
    assert (await reopened.count("c")).count == 4
    await reopened.close()


async def test_a_stuck_engine_is_killed_at_close(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = EdgeProcessClient(tmp_path / "edge", close_timeout=0.3)
    pid = engine.pid
    os.kill(pid, signal.SIGSTOP)
    with caplog.at_level(logging.WARNING, logger="bookchat.retrieval.stores.edge_process"):
        await engine.close()
    assert "did not close cleanly" in caplog.text
    assert engine._worker.process.returncode == -signal.SIGKILL
    again = EdgeProcessClient(tmp_path / "edge")  # the lock went with the killed process
    await again.close()


async def test_the_engine_exits_when_its_parent_dies(tmp_path: Path) -> None:
    folder = tmp_path / "edge"
    script = (
        "import sys, time; from pathlib import Path; "
        "from bookchat.retrieval.stores.edge_process import EdgeProcessClient; "
        f"engine = EdgeProcessClient(Path({str(folder)!r})); print(engine.pid, flush=True); time.sleep(600)"
    )
    parent = await asyncio.create_subprocess_exec(sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE)
    assert parent.stdout is not None
    engine_pid = int(await asyncio.wait_for(parent.stdout.readline(), timeout=60))
    with pytest.raises(FolderInUse):
        EdgeQdrantClient(folder)
    os.kill(engine_pid, signal.SIGSTOP)  # so that it cannot release the folder before the opener below tries
    parent.kill()  # no clean-up of any kind
    await parent.wait()
    # The lock names an engine whose parent is gone: an opener waits for it instead of being refused.
    opening = asyncio.ensure_future(asyncio.to_thread(EdgeQdrantClient, folder))
    await asyncio.sleep(0.5)
    assert not opening.done()
    os.kill(engine_pid, signal.SIGCONT)  # it sees its parent's end closed, closes the folder and exits
    reopened = await asyncio.wait_for(opening, timeout=ORPHAN_WAIT_S)
    for _ in range(100):
        if not running(engine_pid):
            break
        await asyncio.sleep(0.1)
    assert not running(engine_pid)
    await reopened.close()


def test_an_engine_whose_parent_died_before_it_ran_leaves_the_folder_alone(tmp_path: Path) -> None:
    """Killed between spawning its engine and the engine's start, a parent leaves no engine holding the folder."""
    ours, theirs = socket.socketpair()
    with ours:
        # The parent named on the command line is not this process's parent: it is gone (and pid 1 adopted us).
        edge_worker.main([str(theirs.detach()), str(tmp_path / "edge"), "0", str(os.getpid())])
        ours.settimeout(5)
        assert ours.recv(1) == b""  # its end is closed: nothing was sent, nothing waits
    assert not (tmp_path / "edge").exists()


def test_an_opener_gives_a_new_holder_a_moment_to_say_who_it_is(tmp_path: Path) -> None:
    """Between taking the lock and writing its note the holder is anonymous: an opener neither fails at once nor
    waits long."""
    folder = tmp_path / "edge"
    folder.mkdir()
    holder = open(folder / ".lock", "w", encoding="utf-8")  # noqa: SIM115 - released by the timer below
    fcntl.flock(holder, fcntl.LOCK_EX)  # held, no note yet
    released = threading.Timer(HOLDER_NOTE_WAIT_S / 4, holder.close)
    released.start()
    opened = EdgeFolder(folder)
    opened.open()
    opened.close()
    released.join()

    holder = open(folder / ".lock", "w", encoding="utf-8")  # noqa: SIM115
    with holder:
        fcntl.flock(holder, fcntl.LOCK_EX)  # a holder that never says who it is is a live owner after the moment
        started = time.monotonic()
        with pytest.raises(FolderInUse):
            EdgeFolder(folder).open()
        assert HOLDER_NOTE_WAIT_S <= time.monotonic() - started < HOLDER_NOTE_WAIT_S + 2


def test_an_orphan_that_never_lets_go_is_named_after_the_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "edge"
    folder.mkdir()
    # A holder whose note names a parent it no longer has: an orphaned engine, here one that never exits.
    script = (
        "import fcntl, os, sys, time; handle = open(sys.argv[1], 'a+'); fcntl.flock(handle, fcntl.LOCK_EX); "
        "handle.write(f'{os.getpid()} {os.getppid() + 1}'); handle.flush(); print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", script, str(folder / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        monkeypatch.setattr(edge_folder, "ORPHAN_WAIT_S", 0.3)
        with pytest.raises(FolderInUse, match=rf"still held, 0 s on, by the engine process \(pid {holder.pid}\)"):
            EdgeFolder(folder).open()
    finally:
        holder.kill()
        holder.wait()


async def test_a_rebuild_owed_after_a_migration_is_seen_and_cleared_through_the_process(tmp_path: Path) -> None:
    folder = EdgeFolder(tmp_path / "edge")
    folder.open(pending_rebuild={"reason": "moved from local mode", "legacy_folder": "/x"})
    folder.close()
    engine = EdgeProcessClient(tmp_path / "edge")
    assert engine.pending_rebuild == {"reason": "moved from local mode", "legacy_folder": "/x"}
    await engine.clear_pending_rebuild()
    assert engine.pending_rebuild is None
    await engine.close()
    again = EdgeProcessClient(tmp_path / "edge")
    assert again.pending_rebuild is None
    await again.close()


async def test_a_folder_that_cannot_be_opened_is_an_error_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="Not a directory"):
        EdgeProcessClient(blocker / "edge")


async def test_the_engine_loop_answers_out_of_order_and_stops_on_close_or_eof(tmp_path: Path) -> None:
    """`edge_worker.serve` run here (not in a child), over a socket pair, as the process runs it."""
    ours, theirs = socket.socketpair()
    parent, child = Connection(ours.detach()), Connection(theirs.detach())
    served = threading.Thread(target=asyncio.run, args=(edge_worker.serve(child, tmp_path / "edge"),))
    served.start()
    assert parent.recv() == ("ready", None)
    parent.send((1, "create_collection", ("c",), {"vectors_config": VECTORS}))
    assert parent.recv() == (1, True, True)
    parent.send((2, "count", ("c",), {}))
    parent.send((3, "count", ("missing",), {}))
    replies = {parent.recv()[:2] for _ in range(2)}
    assert replies == {(2, True), (3, False)}
    parent.send((4, edge_worker.CLOSE, (), {}))
    assert parent.recv() == (4, True, None)
    served.join(timeout=20)
    assert not served.is_alive()
    # A second run on the same folder ends when the parent's end closes.
    ours, theirs = socket.socketpair()
    parent, child = Connection(ours.detach()), Connection(theirs.detach())
    served = threading.Thread(target=asyncio.run, args=(edge_worker.serve(child, tmp_path / "edge"),))
    served.start()
    assert parent.recv() == ("ready", None)
    parent.close()
    served.join(timeout=20)
    assert not served.is_alive()
    child.close()


def test_an_exception_that_does_not_pickle_is_named_instead() -> None:
    class Local(Exception):  # a local class cannot be pickled
        pass

    portable = edge_worker.portable(Local("boom"))
    assert isinstance(portable, VectorStoreError)
    assert "Local: boom" in str(portable)
    plain = ValueError("fine")
    assert edge_worker.portable(plain) is plain
