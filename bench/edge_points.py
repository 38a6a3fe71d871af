"""Where an upsert's time goes in the embedded engine, with and without stored payload keys and packed dense
vectors: qdrant-edge's point building, its write, and the whole call through the engine's process.

The figures behind the ≥ 5,000 points/s upsert target (docs/benchmarks.md): book-shaped points from `scale.py`
(384-d dense, BM25 sparse, bookchat's payload with ~1 kB of text), batches of `UPSERT_BATCH`, each figure the
median of `--repeats` runs over the same points. "plain" is the payload as written (what a collection without
stored keys holds), "stored keys" the same with `STORED_PAYLOAD_KEYS` folded into one string; "dense as lists"
sends each dense vector as a list of floats (before), the rest as float32 bytes (`edge_convert.pack_dense`, now).

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
from array import array
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


def with_dense_lists(rows: Sequence[PointRow]) -> list[PointRow]:
    """`rows` with each packed dense vector as a list of floats again (how they were sent before)."""
    return [
        (point_id, {name: array("f", v).tolist() if isinstance(v, bytes) else v for name, v in vectors.items()}, p)
        for point_id, vectors, p in rows
    ]


async def upserts_per_point(
    client: Engine, batches: Sequence[Sequence[Any]], stored: Sequence[str], repeats: int, *, rows: bool
) -> float:
    """Median µs per point to write every batch, one call after another, into a fresh collection; `rows`: the
    batches are rows (`upsert_rows`, the payloads folded for `stored`), else models (`upsert`)."""
    runs = []
    for _ in range(repeats):
        await fresh_collection(client, stored)
        began = time.perf_counter()
        for batch in batches:
            if rows:
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
    listed_batches = [with_dense_lists(batch) for batch in stored_batches]
    plain = [row for batch in plain_batches for row in batch]
    stored = [row for batch in stored_batches for row in batch]
    listed = [row for batch in listed_batches for row in batch]
    bare: list[PointRow] = [(point_id, vectors, None) for point_id, vectors, _ in plain]
    stored_blobs = [pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL) for batch in stored_batches]
    listed_blobs = [pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL) for batch in listed_batches]
    # The inputs stay alive throughout; frozen, the collector leaves them alone, as the engine's process (which
    # holds one batch at a time) would.
    gc.collect()
    gc.freeze()
    figures = {
        "build, vectors only": per_point(lambda: rows_to_points(bare), points, repeats),
        "build, plain payload": per_point(lambda: rows_to_points(plain), points, repeats),
        "build, stored keys, dense as lists": per_point(lambda: rows_to_points(listed), points, repeats),
        "build, stored keys": per_point(lambda: rows_to_points(stored), points, repeats),
        "to_rows, plain payload": per_point(lambda: [to_rows(b) for b in models_batches], points, repeats),
        "to_rows, stored keys folded": per_point(
            lambda: [to_rows(b, STORED_PAYLOAD_KEYS) for b in models_batches], points, repeats
        ),
        # Our own bytes, pickled just above.
        "unpickle, stored keys, dense as lists": per_point(
            lambda: [pickle.loads(b) for b in listed_blobs],  # noqa: S301
            points,
            repeats,
        ),
        "unpickle, stored keys": per_point(lambda: [pickle.loads(b) for b in stored_blobs], points, repeats),  # noqa: S301
    }
    # Each engine writes the same points three ways, as rows folded for the keys the collection keeps.
    ways: list[tuple[str, list[list[PointRow]], Sequence[str]]] = [
        ("plain payload", plain_batches, ()),
        ("stored keys, dense as lists", listed_batches, STORED_PAYLOAD_KEYS),
        ("stored keys", stored_batches, STORED_PAYLOAD_KEYS),
    ]
    engines: list[tuple[str, Callable[[Path], Engine]]] = [
        ("build + write on threads", EdgeQdrantClient),
        ("upsert through the engine's process", EdgeProcessClient),
    ]
    for label, open_engine in engines:
        with tempfile.TemporaryDirectory() as folder:
            engine = open_engine(Path(folder) / "edge")
            for way, batches, keys in ways:
                figures[f"{label}, {way}"] = await upserts_per_point(engine, batches, keys, repeats, rows=True)
            # The whole call, from the models: what `VectorStore` does (the models are the same points).
            if isinstance(engine, EdgeProcessClient):
                figures[f"{label}, from the models"] = await upserts_per_point(
                    engine, models_batches, STORED_PAYLOAD_KEYS, repeats, rows=False
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
