"""`bookchat ingest` killed with SIGKILL at random points of re-ingesting the shared textbook: between kills no row
claims chunks the index lacks and search keeps answering; a clean rerun then leaves rows and points in exact
agreement — no duplicate, no orphan, no missing chunk."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from qdrant_client import models

from bookchat.config import Settings
from bookchat.documents import repository as repo
from bookchat.runtime.resources import open_resources
from tests.conftest import SHARED_DATA
from tests.faults.conftest import report

BOOK = SHARED_DATA / "book-physical-ai-amnarehmani"
KILLS = 5
# Each run chunks differently, so every document is rewritten and a kill lands in the middle of real writes.
CHUNK_SIZES = (240, 200, 232, 184, 224, 216)
SEED = int(os.environ.get("BOOKCHAT_FAULT_SEED", "20261202"))


def ingest_process(settings: Settings, chunk_tokens: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BOOKCHAT_DATABASE_URL": settings.database_url.get_secret_value() if settings.database_url else "",
        "BOOKCHAT_DATA_DIR": str(settings.data_dir),
        "BOOKCHAT_COLLECTION": settings.collection,
        "BOOKCHAT_CHUNK_TOKENS": str(chunk_tokens),
        "BOOKCHAT_LLM_PROVIDER": "none",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "bookchat", "ingest", str(BOOK)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def index_state(settings: Settings) -> tuple[dict[str, repo.DocumentRow], dict[str, list[tuple[int, int]]], int]:
    """Rows, each document's (generation, chunk index) points, and how many hits a reader's question gets."""
    async with AsyncExitStack() as stack:
        resources = await open_resources(settings, stack, rate_limits=False)
        async with resources.database.pool.acquire() as conn:
            rows = await repo.fetch_all(conn, settings.collection)
        store = resources.store
        points: dict[str, list[tuple[int, int]]] = {}
        offset: models.ExtendedPointId | None = None
        while True:
            batch, offset = await store.run(
                store.client.scroll(store.collection, limit=512, offset=offset, with_payload=True)
            )
            for point in batch:
                payload: dict[str, Any] = point.payload or {}
                points.setdefault(payload["document_id"], []).append(
                    (int(payload.get("generation") or 0), int(payload["chunk_index"]))
                )
            if offset is None:
                break
        hits = await resources.retriever.search("How does a ROS 2 node publish messages on a topic?", limit=5)
    return rows, points, len(hits)


async def test_ingest_killed_at_random_points_loses_nothing(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(collection=f"kill_{os.getpid()}_{int(time.time())}")
    chance = random.Random(SEED)
    first = ingest_process(settings, CHUNK_SIZES[0])
    assert first.wait(300) == 0, first.stdout.read().decode() if first.stdout else ""
    rows, _, hits = await index_state(settings)
    assert len(rows) == 90
    assert hits == 5

    killed_after: list[float] = []
    for run in range(1, KILLS + 1):
        process = ingest_process(settings, CHUNK_SIZES[run])
        delay = chance.uniform(1.0, 9.0)
        try:
            process.wait(delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait(30)
            killed_after.append(round(delay, 1))
        rows, points, hits = await index_state(settings)
        # The row never claims what the index lacks: a ready row's generation is complete.
        for row in rows.values():
            if row.status == "ready":
                mine = sorted(p for p in points.get(str(row.id), []) if p[0] == row.generation)
                assert mine == [(row.generation, i) for i in range(row.chunk_count)], (run, row.source_path)
        assert hits == 5, f"search stopped answering after kill {run}"

    final = ingest_process(settings, CHUNK_SIZES[-1])
    assert final.wait(300) == 0, final.stdout.read().decode() if final.stdout else ""
    rows, points, hits = await index_state(settings)
    assert len(rows) == 90
    duplicates = orphans = missing = 0
    for row in rows.values():
        assert row.status == "ready"
        assert not row.needs_cleanup
        mine = points.pop(str(row.id), [])
        expected = {(row.generation, i) for i in range(row.chunk_count)}
        duplicates += len(mine) - len(set(mine)) + len(set(mine) - expected)
        missing += len(expected - set(mine))
    orphans = sum(len(chunks) for chunks in points.values())
    assert (duplicates, orphans, missing) == (0, 0, 0)
    assert hits == 5
    report(
        "ingest-sigkill",
        seed=SEED,
        kills=len(killed_after),
        killed_after_seconds=killed_after,
        duplicates=duplicates,
        orphans=orphans,
        missing=missing,
        documents=len(rows),
    )


def test_the_textbook_is_there() -> None:
    assert (BOOK / "module-1").is_dir(), f"the shared textbook is missing at {BOOK}"
