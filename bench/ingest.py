"""Ingestion benchmark: `bookchat ingest BOOK` cold and again unchanged, beside the bare embedding of its chunks.

The baseline is the floor of a cold ingest: the same chunks embedded by the same model, with no loading, chunking,
BM25, Qdrant or PostgreSQL. Each ingest runs as its own `bookchat ingest` process, as an author would run it, so
the figures include start-up. Prints a table and writes JSON to bench/results/.

    BOOKCHAT_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/ingest.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from qdrant_client import AsyncQdrantClient
from rich.console import Console
from rich.table import Table

from bookchat.config import Settings
from bookchat.retrieval.embeddings import create_embedder
from bookchat.retrieval.evaluation import machine_description
from bookchat.retrieval.search import indexed_text, passage_from_payload
from record import results_path, write_results

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BOOK = ROOT.parent / "shared" / "data" / "book-physical-ai-amnarehmani"


def timed_ingest(book: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "bookchat", "ingest", str(book)],
        env={**env, "COLUMNS": "400"},  # the summary on one line: it is read back as the last line of the output
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - started, result.stdout.strip().splitlines()[-1]


async def embedding_floor(data_dir: Path, settings: Settings) -> tuple[float, int]:
    """Seconds to embed, alone, exactly the texts the cold ingest embedded (read back from its collection)."""
    client = AsyncQdrantClient(path=str(data_dir / "qdrant"))
    texts: list[str] = []
    offset = None
    while True:
        points, offset = await client.scroll(settings.collection, limit=1000, offset=offset, with_payload=True)
        for point in points:
            texts.append(indexed_text(passage_from_payload(str(point.id), point.payload or {})))
        if offset is None:
            break
    await client.close()
    embedder = create_embedder(settings)
    started = time.perf_counter()
    await embedder.embed_documents(texts)
    return time.perf_counter() - started, len(texts)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--book", type=Path, default=DEFAULT_BOOK)
    args = parser.parse_args()
    server = os.environ.get("BOOKCHAT_TEST_DATABASE_URL")
    if not server:
        sys.exit("set BOOKCHAT_TEST_DATABASE_URL to a PostgreSQL server the benchmark may create a database on")
    name = f"bookchat_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            env = {key: value for key, value in os.environ.items() if not key.startswith("BOOKCHAT_")}
            env["BOOKCHAT_DATABASE_URL"] = urlunsplit(urlsplit(server)._replace(path="/" + name))
            env["BOOKCHAT_DATA_DIR"] = data_dir
            cold, cold_summary = timed_ingest(args.book, env)
            warm, warm_summary = timed_ingest(args.book, env)
            # The cold run's data folder: the floor loads the model that run converted instead of converting it again.
            floor, chunks = await embedding_floor(Path(data_dir), Settings(_env_file=None, data_dir=Path(data_dir)))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    rows = [
        ("bookchat ingest, cold (process)", cold, cold_summary),
        ("bookchat ingest, nothing changed (process)", warm, warm_summary),
        ("baseline: embedding the same chunks only", floor, f"{chunks} chunks"),
    ]
    table = Table(title=f"Ingesting {args.book.name}")
    for column in ("run", "seconds", "result"):
        table.add_column(column)
    for label, seconds, summary in rows:
        table.add_row(label, f"{seconds:.1f}", summary)
    Console().print(table)
    results = {
        "book": args.book.name,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_description(),
        "cold_seconds": round(cold, 2),
        "unchanged_seconds": round(warm, 2),
        "embedding_floor_seconds": round(floor, 2),
        "chunks": chunks,
        "cold_summary": cold_summary,
        "unchanged_summary": warm_summary,
    }
    print(f"written to {write_results(results, results_path('ingest'))}")


if __name__ == "__main__":
    asyncio.run(main())
