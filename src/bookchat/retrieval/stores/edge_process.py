"""The embedded engine in a process of its own: the client API of `EdgeQdrantClient`, each call sent to the engine.

qdrant-edge 0.9 holds Python's GIL while it computes (docs/benchmarks.md), so in the serving process a search
over 100k points stops every chat stream for its whole duration. In a child process (`edge_worker`) it holds only
the child's: the serving process pickles a request and a reply and goes on with its streams meanwhile. The child
is started on the first open, restarted by the next call if it dies (the engine's write-ahead log keeps what it
acknowledged), and exits with its parent. Calls in flight when it dies fail with `VectorStoreError` (a 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import pickle
import socket
import subprocess
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from qdrant_client import models
from qdrant_client.http import models as rest

from bookchat.retrieval.stores import helper_process
from bookchat.retrieval.stores.edge_convert import PointRow, to_rows
from bookchat.retrieval.stores.edge_worker import CLOSE
from bookchat.retrieval.stores.errors import VectorStoreError

log = logging.getLogger(__name__)

# Calls whose arguments take milliseconds to pickle (a batch of points): sent from a thread, not the event loop.
_BULK = frozenset({"upsert_rows"})


class _Worker:
    """One run of the engine's process: its connection, the calls awaiting a reply, and a thread reading replies."""

    def __init__(self, process: subprocess.Popen[bytes], connection: Connection) -> None:
        self.process = process
        self.connection = connection
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.dead = False
        self.lock = threading.Lock()  # `pending` and `dead`
        # One message at a time on the socket; taken only to write bytes already pickled, so a large batch being
        # pickled on a thread never holds up the event loop's calls.
        self.send_lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, name="edge-process-replies", daemon=True)
        self.reader.start()

    def register(self, call_id: int, future: asyncio.Future[Any]) -> None:
        with self.lock:
            if self.dead:
                raise VectorStoreError(self.stopped_message())
            self.pending[call_id] = future

    def send(self, message: tuple[Any, ...]) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            with self.send_lock:
                self.connection.send_bytes(data)
        except (OSError, ValueError) as exc:
            with self.lock:
                self.pending.pop(message[0], None)
            raise VectorStoreError(self.stopped_message()) from exc

    def stopped_message(self) -> str:
        code = self.process.poll()
        how = f"exit code {code}" if code is not None else "no reply"
        return f"the embedded Qdrant engine's process stopped ({how}); the next call starts it again"

    def _read(self) -> None:
        try:
            while True:
                call_id, ok, value = self.connection.recv()
                with self.lock:
                    future = self.pending.pop(call_id, None)
                if future is not None:
                    _notify(future, ok, value)
        except (EOFError, OSError):
            log.debug("the embedded engine's process closed its end of the socket")
        except Exception:
            # The stream cannot be trusted past a reply that does not unpickle: a fresh process is the way back.
            log.exception("a reply of the embedded engine's process could not be read; stopping the process")
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        with self.lock:
            self.dead = True
            orphans, self.pending = self.pending, {}
        error = VectorStoreError(self.stopped_message())
        for future in orphans.values():
            _notify(future, False, error)

    def stop(self, timeout: float) -> None:
        """Wait for the process to exit (it was told to close), killing it after `timeout` seconds."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("the embedded engine's process did not exit in %.0f s: killed", timeout)
            self.process.kill()
            self.process.wait()
        self.connection.close()
        self.reader.join(timeout=5)


def _notify(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """Settle `future` on its own loop, from the reply thread."""
    # A closed loop raises RuntimeError: nobody waits for this answer any more.
    with contextlib.suppress(RuntimeError):
        future.get_loop().call_soon_threadsafe(_settle, future, ok, value)


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the caller gave up (cancelled); the engine's answer is dropped
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class EdgeProcessClient:
    """`EdgeQdrantClient`'s API over a child process that owns the folder; see `api.QdrantApi`."""

    def __init__(
        self, root: Path, *, optimize_after: int = 0, start_timeout: float = 120.0, close_timeout: float = 60.0
    ) -> None:
        self.root = root
        # See `EdgeQdrantClient`: the engine's process optimizes its collections in the background.
        self.optimize_after = optimize_after
        self.start_timeout = start_timeout
        # How long a close waits for the engine to flush and exit before the process is killed (its WAL keeps
        # what it acknowledged either way).
        self.close_timeout = close_timeout
        self.pending_rebuild: dict[str, Any] | None = None
        self._ids = itertools.count(1)
        self._starting = threading.Lock()
        self._closed = False
        self._worker = self._start()

    # --- the process ------------------------------------------------------------------------------------------

    def _start(self) -> _Worker:
        """Start the engine's process and wait until it has opened the folder (or say why it could not)."""
        ours, theirs = socket.socketpair()
        with theirs:
            process = subprocess.Popen(  # noqa: S603  # this interpreter, this package, our own folder path
                helper_process.module_command(
                    "bookchat.retrieval.stores.edge_worker",
                    str(theirs.fileno()),
                    str(self.root),
                    str(self.optimize_after),
                    str(os.getpid()),
                ),
                pass_fds=(theirs.fileno(),),
                # Its warnings go to our stderr; it holds no copy of our stdout (a pipe a caller reads to its end).
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=helper_process.environment(),
            )
        connection = Connection(ours.detach())
        try:
            if not connection.poll(self.start_timeout):
                raise VectorStoreError(
                    f"the embedded Qdrant engine's process did not open {self.root} in {self.start_timeout:.0f} s"
                )
            kind, value = connection.recv()
        except EOFError:
            code = process.wait()
            connection.close()
            raise VectorStoreError(
                f"the embedded Qdrant engine's process exited while opening {self.root} (exit code {code}); "
                "its error is in the log above"
            ) from None
        except BaseException:
            process.kill()
            process.wait()
            connection.close()
            raise
        if kind == "error":
            process.wait()
            connection.close()
            raise value
        self.pending_rebuild = value
        return _Worker(process, connection)

    def _live_worker(self) -> _Worker:
        with self._starting:
            if self._closed:
                raise RuntimeError("the embedded Qdrant client is closed")
            if self._worker.dead:
                log.warning("%s; starting it again", self._worker.stopped_message().split(";")[0])
                self._worker = self._start()
            return self._worker

    @property
    def pid(self) -> int:
        """The engine process's id (for people and tests)."""
        return self._worker.process.pid

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        worker = self._worker
        if worker.dead or self._closed:
            worker = await asyncio.to_thread(self._live_worker)
        reply = await self._submit(worker, method, args, kwargs)
        return await reply

    async def _submit(self, worker: _Worker, method: str, args: Any, kwargs: Any) -> asyncio.Future[Any]:
        """Send one call to `worker`; the returned future gets its reply (or the engine's death)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        call_id = next(self._ids)
        worker.register(call_id, future)
        message = (call_id, method, args, kwargs)
        if method in _BULK:
            await asyncio.to_thread(worker.send, message)
        else:
            worker.send(message)
        return future

    # --- the API ----------------------------------------------------------------------------------------------

    async def clear_pending_rebuild(self) -> None:
        await self._call("clear_pending_rebuild")
        self.pending_rebuild = None

    async def collection_exists(self, collection_name: str, **kwargs: Any) -> bool:
        result: bool = await self._call("collection_exists", collection_name, **kwargs)
        return result

    async def create_collection(self, collection_name: str, **kwargs: Any) -> bool:
        result: bool = await self._call("create_collection", collection_name, **kwargs)
        return result

    async def create_payload_index(self, collection_name: str, field_name: str, **kwargs: Any) -> Any:
        return await self._call("create_payload_index", collection_name, field_name, **kwargs)

    async def get_collection(self, collection_name: str, **kwargs: Any) -> models.CollectionInfo:
        result: models.CollectionInfo = await self._call("get_collection", collection_name, **kwargs)
        return result

    async def update_collection(self, collection_name: str, **kwargs: Any) -> bool:
        result: bool = await self._call("update_collection", collection_name, **kwargs)
        return result

    async def delete_collection(self, collection_name: str, **kwargs: Any) -> bool:
        result: bool = await self._call("delete_collection", collection_name, **kwargs)
        return result

    async def get_collections(self, **kwargs: Any) -> models.CollectionsResponse:
        result: models.CollectionsResponse = await self._call("get_collections", **kwargs)
        return result

    async def get_aliases(self, **kwargs: Any) -> models.CollectionsAliasesResponse:
        result: models.CollectionsAliasesResponse = await self._call("get_aliases", **kwargs)
        return result

    async def update_collection_aliases(
        self, change_aliases_operations: Sequence[models.AliasOperations], **kwargs: Any
    ) -> bool:
        result: bool = await self._call("update_collection_aliases", list(change_aliases_operations), **kwargs)
        return result

    async def upsert(self, collection_name: str, points: Any, **kwargs: Any) -> models.UpdateResult:
        """Sent as plain rows (`edge_convert.to_rows`, on a thread): the engine's process, which does the Python
        work of an upsert on its one GIL, unpickles them in a fraction of the time of the models. Their stored
        payload keys (`edge_payload`) are folded and their dense vectors packed here too, on this process's GIL
        rather than the engine's."""
        stored: list[str] = await self._call("stored_keys", collection_name)
        rows = await asyncio.to_thread(to_rows, points, stored)
        return await self.upsert_rows(collection_name, rows, folded_for=stored)

    async def upsert_rows(
        self, collection_name: str, rows: Sequence[PointRow], folded_for: Sequence[str] = ()
    ) -> models.UpdateResult:
        """`EdgeQdrantClient.upsert_rows` in the engine's process (pickled on a thread)."""
        result: models.UpdateResult = await self._call("upsert_rows", collection_name, rows, folded_for=folded_for)
        return result

    async def delete(self, collection_name: str, points_selector: Any, **kwargs: Any) -> models.UpdateResult:
        result: models.UpdateResult = await self._call("delete", collection_name, points_selector, **kwargs)
        return result

    async def query_points(self, collection_name: str, **kwargs: Any) -> rest.QueryResponse:
        result: rest.QueryResponse = await self._call("query_points", collection_name, **kwargs)
        return result

    async def query_batch_points(
        self, collection_name: str, requests: Sequence[models.QueryRequest], **kwargs: Any
    ) -> list[rest.QueryResponse]:
        result: list[rest.QueryResponse] = await self._call(
            "query_batch_points", collection_name, list(requests), **kwargs
        )
        return result

    async def scroll(
        self, collection_name: str, **kwargs: Any
    ) -> tuple[list[models.Record], models.ExtendedPointId | None]:
        result: tuple[list[models.Record], models.ExtendedPointId | None] = await self._call(
            "scroll", collection_name, **kwargs
        )
        return result

    async def retrieve(self, collection_name: str, ids: Sequence[models.ExtendedPointId], **kwargs: Any) -> Any:
        return await self._call("retrieve", collection_name, list(ids), **kwargs)

    async def count(self, collection_name: str, **kwargs: Any) -> models.CountResult:
        result: models.CountResult = await self._call("count", collection_name, **kwargs)
        return result

    async def optimize(self, collection_name: str) -> bool:
        """The engine's optimizers, in its process: this process's streams go on; searches wait for it."""
        result: bool = await self._call("optimize", collection_name)
        return result

    async def close(self, **kwargs: Any) -> None:
        """Close the engine (it flushes its shards) and wait for its process to exit; kill it if it does not."""
        with self._starting:
            if self._closed:
                return
            self._closed = True
        worker = self._worker
        grace = 10.0
        if not worker.dead:
            try:
                closed = await self._submit(worker, CLOSE, (), {})
                await asyncio.wait_for(closed, timeout=self.close_timeout)
            except (VectorStoreError, TimeoutError) as exc:
                log.warning("the embedded engine's process did not close cleanly: %s", exc or "no reply in time")
                grace = 0.0  # it does not answer: waiting longer would not help
        await asyncio.to_thread(worker.stop, grace)
