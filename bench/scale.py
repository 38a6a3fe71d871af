"""Scale benchmark of the embedded vector store: qdrant-edge vs qdrant-client's local mode, one table, one run.

For each engine and size (10k / 50k / 100k points by default), a collection shaped like bookchat's (384-d unit
vectors, BM25 sparse vectors with a Zipf vocabulary, bookchat's payload: ~1 kB of text, path prefixes, 40 chunks a
document) is written through `HybridRetriever`'s store in batches of 256, then reopened in a fresh process, which
measures: start-up (open the folder, check the collection, answer a first hybrid query), RSS after that, and the
p50 of hybrid queries through `HybridRetriever.search` (the project's own path, the local mode's fast path
included) unfiltered with DBSF and RRF, with a path-prefix filter (~5 % of points) and with a document filter.
Query vectors come from a stub embedder, so only the store is timed. `edge+optimize` is the edge collection after
`VectorStore.optimize()` (what `bookchat ingest` runs at its end, and the engine by itself after
`BOOKCHAT_EDGE_OPTIMIZE_AFTER` writes), searched all along while it runs. `edge` runs the engine on the process's own
threads (the first default), `edge-process` in a process of its own (`BOOKCHAT_EDGE_PROCESS`, the default now):
its RSS is both processes'. The loop-stall column shows what the GIL costs the process's other work.

    .venv/bin/python bench/scale.py                      # 10k, 50k, 100k; both engines
    .venv/bin/python bench/scale.py --points 10000 --engines edge

Writes bench/results/scale-<time>.json. Targets at 100k in the embedded engine: start-up ≤ 2 s, RSS ≤ 600 MB,
hybrid p50 ≤ 10 ms with or without a filter, ≥ 5,000 points/s upsert.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import models
from rich.console import Console
from rich.table import Table

from bookchat.retrieval.evaluation import machine_description
from bookchat.retrieval.search import UPSERT_BATCH, HybridRetriever, Passage, SearchFilters, _payload, chunk_point_id
from bookchat.retrieval.sparse import Bm25Encoder
from bookchat.retrieval.store import DENSE_VECTOR, SPARSE_VECTOR, VectorStore, open_qdrant_client
from record import results_path, write_results

DIM = 384
CHUNKS_PER_DOCUMENT = 40
VOCABULARY = 30_000
COLLECTION = "scale"
MODEL = "synthetic-384"
TEXT = ("The controller reads the lidar and the depth camera, fuses them into a map and plans a path. " * 11)[:1000]


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StubEmbedder:
    """Deterministic random unit vectors: the store is timed, not a model."""

    model_id = MODEL
    dim = DIM

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    async def embed_query(self, text: str) -> list[float]:
        vector = self.rng.standard_normal(DIM).astype(np.float32)
        return (vector / np.linalg.norm(vector)).tolist()

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [await self.embed_query(text) for text in texts]

    def count_tokens(self, text: str) -> int:
        return len(text.split())


class StubSparse(Bm25Encoder):
    """Query terms drawn from the same Zipf vocabulary as the documents'."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng = np.random.default_rng(seed)

    def encode_query(self, text: str) -> models.SparseVector:
        terms = sorted({int(t) for t in self.rng.zipf(1.3, 6) % VOCABULARY})
        return models.SparseVector(indices=terms, values=[1.0] * len(terms))


def document_id(number: int) -> str:
    return str(uuid.UUID(int=10**12 + number))


def batch_points(rng: np.random.Generator, start: int, count: int) -> list[models.PointStruct]:
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    points = []
    for offset in range(count):
        number = start + offset
        document = number // CHUNKS_PER_DOCUMENT
        terms = np.unique(rng.zipf(1.3, 80) % VOCABULARY)[:60]
        passage = Passage(
            chunk_id="",
            document_id=document_id(document),
            chunk_index=number % CHUNKS_PER_DOCUMENT,
            source_path=f"docs/module-{document % 20}/chapter-{document}.md",
            title=f"Chapter {document}",
            url=f"/docs/module-{document % 20}/chapter-{document}",
            heading_path=(f"Module {document % 20}", f"Chapter {document}", "Section"),
            text=TEXT,
        )
        sparse = models.SparseVector(indices=terms.tolist(), values=rng.uniform(0.8, 2.4, len(terms)).tolist())
        points.append(
            models.PointStruct(
                id=chunk_point_id(passage.document_id, passage.chunk_index),
                vector={DENSE_VECTOR: vectors[offset].tolist(), SPARSE_VECTOR: sparse},
                payload=_payload(passage),
            )
        )
    return points


