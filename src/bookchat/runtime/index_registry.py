"""Which vector store holds a collection's index, recorded in PostgreSQL, so replicas cannot silently diverge."""

from __future__ import annotations

import logging

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from bookchat.retrieval.store import VectorStore, VectorStoreError

log = logging.getLogger(__name__)

Conn = asyncpg.Connection | PoolConnectionProxy


class ForeignVectorStore(VectorStoreError):
    """The database records another vector store as the holder of this collection's index."""


async def claim_index(conn: Conn, store: VectorStore) -> None:
    """Record `store` as the holder of its collection's index when none is recorded; raise ForeignVectorStore
    when another one is.

    Two replicas that share PostgreSQL but each keep a local Qdrant folder would otherwise answer from two
    indexes that drift apart with every upload. One server on a database of its own claims the index on its
    first start and finds its own id on every later one.
    """
    index_id = await store.index_id()
    location = store.location
    recorded = await conn.fetchrow(
        "INSERT INTO vector_indexes (collection, index_id, location) VALUES ($1, $2, $3) "
        "ON CONFLICT (collection) DO UPDATE SET collection = EXCLUDED.collection "
        "RETURNING index_id, location",
        store.collection,
        index_id,
        location[:2000],
    )
    assert recorded is not None
    if recorded["index_id"] != index_id and recorded["location"] == location:
        # Same place, another build: the folder or collection was wiped and created afresh, empty.
        raise ForeignVectorStore(
            f"the index of collection {store.collection!r} at {location} is not the one this database recorded "
            f"(index {recorded['index_id']}; it was wiped or recreated since): rebuild it from the database with "
            "`bookchat ingest PATH --reindex`"
        )
    if recorded["index_id"] != index_id:
        raise ForeignVectorStore(
            f"collection {store.collection!r} of this database is indexed in another vector store "
            f"({recorded['location']}, index {recorded['index_id']}), not in this process's ({location}, index "
            f"{index_id}): the two would drift apart. Point every replica at one Qdrant server "
            "(BOOKCHAT_QDRANT_URL), or make this one the index with `bookchat ingest PATH --reindex`"
        )


async def record_index(conn: Conn, store: VectorStore) -> None:
    """Record `store` as the holder of its collection's index, whatever was recorded (after a rebuild)."""
    await conn.execute(
        "INSERT INTO vector_indexes (collection, index_id, location) VALUES ($1, $2, $3) "
        "ON CONFLICT (collection) DO UPDATE SET index_id = EXCLUDED.index_id, location = EXCLUDED.location, "
        "updated_at = now()",
        store.collection,
        await store.index_id(),
        store.location[:2000],
    )
    log.info("vector index recorded", extra={"collection": store.collection, "location": store.location})
