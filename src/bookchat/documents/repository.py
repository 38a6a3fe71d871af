"""SQL for the `documents` and `ingest_runs` tables and the per-corpus ingestion lock (asyncpg, parameterised)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# The content hash of a row whose chunks are being (re)written: it never equals a real hash, so a run that
# crashes mid-way leaves rows the next run re-ingests, and which prune can still find.
PENDING_HASH = "pending"

# A plain connection or the pool's proxy of one: both speak the same API.
Conn = asyncpg.Connection | PoolConnectionProxy

_COLUMNS = "id, collection, source_path, title, url, content_hash, chunk_count, embedding_model, created_at, updated_at"


@dataclass(frozen=True)
class DocumentRow:
    """One row of `documents`."""

    id: UUID
    collection: str
    source_path: str
    title: str
    url: str | None
    content_hash: str
    chunk_count: int
    embedding_model: str
    created_at: datetime
    updated_at: datetime

    @property
    def status(self) -> Literal["ready", "pending"]:
        return "pending" if self.content_hash == PENDING_HASH else "ready"

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> DocumentRow:
        return cls(**dict(record))


@dataclass(frozen=True)
class DocumentWrite:
    """The values an ingestion writes for one document."""

    id: UUID
    source_path: str
    title: str
    url: str | None
    content_hash: str
    chunk_count: int
    embedding_model: str


def ingest_lock_key(collection: str) -> int:
    """The advisory-lock key of a corpus: 64 bits of SHA-256, so collections never share a lock by accident."""
    digest = hashlib.sha256(f"bookchat:ingest:{collection}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def try_lock(conn: Conn, key: int) -> bool:
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))


async def lock(conn: Conn, key: int) -> None:
    await conn.execute("SELECT pg_advisory_lock($1)", key)


async def lock_within(conn: Conn, key: int, seconds: float) -> bool:
    """Try for up to `seconds` to take the lock (for HTTP requests, which should not hang on a long ingestion)."""
    deadline = time.monotonic() + seconds
    while True:
        if await try_lock(conn, key):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.1)


async def unlock(conn: Conn, key: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", key)


async def fetch_all(conn: Conn, collection: str) -> dict[str, DocumentRow]:
    """Every document of a collection by source path."""
    records = await conn.fetch(f"SELECT {_COLUMNS} FROM documents WHERE collection = $1", collection)  # noqa: S608
    return {record["source_path"]: DocumentRow.from_record(record) for record in records}


async def get(conn: Conn, collection: str, document_id: UUID) -> DocumentRow | None:
    record = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM documents WHERE collection = $1 AND id = $2",  # noqa: S608
        collection,
        document_id,
    )
    return DocumentRow.from_record(record) if record is not None else None


async def page(
    conn: Conn,
    collection: str,
    *,
    limit: int,
    after: tuple[str, UUID] | None = None,
    prefix: str | None = None,
) -> list[DocumentRow]:
    """Up to `limit` documents ordered by (source_path, id), after the keyset `after`, under `prefix`."""
    args: list[Any] = [collection, limit]
    where = ["collection = $1"]
    if after is not None:
        args += [after[0], after[1]]
        where.append(f"(source_path, id) > (${len(args) - 1}, ${len(args)})")
    if prefix:
        args.append(prefix)
        where.append(f"starts_with(source_path, ${len(args)})")
    records = await conn.fetch(
        f"SELECT {_COLUMNS} FROM documents WHERE {' AND '.join(where)} "  # noqa: S608 - fixed fragments only
        "ORDER BY source_path, id LIMIT $2",
        *args,
    )
    return [DocumentRow.from_record(record) for record in records]


_UPSERT = """
INSERT INTO documents (id, collection, source_path, title, url, content_hash, chunk_count, embedding_model)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (id) DO UPDATE SET
    title = EXCLUDED.title,
    url = EXCLUDED.url,
    content_hash = EXCLUDED.content_hash,
    chunk_count = EXCLUDED.chunk_count,
    embedding_model = EXCLUDED.embedding_model,
    updated_at = now()
"""


async def upsert(conn: Conn, collection: str, rows: Sequence[DocumentWrite]) -> None:
    """Insert or replace rows in one transaction."""
    if not rows:
        return
    async with conn.transaction():
        await conn.executemany(
            _UPSERT,
            [
                (r.id, collection, r.source_path, r.title, r.url, r.content_hash, r.chunk_count, r.embedding_model)
                for r in rows
            ],
        )


async def set_hashes(conn: Conn, collection: str, hashes: Sequence[tuple[UUID, str]]) -> None:
    """Restore content hashes (after a rebuild put the same chunks back)."""
    if not hashes:
        return
    async with conn.transaction():
        await conn.executemany(
            "UPDATE documents SET content_hash = $3 WHERE collection = $1 AND id = $2",
            [(collection, document_id, content_hash) for document_id, content_hash in hashes],
        )


async def mark_all_pending(conn: Conn, collection: str) -> None:
    await conn.execute("UPDATE documents SET content_hash = $2 WHERE collection = $1", collection, PENDING_HASH)


async def delete(conn: Conn, collection: str, document_ids: Sequence[UUID]) -> int:
    if not document_ids:
        return 0
    status = await conn.execute(
        "DELETE FROM documents WHERE collection = $1 AND id = ANY($2::uuid[])", collection, list(document_ids)
    )
    return int(status.split()[-1])


async def start_run(conn: Conn, collection: str) -> UUID:
    run_id: UUID = await conn.fetchval("INSERT INTO ingest_runs (collection) VALUES ($1) RETURNING id", collection)
    return run_id


async def finish_run(
    conn: Conn,
    run_id: UUID,
    *,
    status: Literal["ok", "failed"],
    added: int,
    updated: int,
    unchanged: int,
    removed: int,
    chunks: int,
    error: str | None = None,
) -> None:
    await conn.execute(
        "UPDATE ingest_runs SET status = $2, added = $3, updated = $4, unchanged = $5, removed = $6, "
        "chunks = $7, error = $8, finished_at = now() WHERE id = $1",
        run_id,
        status,
        added,
        updated,
        unchanged,
        removed,
        chunks,
        error[:2000] if error else None,
    )
