"""Retrieval benchmark: `bookchat eval` on a BEIR folder (SciFact by default) beside a bm25s baseline, one table.

    .venv/bin/python bench/retrieval.py [--data ../shared/data/scifact] [--split test] [--output FILE]

The product's modes run through `bookchat.retrieval.evaluation.run_beir_eval` (its own Qdrant collection, indexed
once and reused); the baseline is the `bm25s` package with Snowball stemming and English stop words, scored by the same
metric code. Results go to bench/results/retrieval-<time>.json (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import bm25s
import Stemmer
from rich.console import Console
from rich.table import Table

from bookchat.config import load_settings
from bookchat.retrieval.evaluation import (
    DEEP_CUTOFF,
    METRICS,
    BeirDataset,
    load_beir,
    percentile,
    render_eval_table,
    run_beir_eval,
    score_run,
)
from bookchat.retrieval.search import FUSIONS, SEARCH_MODES, SearchMode
from record import results_path, write_results

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "scifact"


def bm25s_baseline(dataset: BeirDataset) -> dict[str, Any]:
    """bm25s (Lucene BM25, k1=1.5, b=0.75) over title + text, stemmed, English stop words."""
    stemmer = Stemmer.Stemmer("english")
    ids = [doc_id for doc_id, _, _ in dataset.corpus]
    started = time.perf_counter()
    corpus_tokens = bm25s.tokenize(
        [f"{title} {text}" for _, title, text in dataset.corpus], stopwords="en", stemmer=stemmer, show_progress=False
    )
    model = bm25s.BM25()
    model.index(corpus_tokens, show_progress=False)
    index_seconds = time.perf_counter() - started
    run: dict[str, list[str]] = {}
    latencies: list[float] = []
    for query in dataset.qrels:
        started = time.perf_counter()
        tokens = bm25s.tokenize(dataset.queries[query], stopwords="en", stemmer=stemmer, show_progress=False)
        documents, _ = model.retrieve(tokens, k=min(DEEP_CUTOFF, len(ids)), show_progress=False, n_threads=1)
        latencies.append((time.perf_counter() - started) * 1000)
        run[query] = [ids[i] for i in documents[0]]
    return {
        **{name: round(value, 4) for name, value in score_run(run, dataset.qrels).items()},
        "latency_ms_p50": round(percentile(latencies, 50), 2),
        "latency_ms_p95": round(percentile(latencies, 95), 2),
        "index_seconds": round(index_seconds, 2),
    }


def table(results: dict[str, Any]) -> Table:
    out = render_eval_table(results)
    baseline = results["baseline_bm25s"]
    out.add_row(
        "bm25s (baseline)",
        *(f"{baseline[name]:.4f}" for name in METRICS),
        f"{baseline['latency_ms_p50']:.1f}",
        f"{baseline['latency_ms_p95']:.1f}",
        style="dim",
    )
    return out


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BEIR folder (default: %(default)s)")
    parser.add_argument("--split", default="test", help="qrels split to score (default: %(default)s)")
    parser.add_argument("--mode", choices=[*SEARCH_MODES, "all"], default="all", help="search mode(s) to run")
    parser.add_argument("--data-dir", type=Path, help="bookchat data dir holding the local Qdrant (BOOKCHAT_DATA_DIR)")
    parser.add_argument("--fusion", choices=FUSIONS, default="dbsf", help="hybrid fusion (default: %(default)s)")
    parser.add_argument("--rrf-k", type=int, help="RRF constant (BOOKCHAT_RRF_K) when --fusion rrf")
    parser.add_argument("--prefetch", type=int, help="candidates per side (BOOKCHAT_PREFETCH_LIMIT)")
    parser.add_argument("--output", type=Path, help="JSON file (default: bench/results/retrieval-<time>.json)")
    args = parser.parse_args(argv)

    console = Console()
    overrides: dict[str, Any] = {
        name: value
        for name, value in (("data_dir", args.data_dir), ("rrf_k", args.rrf_k), ("prefetch_limit", args.prefetch))
        if value is not None
    }
    settings = load_settings(**overrides)
    modes: tuple[SearchMode, ...] = SEARCH_MODES if args.mode == "all" else (args.mode,)
    output = args.output or results_path("retrieval")

    def progress(done: int, total: int) -> None:
        console.print(f"indexing {done}/{total} documents", style="dim", highlight=False)

    results = await run_beir_eval(settings, args.data, args.split, modes, progress=progress, fusion=args.fusion)
    dataset = await asyncio.to_thread(load_beir, args.data, args.split)
    results["baseline_bm25s"] = await asyncio.to_thread(bm25s_baseline, dataset)
    write_results(results, output)
    console.print(table(results))
    machine = results["machine"]
    console.print(
        f"{machine['cores']} cores, {machine['cpu']}, {machine['memory_gib']} GiB; fusion={results['fusion']}, "
        f"rrf_k={results['rrf_k']}, prefetch={results['prefetch_limit']}; index {results['index_seconds']} s "
        f"({'built now' if results['indexed_now'] else 'reused'}); written to {output}",
        highlight=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
