"""SQL for the `documents` and `ingest_runs` tables (asyncpg, parameterised)."""

from __future__ import annotations

import json
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

_COLUMNS = (
    "id, collection, source_path, title, url, content_hash, chunk_count, embedding_model, generation, needs_cleanup, "
    "created_at, updated_at"
)


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
    generation: int
    needs_cleanup: bool
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
    """The values an ingestion writes for one document once its chunks of `generation` are all indexed."""

    id: UUID
    source_path: str
    title: str
    url: str | None
    content_hash: str
    chunk_count: int
    embedding_model: str
    generation: int
    source: bytes
    source_options: dict[str, str]


@dataclass(frozen=True)
class StoredSource:
    """A document's bytes as ingested and what was given with them, for rebuilding its chunks."""

    id: UUID
    source_path: str
    content_hash: str
    generation: int
    source: bytes
    options: dict[str, str]


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


async def begin_writes(conn: Conn, collection: str, writes: Sequence[DocumentWrite]) -> None:
    """Before any point of a write lands: new documents get a pending row, existing ones keep theirs (still
    serving the previous version) and are marked as needing a clean-up of other generations."""
    if not writes:
        return
    async with conn.transaction():
        await conn.executemany(
            """
            INSERT INTO documents (id, collection, source_path, title, url, content_hash, chunk_count,
                                   embedding_model, generation, needs_cleanup)
            VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, true)
            ON CONFLICT (id) DO UPDATE SET needs_cleanup = true
            """,
            [
                (w.id, collection, w.source_path, w.title, w.url, PENDING_HASH, w.embedding_model, w.generation)
                for w in writes
            ],
        )


async def finish_writes(conn: Conn, collection: str, writes: Sequence[DocumentWrite]) -> None:
    """After every point of each write's generation is indexed: the rows switch to the new version at once."""
    if not writes:
        return
    async with conn.transaction():
        await conn.executemany(
            """
            UPDATE documents SET title = $3, url = $4, content_hash = $5, chunk_count = $6, embedding_model = $7,
                   generation = $8, source = $9, source_options = $10::jsonb, updated_at = now()
            WHERE collection = $1 AND id = $2
            """,
            [
                (
                    collection,
                    w.id,
                    w.title,
                    w.url,
                    w.content_hash,
                    w.chunk_count,
                    w.embedding_model,
                    w.generation,
                    w.source,
                    json.dumps(w.source_options),
                )
                for w in writes
            ],
        )


async def mark_clean(conn: Conn, collection: str, document_ids: Sequence[UUID]) -> None:
    """The index holds no point of these documents but those of their row's generation."""
    if document_ids:
        await conn.execute(
            "UPDATE documents SET needs_cleanup = false WHERE collection = $1 AND id = ANY($2::uuid[])",
            collection,
            list(document_ids),
        )


async def fetch_sources(conn: Conn, collection: str, document_ids: Sequence[UUID]) -> dict[UUID, StoredSource]:
    """The stored bytes of these documents (rows ingested before sources were kept have none and are left out)."""
    records = await conn.fetch(
        "SELECT id, source_path, content_hash, generation, source, source_options FROM documents "
        "WHERE collection = $1 AND id = ANY($2::uuid[]) AND source IS NOT NULL",
        collection,
        list(document_ids),
    )
    return {
        record["id"]: StoredSource(
            record["id"],
            record["source_path"],
            record["content_hash"],
            record["generation"],
            bytes(record["source"]),
            json.loads(record["source_options"]) if isinstance(record["source_options"], str) else {},
        )
        for record in records
    }


async def count_without_source(conn: Conn, collection: str) -> int:
    """Indexed documents whose bytes are not stored (ingested before sources were kept)."""
    count = await conn.fetchval(
        "SELECT count(*) FROM documents WHERE collection = $1 AND source IS NULL AND content_hash <> $2",
        collection,
        PENDING_HASH,
    )
    return int(count or 0)


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
