"""The embedded engine's folder: its lock, its catalog (aliases, a rebuild still owed), one shard per collection.

qdrant-edge stores one shard (one collection, in Qdrant's terms) per folder and knows nothing of collections,
aliases or metadata. This module adds those, in files beside the shards:

    <root>/bookchat-edge.json             the catalog: format, aliases, a rebuild owed after a migration
    <root>/.lock                          held (flock) by the one process that has the folder open
    <root>/collections/<name>/collection.json   the collection's vectors and metadata (written last)
    <root>/collections/<name>/shard/      the qdrant-edge shard (`shard-<hex>/` once optimized: the one
                                          `collection.json` names, see `edge_optimizer`)

Every file is replaced by an atomic rename, so a crash leaves the old version or the new one. A collection exists
when its `collection.json` does; a folder without one is a creation that crashed, and a shard folder it does not
name an optimization that did not finish (or the shard one replaced): both are removed on the next open.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import IO, Any

from bookchat.retrieval.stores.errors import FolderInUse, VectorStoreError

log = logging.getLogger(__name__)

CATALOG = "bookchat-edge.json"
# How long an opener waits for an orphaned engine process (its bookchat was killed) to close the folder and exit.
ORPHAN_WAIT_S = 30.0
# A holder writes who it is just after taking the lock; until then an opener cannot tell an orphan from a live owner.
HOLDER_NOTE_WAIT_S = 1.0
FORMAT = 1
# Collection names become folder names: no separators, no dot-files.
NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}$")
# The shard folder of a collection whose `collection.json` names none (never optimized since it was created).
FIRST_SHARD = "shard"


def shard_name(config: dict[str, Any]) -> str:
    """The folder, inside its collection's, of the shard a collection's config names."""
    return str(config.get("shard", FIRST_SHARD))


def is_legacy_folder(root: Path) -> bool:
    """True when `root` holds qdrant-client's local mode (its `meta.json`) and not the embedded engine."""
    return (root / "meta.json").is_file() and not (root / CATALOG).is_file()


