"""The embedded engine's optimizer, without stopping searches: a copy of the shard is optimized in a process of its
own, then caught up and swapped in.

qdrant-edge's `optimize()` (merge segments, vacuum deleted points, build the HNSW index) holds the GIL of its
process for its whole run: a minute at 100k points. Run in place, every search waits for it. Here instead:

1. under the collection's write lock: flush, copy the shard folder beside it, start journaling writes;
2. a child process at low CPU priority (`python -m bookchat.retrieval.stores.edge_optimizer <copy>`) loads the
   copy, optimizes it and closes it, while searches and writes go on against the live shard;
3. the copy is loaded here and, under the write lock, replays the journal, becomes the collection's shard in its
   `collection.json` (one atomic rename), and the old shard closes and is deleted.

A crash at any step leaves `collection.json` naming a complete shard; a copy it does not name is deleted on the
next open (`EdgeFolder`). While it runs, the copy takes the shard's size again on disk and the child the memory
of the engine's optimizer. `AutoOptimizer` runs it when a collection has had enough writes and then a pause.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from bookchat.retrieval.stores import helper_process
from bookchat.retrieval.stores.edge_collection import OpenCollection
from bookchat.retrieval.stores.edge_folder import EdgeFolder
from bookchat.retrieval.stores.errors import VectorStoreError

log = logging.getLogger(__name__)

# The child's exit codes when the shard had nothing to optimize, and when its parent was gone before it began.
NOTHING_TO_DO = 3
PARENT_GONE = 4
# Seconds without a write before the automatic optimizer starts (an ingestion writes a batch every second or two),
# how often it looks, and how long it leaves a collection alone after a failed attempt.
QUIET_S = 5.0
POLL_S = 1.0
RETRY_AFTER_S = 300.0


class ShardOptimizer:
    """Optimizes collections of one folder, one copy at a time per collection; `close()` stops the children."""

    def __init__(
        self, folder: EdgeFolder, edge_config: Callable[[dict[str, Any]], qe.EdgeConfig], lock: threading.RLock
    ) -> None:
        self.folder = folder
        self.edge_config = edge_config
        self.lock = lock  # the client's lock on its catalog: held for the swap, so a deletion cannot cross it
        self._children: set[subprocess.Popen[bytes]] = set()
        self._children_lock = threading.Lock()
        self._closed = False

    def optimize(self, collection: OpenCollection, *, wait: bool = True) -> bool:
        """Optimize `collection` (waiting for one already running, unless not `wait`); True when its shard was
        replaced by an optimized one, False when there was nothing to do (or, not waiting, one was running)."""
        if not collection.optimizing.acquire(blocking=wait):
            return False
        try:
            return self._optimize(collection)
        finally:
            collection.optimizing.release()

    def _optimize(self, collection: OpenCollection) -> bool:
        folder = self.folder.collection_dir(collection.name)
        copy = folder / f"shard-{uuid.uuid4().hex[:8]}"
        swapped = False
        try:
            with collection.write_lock:
                if collection.retired:
                    return False
                with collection.use() as shard:
                    shard.flush()
                shutil.copytree(folder / collection.shard_name, copy)
                collection.journal = []
                written_before = collection.written
                replacing_before = collection.replacing_writes
            try:
                changed = self._run_child(copy)
            except VectorStoreError:
                # Stopped by `close`, or the collection was deleted meanwhile (a rebuild's old one) with its folder.
                if self._closed or collection.retired:
                    return False
                raise
            if not changed:
                self._record_optimized(collection, written_before)
                return False
            fresh = qe.EdgeShard.load(str(copy), self.edge_config(collection.config))
            try:
                previous_name = collection.shard_name
                with self.lock, collection.write_lock:
                    if collection.retired:  # deleted meanwhile: nothing to swap into
                        fresh.close()
                        return False
                    for operation in collection.journal:
                        fresh.update(operation)
                    optimized = {
                        **collection.config,
                        "shard": copy.name,
                        "optimized_points": fresh.info().points_count,
                        # The optimizer dropped every deleted point (see `edge_config`); what was replayed since
                        # may have deleted some again.
                        "idf_exact": collection.replacing_writes == replacing_before,
                    }
                    collection.save_config(optimized)
                    collection.journal = None
                    collection.written -= written_before
                    previous = collection.replace_shard(fresh)
                    swapped = True
            except BaseException:
                fresh.close()
                raise
            previous.close()
            shutil.rmtree(folder / previous_name, ignore_errors=True)
            log.info("collection optimized", extra={"collection": collection.name, "shard": copy.name})
            return True
        finally:
            with collection.write_lock:
                collection.journal = None
            if not swapped:
                shutil.rmtree(copy, ignore_errors=True)

    def _record_optimized(self, collection: OpenCollection, written_before: int) -> None:
        """The shard had nothing to optimize: so the automatic optimizer does not copy it again and again."""
        with self.lock, collection.write_lock:
            if collection.retired:
                return
            with collection.use() as shard:
                points = shard.info().points_count
            collection.save_config({**collection.config, "optimized_points": points})
            collection.written -= written_before

    def _run_child(self, copy: Path) -> bool:
        """Optimize the shard in `copy` in a child process; True when it changed something."""
        with self._children_lock:
            if self._closed:
                raise VectorStoreError("the embedded Qdrant client is closed")
            child = subprocess.Popen(  # noqa: S603  # this interpreter, this package, our own folder
                helper_process.module_command("bookchat.retrieval.stores.edge_optimizer", str(copy), str(os.getpid())),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=helper_process.environment(),
            )
            self._children.add(child)
        try:
            code = child.wait()
        finally:
            with self._children_lock:
                self._children.discard(child)
        if code == NOTHING_TO_DO:
            return False
        if code != 0:
            raise VectorStoreError(f"the embedded engine's optimizer stopped (exit code {code}); nothing changed")
        return True

    def close(self) -> None:
        """Stop the optimizations running (their copies are dropped; the shards they copied are unchanged)."""
        with self._children_lock:
            self._closed = True
            children = list(self._children)
        for child in children:
            with contextlib.suppress(OSError):
                child.kill()


class AutoOptimizer:
    """A thread that optimizes a collection once `after` points were written to it and then none for QUIET_S."""

    def __init__(
        self, optimizer: ShardOptimizer, collections: Callable[[], list[OpenCollection]], *, after: int
    ) -> None:
        self.optimizer = optimizer
        self.collections = collections
        self.after = after
        self._failed_at: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="qdrant-edge-optimizer", daemon=True)
        self._thread.start()

    def due(self, collection: OpenCollection, now: float) -> bool:
        failed = self._failed_at.get(collection.name)
        return (
            not collection.retired
            and collection.written >= self.after
            and now - collection.last_write >= QUIET_S
            and (failed is None or now - failed >= RETRY_AFTER_S)
        )

    def _watch(self) -> None:
        while not self._stop.wait(POLL_S):
            for collection in self.collections():
                if self._stop.is_set() or not self.due(collection, time.monotonic()):
                    continue
                try:
                    self.optimizer.optimize(collection, wait=False)
                except Exception:
                    if not self._stop.is_set():
                        self._failed_at[collection.name] = time.monotonic()
                        log.exception("the background optimization of collection %s failed", collection.name)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def main(argv: list[str] | None = None) -> int:
    """Optimize the shard in the folder `argv[0]` for the process `argv[1]`; exit 0 when it changed, NOTHING_TO_DO
    when it did not, PARENT_GONE when that process had exited before it began."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s (optimizer): %(message)s")
    # A killed engine process would otherwise leave it running for minutes, on a copy nobody will swap in.
    if not helper_process.dies_with_parent(int(argv[1])):
        return PARENT_GONE
    # Below the service's own work: the optimizer takes what the searches and the embedder leave.
    os.nice(10)
    shard = qe.EdgeShard.load(argv[0])
    changed = shard.optimize()
    shard.flush()
    shard.close()
    return 0 if changed else NOTHING_TO_DO


if __name__ == "__main__":
    sys.exit(main())
