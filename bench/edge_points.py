"""Where an upsert's time goes in the embedded engine, with and without stored payload keys: qdrant-edge's point
building, its write, and the whole call through the engine's process.

The figures behind the ≥ 5,000 points/s upsert target (docs/benchmarks.md): book-shaped points from `scale.py`
(384-d dense, BM25 sparse, bookchat's payload with ~1 kB of text), batches of `UPSERT_BATCH`, each figure the
median of `--repeats` runs over the same points. "plain" is the payload as written (before; what a collection
without stored keys holds), "stored keys" the same with `STORED_PAYLOAD_KEYS` folded into one string (now).

    PYTHONPATH=src .venv/bin/python bench/edge_points.py --points 8192 --repeats 5
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import pickle
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import models
from rich.console import Console
from rich.table import Table

from bookchat.retrieval.evaluation import machine_description
from bookchat.retrieval.search import UPSERT_BATCH
from bookchat.retrieval.store import DENSE_VECTOR, PAYLOAD_INDEXES, SPARSE_VECTOR, STORED_PAYLOAD_KEYS
from bookchat.retrieval.stores.edge_client import EdgeQdrantClient
from bookchat.retrieval.stores.edge_convert import PointRow, rows_to_points, to_rows
from bookchat.retrieval.stores.edge_process import EdgeProcessClient
from record import results_path, write_results
from scale import COLLECTION, DIM, batch_points

Engine = EdgeQdrantClient | EdgeProcessClient


def per_point(function: Callable[[], object], points: int, repeats: int) -> float:
    """Median µs per point of `function()` over `repeats` runs."""
    runs = []
    for _ in range(repeats):
        began = time.perf_counter()
        function()
        runs.append(time.perf_counter() - began)
    return statistics.median(runs) / points * 1e6


async def fresh_collection(client: Engine, stored: Sequence[str]) -> None:
    """bookchat's collection (its vectors and payload indexes), keeping `stored` folded."""
    if await client.collection_exists(COLLECTION):
        await client.delete_collection(COLLECTION)
    await client.create_collection(
        COLLECTION,
        vectors_config={DENSE_VECTOR: models.VectorParams(size=DIM, distance=models.Distance.DOT)},
        sparse_vectors_config={SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)},
        stored_payload_keys=stored,
    )
    for field, schema in PAYLOAD_INDEXES:
        await client.create_payload_index(COLLECTION, field, field_schema=schema)


async def upserts_per_point(
    client: Engine, batches: Sequence[Sequence[Any]], stored: Sequence[str], repeats: int, *, rows: bool
) -> float:
    """Median µs per point to write every batch, one call after another, into a fresh collection."""
    runs = []
    for _ in range(repeats):
        await fresh_collection(client, stored)
        began = time.perf_counter()
        for batch in batches:
            if rows:
                assert isinstance(client, EdgeQdrantClient)
                await client.upsert_rows(COLLECTION, batch, folded_for=stored)
            else:
                await client.upsert(COLLECTION, batch)
        runs.append(time.perf_counter() - began)
    return statistics.median(runs) / sum(len(batch) for batch in batches) * 1e6


async def measure(points: int, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(1)
    models_batches = [
        batch_points(rng, start, min(UPSERT_BATCH, points - start)) for start in range(0, points, UPSERT_BATCH)
    ]
    plain_batches = [to_rows(batch) for batch in models_batches]
    stored_batches = [to_rows(batch, STORED_PAYLOAD_KEYS) for batch in models_batches]
    plain = [row for batch in plain_batches for row in batch]
    stored = [row for batch in stored_batches for row in batch]
    bare: list[PointRow] = [(point_id, vectors, None) for point_id, vectors, _ in plain]
    plain_blobs = [pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL) for batch in plain_batches]
    stored_blobs = [pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL) for batch in stored_batches]
    # The inputs stay alive throughout; frozen, the collector leaves them alone, as the engine's process (which
    # holds one batch at a time) would.
    gc.collect()
    gc.freeze()
    figures = {
        "build, vectors only": per_point(lambda: rows_to_points(bare), points, repeats),
        "build, plain payload": per_point(lambda: rows_to_points(plain), points, repeats),
        "build, stored keys": per_point(lambda: rows_to_points(stored), points, repeats),
        "to_rows, plain payload": per_point(lambda: [to_rows(b) for b in models_batches], points, repeats),
        "to_rows, stored keys folded": per_point(
            lambda: [to_rows(b, STORED_PAYLOAD_KEYS) for b in models_batches], points, repeats
        ),
        # Our own bytes, pickled just above.
        "unpickle, plain payload": per_point(lambda: [pickle.loads(b) for b in plain_blobs], points, repeats),  # noqa: S301
        "unpickle, stored keys": per_point(lambda: [pickle.loads(b) for b in stored_blobs], points, repeats),  # noqa: S301
    }
    # Each engine writes the same points twice, plain and with stored keys (already folded for `upsert_rows`).
    engines: list[tuple[str, Callable[[Path], Engine], tuple[list[Any], list[Any]], bool]] = [
        ("build + write on threads", EdgeQdrantClient, (plain_batches, stored_batches), True),
        ("upsert through the engine's process", EdgeProcessClient, (models_batches, models_batches), False),
    ]
    for label, open_engine, (plain_input, stored_input), rows in engines:
        with tempfile.TemporaryDirectory() as folder:
            engine = open_engine(Path(folder) / "edge")
            figures[f"{label}, plain payload"] = await upserts_per_point(engine, plain_input, (), repeats, rows=rows)
            figures[f"{label}, stored keys"] = await upserts_per_point(
                engine, stored_input, STORED_PAYLOAD_KEYS, repeats, rows=rows
            )
            await engine.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="JSON results path.")
    args = parser.parse_args()
    figures = asyncio.run(measure(args.points, args.repeats))
    version = importlib.metadata.version("qdrant-edge-py")
    table = Table(title=f"qdrant-edge {version}: an upsert's phases, {args.points:,} points, median of {args.repeats}")
    table.add_column("phase")
    table.add_column("µs / point", justify="right")
    table.add_column("points / s", justify="right")
    for phase, micros in figures.items():
        table.add_row(phase, f"{micros:.1f}", f"{1e6 / micros:,.0f}" if micros > 0 else "—")
    Console().print(table)
    path = write_results(
        {
            "machine": machine_description(),
            "qdrant_edge": version,
            "points": args.points,
            "repeats": args.repeats,
            "us_per_point": figures,
        },
        args.out or results_path("edge-points"),
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