def is_edge_folder(root: Path) -> bool:
    return (root / CATALOG).is_file()


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` atomically and durably: a temporary file, fsync, rename, fsync of the folder."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise VectorStoreError(f"{path} is not a bookchat index file; move it away or rebuild the index")
    return data


def _holder(handle: IO[str]) -> tuple[int, int | None] | None:
    """Who the lock's note says holds the folder: its pid, and the parent it exits with (an engine process)."""
    handle.seek(0)
    fields = handle.read().split()
    if not 1 <= len(fields) <= 2 or not all(field.isdigit() for field in fields):
        return None
    return int(fields[0]), int(fields[1]) if len(fields) == 2 else None


def _is_orphaned_engine(pid: int, parent: int | None) -> bool:
    """True when `pid` is an engine process whose parent has exited (it closes the folder and exits too, soon)."""
    if parent is None:
        return False
    try:
        # /proc/<pid>/stat: "pid (name) state ppid ..."; the name may hold spaces, so split after its ")".
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        current_parent = int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return False
    return current_parent != parent


class EdgeFolder:
    """One embedded-engine folder, opened (and locked) by this process."""

    def __init__(self, root: Path, *, exits_with: int | None = None) -> None:
        self.root = root
        # The parent process this one exits with (the engine's own process, see `edge_worker`), or None.
        self.exits_with = exits_with
        self.collections_dir = root / "collections"
        self._lock_file: IO[str] | None = None

    def open(self, *, pending_rebuild: dict[str, Any] | None = None) -> dict[str, Any]:
        """Lock the folder, creating it (with `pending_rebuild` recorded) when new; return its catalog."""
        if is_legacy_folder(self.root):
            raise VectorStoreError(
                f"{self.root} holds an index of qdrant-client's local mode, not of the embedded engine: start "
                "`bookchat serve` or run `bookchat ingest PATH --reindex` to rebuild it into the embedded engine, "
                "or set BOOKCHAT_VECTOR_STORE=local-legacy to keep using it"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock()
        self.collections_dir.mkdir(exist_ok=True)
        if not is_edge_folder(self.root):
            write_json(self.root / CATALOG, {"format": FORMAT, "aliases": {}, "pending_rebuild": pending_rebuild})
        catalog = read_json(self.root / CATALOG)
        if catalog.get("format") != FORMAT:
            raise VectorStoreError(
                f"{self.root} was written by another version of bookchat (format {catalog.get('format')!r}); "
                "upgrade bookchat, or move the folder away and rebuild with `bookchat ingest PATH --reindex`"
            )
        self._drop_half_created()
        return catalog

    def _lock(self) -> None:
        handle = open(self.root / ".lock", "a+", encoding="utf-8")  # noqa: SIM115 - held until close()
        started = time.monotonic()
        waited_since: float | None = None
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                holder = _holder(handle)
                now = time.monotonic()
                # An engine process whose bookchat is gone is closing the folder and exiting: wait for it.
                if waited_since is None and holder is not None and _is_orphaned_engine(*holder):
                    log.info("waiting for the stopped bookchat's engine process %s to release %s", holder[0], self.root)
                    waited_since = now
                undecided = waited_since is None and now - started <= HOLDER_NOTE_WAIT_S
                if not undecided and (waited_since is None or now - waited_since > ORPHAN_WAIT_S):
                    handle.close()
                    raise FolderInUse(self._in_use_message(holder, orphan=waited_since is not None)) from exc
                time.sleep(0.05)
        # Who holds it, for the next opener: this process, and the parent it exits with (an engine process).
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {self.exits_with or ''}".strip() + "\n")
        handle.flush()
        self._lock_file = handle

    def _in_use_message(self, holder: tuple[int, int | None] | None, *, orphan: bool) -> str:
        who = f" (pid {holder[0]})" if holder else ""
        if orphan:
            return (
                f"the embedded Qdrant folder {self.root} is still held, {ORPHAN_WAIT_S:.0f} s on, by the engine "
                f"process{who} of a stopped bookchat; if it does not exit, stop it, then start again"
            )
        return (
            f"the embedded Qdrant folder {self.root} is in use by another bookchat process{who}: one process per "
            "folder. Stop the other one, give this one its own BOOKCHAT_QDRANT_PATH, or set BOOKCHAT_QDRANT_URL to "
            "a Qdrant server so several processes can share one index"
        )

    def _drop_half_created(self) -> None:
        for folder in self.collections_dir.iterdir():
            if not folder.is_dir():
                continue
            if not (folder / "collection.json").is_file():
                shutil.rmtree(folder, ignore_errors=True)
                continue
            live = shard_name(read_json(folder / "collection.json"))
            for shard in folder.iterdir():
                if shard.is_dir() and shard.name.startswith(FIRST_SHARD) and shard.name != live:
                    shutil.rmtree(shard, ignore_errors=True)

    def save_catalog(self, catalog: dict[str, Any]) -> None:
        write_json(self.root / CATALOG, catalog)

    def collection_names(self) -> list[str]:
        return sorted(
            folder.name
            for folder in self.collections_dir.iterdir()
            if folder.is_dir() and (folder / "collection.json").is_file() and NAME.match(folder.name)
        )

    def collection_dir(self, name: str) -> Path:
        if not NAME.match(name):
            raise ValueError(f"invalid collection name {name!r}: letters, digits, '_', '-' and '.' only")
        return self.collections_dir / name

    def shard_dir(self, name: str, config: dict[str, Any]) -> Path:
        return self.collection_dir(name) / shard_name(config)

    def read_config(self, name: str) -> dict[str, Any]:
        return read_json(self.collection_dir(name) / "collection.json")

    def write_config(self, name: str, config: dict[str, Any]) -> None:
        write_json(self.collection_dir(name) / "collection.json", config)

    def remove_collection(self, name: str) -> None:
        """Delete a collection's folder: renamed away first (one atomic step), then removed."""
        folder = self.collection_dir(name)
        if not folder.exists():
            return
        doomed = self.collections_dir / f".deleted-{name}-{uuid.uuid4().hex[:8]}"
        os.replace(folder, doomed)
        _sync_folder(self.collections_dir)
        shutil.rmtree(doomed, ignore_errors=True)

    def close(self) -> None:
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None