def open_store(engine: str, folder: Path) -> VectorStore:
    """`edge…` on this process's threads, `edge-process…` in the engine's own process (the default)."""
    kind = "local-legacy" if engine == "local-legacy" else "edge"
    client = open_qdrant_client(None, None, folder, kind, engine_process=engine.startswith("edge-process"))
    return VectorStore(client, COLLECTION, kind=kind)  # type: ignore[arg-type]


def total_rss_mb(store: VectorStore) -> float:
    """This process's RSS, plus the engine process's when it has one."""
    engine_pid = getattr(store.client, "pid", None)
    return rss_mb() + (rss_mb(engine_pid) if engine_pid else 0.0)


async def build(engine: str, folder: Path, points: int) -> dict[str, Any]:
    """Role `build`: write `points` points; only the store's upsert calls are timed."""
    store = open_store(engine, folder)
    await store.ensure_collection(MODEL, DIM)
    rng = np.random.default_rng(1)
    upserting = 0.0
    for start in range(0, points, UPSERT_BATCH):
        batch = batch_points(rng, start, min(UPSERT_BATCH, points - start))
        began = time.perf_counter()
        await store.run(store.client.upsert(store.collection, points=batch, wait=True))
        upserting += time.perf_counter() - began
    result: dict[str, Any] = {"upsert_points_per_s": round(points / upserting, 1)}
    if engine.endswith("+optimize"):
        # Searched all along: the optimizer works on a copy in its own process, so searches go on meanwhile.
        retriever = HybridRetriever(store, StubEmbedder(2), StubSparse(3))  # type: ignore[arg-type]
        began = time.perf_counter()
        optimizing = asyncio.create_task(store.optimize())
        latencies: list[float] = []
        while not optimizing.done():
            started = time.perf_counter()
            await retriever.search("while optimizing", limit=6)
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.05)
        await optimizing
        result["optimize_s"] = round(time.perf_counter() - began, 1)
        result["search_while_optimizing_ms"] = {
            "p50": round(statistics.median(latencies), 1),
            "max": round(max(latencies), 1),
            "searches": len(latencies),
        }
    await store.close()
    return result


async def timed_queries(retriever: HybridRetriever, filters: SearchFilters | None, budget_s: float) -> float:
    latencies: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(latencies) < 60 and (len(latencies) < 5 or time.perf_counter() < deadline):
        began = time.perf_counter()
        await retriever.search("query", limit=6, filters=filters)
        latencies.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(latencies), 2)


