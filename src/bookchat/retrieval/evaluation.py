"""`bookchat eval`: index a BEIR folder through the product's own retrieval path and score each search mode."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import platform
import re
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from rich.table import Table

from bookchat.config import Settings
from bookchat.retrieval.embeddings import Embedder, create_embedder
from bookchat.retrieval.search import SEARCH_MODES, Fusion, HybridRetriever, Passage, SearchMode
from bookchat.retrieval.sparse import Bm25Encoder
from bookchat.retrieval.store import EmbeddingModelMismatch, VectorStore, open_qdrant_client

log = logging.getLogger(__name__)

CUTOFF = 10
DEEP_CUTOFF = 100
INDEX_BATCH = 256
METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
Progress = Callable[[int, int], None]


class BeirError(ValueError):
    """The folder is not a readable BEIR dataset; the message names the missing or broken file."""


@dataclass(frozen=True)
class BeirDataset:
    """A BEIR folder: `corpus.jsonl` ({_id, title, text}), `queries.jsonl` ({_id, text}), `qrels/<split>.tsv`."""

    name: str
    corpus: list[tuple[str, str, str]]  # (doc id, title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]  # query id -> doc id -> graded relevance


def load_beir(beir_dir: Path, split: str = "test") -> BeirDataset:
    """Read a BEIR folder; only queries that have judged relevant documents in `split` are kept."""
    corpus_file, queries_file = beir_dir / "corpus.jsonl", beir_dir / "queries.jsonl"
    qrels_file = beir_dir / "qrels" / f"{split}.tsv"
    for path in (corpus_file, queries_file, qrels_file):
        if not path.is_file():
            raise BeirError(f"{path} is missing: a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/{split}.tsv")
    corpus = [
        (str(row["_id"]), str(row.get("title") or ""), str(row.get("text") or "")) for row in _read_jsonl(corpus_file)
    ]
    queries = {str(row["_id"]): str(row["text"]) for row in _read_jsonl(queries_file)}
    qrels: dict[str, dict[str, int]] = {}
    with qrels_file.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.rstrip("\n").split("\t")
            if (number == 1 and fields[0] == "query-id") or not line.strip():
                continue
            if len(fields) != 3:
                raise BeirError(f"{qrels_file}:{number}: expected query-id, corpus-id and score separated by tabs")
            try:
                relevance = int(fields[2])
            except ValueError:
                raise BeirError(f"{qrels_file}:{number}: score {fields[2]!r} is not an integer") from None
            qrels.setdefault(fields[0], {})[fields[1]] = relevance
    judged = {
        query: docs
        for query, docs in qrels.items()
        if query in queries and any(relevance > 0 for relevance in docs.values())
    }
    if not judged:
        raise BeirError(f"{qrels_file} judges no query of {queries_file} relevant to any document")
    return BeirDataset(beir_dir.resolve().name, corpus, queries, judged)


def _read_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise BeirError(f"{path}:{number}: not a JSON object") from None
            if not isinstance(row, dict) or "_id" not in row:
                raise BeirError(f"{path}:{number}: expected a JSON object with an _id")
            yield row


# Metrics, as BEIR (pytrec_eval) computes them: gain = graded relevance, discount log2(rank + 1).


def ndcg_at_k(ranked: Sequence[str], relevant: dict[str, int], k: int = CUTOFF) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k]))
    ideal = sorted((value for value in relevant.values() if value > 0), reverse=True)[:k]
    idcg = sum(value / math.log2(rank + 2) for rank, value in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at_k(ranked: Sequence[str], relevant: dict[str, int], k: int) -> float:
    wanted = {doc for doc, value in relevant.items() if value > 0}
    return len(wanted.intersection(ranked[:k])) / len(wanted) if wanted else 0.0


def mrr_at_k(ranked: Sequence[str], relevant: dict[str, int], k: int = CUTOFF) -> float:
    for rank, doc in enumerate(ranked[:k], start=1):
        if relevant.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def score_run(run: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """Mean nDCG@10, Recall@10, Recall@100 and MRR@10 of `run` (query id -> ranked doc ids) over `qrels`."""
    per_query = [
        (
            ndcg_at_k(run.get(query, []), relevant),
            recall_at_k(run.get(query, []), relevant, CUTOFF),
            recall_at_k(run.get(query, []), relevant, DEEP_CUTOFF),
            mrr_at_k(run.get(query, []), relevant),
        )
        for query, relevant in qrels.items()
    ]
    return {name: statistics.fmean(values[i] for values in per_query) for i, name in enumerate(METRICS)}


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of `values`; q in [0, 100]."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def document_id_for_beir(doc_id: str) -> str:
    return str(uuid5(NAMESPACE_URL, f"beir:{doc_id}"))


def beir_passages(dataset: BeirDataset) -> list[Passage]:
    """One passage per BEIR document; its title goes in the header that is embedded with the text.

    Documents are not chunked: BEIR judges whole documents, and SciFact's are abstracts (median about 250 word
    pieces). The dense vector sees the first 256 word pieces of title + abstract, as in MTEB's published scores;
    BM25 sees all of it.
    """
    return [
        Passage(
            chunk_id="",
            document_id=document_id_for_beir(doc_id),
            chunk_index=0,
            source_path=doc_id,
            title=title,
            url=None,
            heading_path=(),
            text=text,
        )
        for doc_id, title, text in dataset.corpus
    ]


def eval_collection_name(settings: Settings, dataset: str, model_id: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", f"{dataset}-{model_id}".lower()).strip("-")
    return f"{settings.collection}-beir-{slug}"[:200]


async def index_beir(
    retriever: HybridRetriever, dataset: BeirDataset, *, progress: Progress | None = None
) -> tuple[bool, float]:
    """Index `dataset` unless the collection already holds all of it; return (indexed now?, seconds)."""
    store, embedder = retriever.store, retriever.embedder
    try:
        await retriever.ensure_collection()
    except EmbeddingModelMismatch:
        # Its own collection, so a stale one (other encoder parameters) is simply rebuilt.
        await store.recreate(embedder.model_id, embedder.dim, sparse_id=retriever.sparse.signature)
    passages = beir_passages(dataset)
    if await store.count() == len(passages):
        return False, 0.0
    started = time.perf_counter()
    for start in range(0, len(passages), INDEX_BATCH):
        await retriever.index_passages(passages[start : start + INDEX_BATCH])
        if progress is not None:
            progress(min(start + INDEX_BATCH, len(passages)), len(passages))
    return True, time.perf_counter() - started


async def evaluate_mode(
    retriever: HybridRetriever, dataset: BeirDataset, mode: SearchMode
) -> tuple[dict[str, float], list[float]]:
    """Scores of one mode and the latency of each search (query embedding + Qdrant), in milliseconds.

    The @10 metrics and the latency come from a search for 10 passages, as the product asks for a handful;
    Recall@100 from a second search for 100 (hybrid then prefetches 100 from each side, see `search`).
    """
    top: dict[str, list[str]] = {}
    deep: dict[str, list[str]] = {}
    latencies: list[float] = []
    first = next(iter(dataset.qrels))
    await retriever.search(dataset.queries[first], limit=CUTOFF, mode=mode)  # warm caches before timing
    for query in dataset.qrels:
        started = time.perf_counter()
        hits = await retriever.search(dataset.queries[query], limit=CUTOFF, mode=mode)
        latencies.append((time.perf_counter() - started) * 1000)
        top[query] = [hit.source_path for hit in hits]
        deep[query] = [
            hit.source_path for hit in await retriever.search(dataset.queries[query], limit=DEEP_CUTOFF, mode=mode)
        ]
    scores = score_run(top, dataset.qrels)
    scores["recall@100"] = score_run(deep, dataset.qrels)["recall@100"]
    return scores, latencies


async def run_beir_eval(
    settings: Settings,
    beir_dir: Path,
    split: str = "test",
    modes: Sequence[SearchMode] = SEARCH_MODES,
    *,
    output: Path | None = None,
    progress: Progress | None = None,
    embedder: Embedder | None = None,
    fusion: Fusion = "dbsf",
) -> dict[str, Any]:
    """Index the BEIR corpus in `beir_dir` into its own collection (reused when complete), run every query of
    `split` in each mode, and return (and write to `output` as JSON, when given) the scores and latencies.

    The collection is `<collection>-beir-<folder>-<model>` in the configured Qdrant; PostgreSQL is not used.
    """
    for mode in modes:
        if mode not in SEARCH_MODES:
            raise ValueError(f"unknown search mode {mode!r}; expected one of {', '.join(SEARCH_MODES)}")
    dataset = await asyncio.to_thread(load_beir, beir_dir, split)
    if embedder is None:
        embedder = await asyncio.to_thread(create_embedder, settings)
    client = open_qdrant_client(
        settings.qdrant_url,
        settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None,
        settings.resolved_qdrant_path,
        settings.resolved_vector_store,
        engine_process=settings.edge_process,
        optimize_after=settings.edge_optimize_after,
    )
    collection = eval_collection_name(settings, dataset.name, embedder.model_id)
    store = VectorStore(client, collection, kind=settings.resolved_vector_store)
    retriever = HybridRetriever(
        store, embedder, Bm25Encoder(), rrf_k=settings.rrf_k, prefetch_limit=settings.prefetch_limit, fusion=fusion
    )
    try:
        indexed, index_seconds = await index_beir(retriever, dataset, progress=progress)
        results: dict[str, Any] = {
            "dataset": dataset.name,
            "split": split,
            "queries": len(dataset.qrels),
            "corpus_documents": len(dataset.corpus),
            "collection": collection,
            "qdrant": store.description,
            "embedding_model": embedder.model_id,
            "embedding_dim": embedder.dim,
            "sparse_encoder": retriever.sparse.signature,
            "fusion": retriever.fusion,
            "rrf_k": retriever.rrf_k,
            "prefetch_limit": retriever.prefetch_limit,
            "indexed_now": indexed,
            "index_seconds": round(index_seconds, 2),
            "machine": machine_description(),
            "modes": {},
        }
        for mode in modes:
            scores, latencies = await evaluate_mode(retriever, dataset, mode)
            results["modes"][mode] = {
                **{name: round(value, 4) for name, value in scores.items()},
                "latency_ms_p50": round(percentile(latencies, 50), 2),
                "latency_ms_p95": round(percentile(latencies, 95), 2),
            }
    finally:
        await store.close()
    if output is not None:
        await asyncio.to_thread(write_results, results, output)
    return results


def write_results(results: dict[str, Any], output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def machine_description() -> dict[str, Any]:
    """Cores, CPU model and memory of this machine, for the record next to the figures."""
    import os

    cpu = platform.processor() or platform.machine()
    memory_gib: float | None = None
    vector_units: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                # The model's speed hangs on these: int8 and fp32 matrix kernels differ by CPU, not by core count.
                flags = set(line.split(":", 1)[1].split())
                vector_units = [
                    flag for flag in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if flag in flags
                ]
                break
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1_048_576, 1)
                break
    except OSError:  # not Linux
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cores": cores,
        "cpu": cpu,
        "vector_units": vector_units,
        "memory_gib": memory_gib,
        "python": platform.python_version(),
    }


def render_eval_table(results: dict[str, Any]) -> Table:
    """One row per mode: the four scores and the latency percentiles."""
    fusion = str(results.get("fusion", "rrf")).upper()
    table = Table(
        title=f"{results['dataset']} ({results['split']}, {results['queries']} queries) — "
        f"{results['embedding_model']}, hybrid by {fusion}"
    )
    table.add_column("mode")
    for name in (*METRICS, "p50 ms", "p95 ms"):
        table.add_column(name, justify="right")
    for mode, row in results["modes"].items():
        table.add_row(
            mode,
            *(f"{row[name]:.4f}" for name in METRICS),
            f"{row['latency_ms_p50']:.1f}",
            f"{row['latency_ms_p95']:.1f}",
        )
    return table
