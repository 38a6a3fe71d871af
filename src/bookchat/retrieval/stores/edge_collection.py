"""One open collection of the embedded engine: its shard, its recorded config, and who is using it right now.

Reads run side by side; writes go one at a time (`apply`), and while the optimizer rebuilds a copy of the shard
they are also journaled, so that the copy can catch up before it replaces the shard (`replace_shard`). A call in
flight keeps the shard it started on; the old shard closes when the last of them ends.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import qdrant_edge as qe

from bookchat.retrieval.stores import edge_convert as convert
from bookchat.retrieval.stores.edge_folder import shard_name


class OpenCollection:
    """An open shard and what bookchat recorded about it (`collection.json`)."""

    def __init__(
        self, name: str, shard: qe.EdgeShard, config: dict[str, Any], save_config: Callable[[dict[str, Any]], None]
    ) -> None:
        self.name = name
        self.shard = shard
        self.config = config
        self._save_config = save_config  # writes `collection.json`
        # Payload keys kept folded in one string (`edge_payload`): recorded when the collection was created.
        self.stored_keys = frozenset(config.get("stored_keys", ()))
        self.translator = convert.QueryTranslator(
            {vector for vector, params in config.get("sparse_vectors", {}).items() if params.get("modifier") == "idf"},
            self.stored_keys,
            idf_exact=lambda: self.idf_exact,
        )
        # Writes that deleted or replaced points, or may have: the optimizer's copy is exact only if none came
        # while it ran.
        self.replacing_writes = 0
        # Points written since the shard was last optimized, and when the last write was (monotonic seconds):
        # what the automatic optimizer watches. Set from the shard's count when the client opens it.
        self.written = 0
        self.last_write = 0.0
        self.write_lock = threading.Lock()
        self.optimizing = threading.Lock()  # one optimization of this collection at a time
        self.journal: list[qe.UpdateOperation] | None = None
        self._generation = 0
        self._users: Counter[int] = Counter()
        self._retired = False
        self._condition = threading.Condition()

    @property
    def shard_name(self) -> str:
        return shard_name(self.config)

    @property
    def idf_exact(self) -> bool:
        """True while the shard holds no deleted point: the engine's IDF statistics, which count deleted points
        until a vacuum drops them, are then exact without asking for live points only (a few ms a query)."""
        return bool(self.config.get("idf_exact", False))

    @property
    def retired(self) -> bool:
        return self._retired

    @contextlib.contextmanager
    def use(self) -> Iterator[qe.EdgeShard]:
        """The shard, kept open while the block runs (a reader's view; writers go through `apply`)."""
        with self._condition:
            if self._retired:
                raise ValueError(f"Collection {self.name} not found")
            generation, shard = self._generation, self.shard
            self._users[generation] += 1
        try:
            yield shard
        finally:
            with self._condition:
                self._users[generation] -= 1
                self._condition.notify_all()

    def apply(
        self,
        operation: qe.UpdateOperation,
        *,
        points: int = 0,
        replaces: Callable[[qe.EdgeShard], bool] | None = None,
    ) -> None:
        """Apply one write. `points`: how many points it writes, for the automatic optimizer. `replaces`, for a
        write that can delete or replace points: whether this one does (asked only while the IDF is exact; the
        collection stops being exact, on disk first, before such a write is applied)."""
        with self.write_lock, self.use() as shard:
            if replaces is not None and (not self.idf_exact or replaces(shard)):
                self.replacing_writes += 1
                if self.idf_exact:
                    self.save_config({**self.config, "idf_exact": False})
            shard.update(operation)
            if self.journal is not None:
                self.journal.append(operation)
            self.written += points
            self.last_write = time.monotonic()

    def save_config(self, config: dict[str, Any]) -> None:
        """Record `config` in `collection.json`, then use it. Call it holding `write_lock`."""
        self._save_config(config)
        self.config = config

    def replace_shard(self, shard: qe.EdgeShard) -> qe.EdgeShard:
        """Serve `shard` from now on; return the previous one once no call uses it any more (for the caller
        to close). Call it holding `write_lock`, after the new shard has caught up with the journal."""
        with self._condition:
            previous, generation = self.shard, self._generation
            self.shard, self._generation = shard, generation + 1
            while self._users[generation]:
                self._condition.wait()
            del self._users[generation]
        return previous

    def retire(self) -> None:
        """Refuse new calls, wait for the running ones, then close the shard."""
        with self._condition:
            self._retired = True
            while sum(self._users.values()):
                self._condition.wait()
        self.shard.close()