async def loop_stall(retriever: HybridRetriever, filters: SearchFilters) -> dict[str, float]:
    """How late a 1 ms timer fires on the event loop while searches run back to back (half of them filtered):
    what every chat stream of the process waits. The engines run off the loop; holding the GIL still stalls it."""
    late: list[float] = []
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            began = time.perf_counter()
            await asyncio.sleep(0.001)
            late.append((time.perf_counter() - began) * 1000 - 1.0)

    async def search() -> None:
        deadline = time.perf_counter() + 3.0
        number = 0
        while time.perf_counter() < deadline or number < 2:
            await retriever.search("query", limit=6, filters=filters if number % 2 else None)
            number += 1
        stop.set()

    await asyncio.gather(sample(), search())
    late.sort()
    return {"p50": round(late[len(late) // 2], 2), "p99": round(late[int(len(late) * 0.99)], 2)}


async def reopen(engine: str, folder: Path, points: int) -> dict[str, Any]:
    """Role `reopen`: start-up, RSS and query latencies in a fresh process."""
    began = time.perf_counter()
    store = open_store(engine, folder)
    embedder, sparse = StubEmbedder(2), StubSparse(3)
    retriever = HybridRetriever(store, embedder, sparse)  # type: ignore[arg-type]
    await retriever.ensure_collection()
    await retriever.search("first", limit=6)
    startup = time.perf_counter() - began
    result: dict[str, Any] = {"startup_s": round(startup, 2), "rss_mb": round(total_rss_mb(store))}
    budget = 20.0
    result["hybrid_p50_ms"] = await timed_queries(retriever, None, budget)
    rrf = HybridRetriever(store, embedder, sparse, fusion="rrf")  # type: ignore[arg-type]
    result["rrf_p50_ms"] = await timed_queries(rrf, None, budget)
    result["path_filter_p50_ms"] = await timed_queries(retriever, SearchFilters(path_prefix="docs/module-3"), budget)
    documents = points // CHUNKS_PER_DOCUMENT
    result["document_filter_p50_ms"] = await timed_queries(
        retriever, SearchFilters(document_ids=(document_id(documents // 2),)), budget
    )
    result["loop_stall_ms"] = await loop_stall(retriever, SearchFilters(path_prefix="docs/module-3"))
    result["rss_after_queries_mb"] = round(total_rss_mb(store))
    await store.close()
    return result


def child(role: str, engine: str, folder: Path, points: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, __file__, "--role", role, "--engine", engine, "--folder", str(folder)]
    output = subprocess.run(
        [*command, "--points", str(points)], env=env, check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def render(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="embedded vector store at scale (p50 in ms)")
    for column in (
        "engine",
        "points",
        "start-up s",
        "RSS MB",
        "hybrid",
        "rrf",
        "path filter",
        "doc filter",
        "upsert/s",
        "loop stall p50/p99",
        "search while optimizing p50/max",
    ):
        table.add_column(column, justify="left" if column == "engine" else "right")
    for row in rows:
        engine = row["engine"] + (f" ({row['optimize_s']} s)" if "optimize_s" in row else "")
        table.add_row(
            engine,
            f"{row['points']:,}",
            f"{row['startup_s']:.2f}",
            f"{row['rss_mb']}",
            f"{row['hybrid_p50_ms']:.1f}",
            f"{row['rrf_p50_ms']:.1f}",
            f"{row['path_filter_p50_ms']:.1f}",
            f"{row['document_filter_p50_ms']:.1f}",
            f"{row['upsert_points_per_s']:,.0f}",
            f"{row['loop_stall_ms']['p50']:.1f} / {row['loop_stall_ms']['p99']:.1f}" if "loop_stall_ms" in row else "-",
            f"{during['p50']:.1f} / {during['max']:.0f}" if (during := row.get("search_while_optimizing_ms")) else "-",
        )
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["bench", "build", "reopen"], default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="edge", help=argparse.SUPPRESS)
    parser.add_argument("--points", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    parser.add_argument(
        "--engines",
        nargs="+",
        default=["edge", "edge+optimize", "edge-process", "edge-process+optimize", "local-legacy"],
        help="edge: the engine on this process's threads; edge-process: in its own process (the default); "
        "+optimize: after VectorStore.optimize(); local-legacy: qdrant-client's local mode.",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON results path.")
    args = parser.parse_args()
    if args.role != "bench":
        task = build if args.role == "build" else reopen
        print(json.dumps(asyncio.run(task(args.engine, args.folder, args.points[0]))))
        return 0
    console = Console(width=200)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bookchat-scale-") as work:
        for points in args.points:
            for engine in args.engines:
                folder = Path(work) / f"{engine}-{points}"
                console.print(f"{engine}, {points:,} points: writing", style="dim")
                row: dict[str, Any] = {"engine": engine, "points": points, **child("build", engine, folder, points)}
                console.print(f"{engine}, {points:,} points: reopening and querying", style="dim")
                row.update(child("reopen", engine, folder, points))
                rows.append(row)
                shutil.rmtree(folder, ignore_errors=True)
    console.print(render(rows))
    out = write_results(
        {"benchmark": "scale", "machine": machine_description(), "rows": rows}, args.out or results_path("scale")
    )
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
