"""Conversation benchmark: follow-up search methods, topic changes, the coverage gate and Urdu, on bench/data.

    .venv/bin/python bench/conversation.py [--book ../shared/data/book-physical-ai-amnarehmani] [--output FILE]

Chunks the shared textbook with the ingestion code (DocumentPreparer) into a throw-away local Qdrant collection,
then scores hit@1/hit@5 (any expected page among the top-k passages' documents) of each follow-up method, of the
follow-up asked alone and of its hand rewrite; the same for topic changes; calibrates the coverage gate on
covered vs uncovered (with a leave-half-out check); scores the first search with a model rewrite merged in (right,
wrong, nonsense and failed rewrites; Urdu with and without the translation); times a follow-up's search against a
single search, and with a rewrite asked of the test suite's fake model answering in 0.3 s.
Results go to bench/results/conversation-<time>.json (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI
from rich.console import Console
from rich.table import Table

from bookchat.chat.query_rewrite import QueryRewriter
from bookchat.config import load_settings
from bookchat.documents.discovery import discover
from bookchat.documents.preparation import DocumentInput, DocumentPreparer
from bookchat.retrieval.coverage_gate import CoverageSignals, CoverageThresholds, coverage_signals, decide
from bookchat.retrieval.embeddings import create_embedder
from bookchat.retrieval.evaluation import machine_description, percentile
from bookchat.retrieval.followups import (
    FOLLOWUP_METHODS,
    FUSION_FETCH,
    FollowupMethod,
    fuse_hits,
    interleave_hits,
    looks_dependent,
    search_followup,
)
from bookchat.retrieval.search import HybridRetriever, Passage
from bookchat.retrieval.sparse import Bm25Encoder
from bookchat.retrieval.store import VectorStore, open_qdrant_client
from record import results_path, write_results

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"
DEFAULT_BOOK = ROOT.parent / "shared" / "data" / "book-physical-ai-amnarehmani"
LIMIT = 5
# How long the fake model takes to answer a rewrite (a short call to a fast hosted model).
REWRITE_MODEL_SECONDS = 0.3
Row = dict[str, Any]


def load(name: str) -> list[Row]:
    with open(DATA / f"{name}.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


async def build_index(book: Path, folder: Path) -> tuple[HybridRetriever, int, float]:
    """The book chunked as `bookchat ingest` chunks it, indexed into a fresh local collection."""
    settings = load_settings()
    embedder = await asyncio.to_thread(create_embedder, settings)
    store = VectorStore(open_qdrant_client(None, None, folder), "conversation-bench", kind="edge")
    retriever = HybridRetriever(
        store, embedder, Bm25Encoder(), rrf_k=settings.rrf_k, prefetch_limit=settings.prefetch_limit
    )
    preparer = DocumentPreparer("conversation-bench", embedder, settings)
    started = time.perf_counter()
    passages: list[Passage] = []
    for file in discover([book]).files:
        item = DocumentInput(file.source_path, file.path.read_bytes(), doc_path=file.doc_path)
        passages.extend(preparer.prepare(item, preparer.content_hash(item, None), None, None, 0).passages)
    await retriever.index_passages(passages)
    return retriever, len(passages), time.perf_counter() - started


def hits_at(hits: Sequence[Passage], files: Sequence[str], prefix: str, k: int) -> bool:
    wanted = {prefix + path for path in files}
    return any(hit.source_path in wanted for hit in hits[:k])


def rates(outcomes: Sequence[tuple[bool, bool]]) -> dict[str, float]:
    n = len(outcomes) or 1
    return {"hit@1": round(sum(a for a, _ in outcomes) / n, 3), "hit@5": round(sum(b for _, b in outcomes) / n, 3)}


async def score(
    retriever: HybridRetriever,
    cases: Sequence[tuple[str, Sequence[str], Sequence[str]]],
    prefix: str,
    method: FollowupMethod | None,
) -> dict[str, float]:
    """hit@1/@5 of (message, previous questions, files) cases; `method` None searches the message alone."""
    outcomes = []
    for message, previous, files in cases:
        if method is None:
            hits = await retriever.search(message, limit=LIMIT)
        else:
            hits = (await search_followup(retriever, message, previous, method=method, limit=LIMIT)).hits
        outcomes.append((hits_at(hits, files, prefix, 1), hits_at(hits, files, prefix, LIMIT)))
    return rates(outcomes)


def with_typo(question: str) -> str:
    """`question` with the 3rd and 4th letters of its longest word (6 letters or more) swapped: a reader's typo."""
    words = re.findall(r"[A-Za-z]{6,}", question)
    if not words:
        return question
    word = max(words, key=len)
    return question.replace(word, word[:2] + word[3] + word[2] + word[4:], 1)


def gate_rates(signals: Sequence[tuple[CoverageSignals, bool]], thresholds: CoverageThresholds) -> dict[str, float]:
    """Refusal rates and precision/recall of refusing (positive = "not covered")."""
    refused_uncovered = sum(1 for s, covered in signals if not covered and not decide(s, thresholds))
    refused_covered = sum(1 for s, covered in signals if covered and not decide(s, thresholds))
    uncovered = sum(1 for _, covered in signals if not covered) or 1
    covered_n = sum(1 for _, covered in signals if covered) or 1
    refused = refused_uncovered + refused_covered
    return {
        "refused_uncovered": round(refused_uncovered / uncovered, 3),
        "refused_covered": round(refused_covered / covered_n, 3),
        "refusal_precision": round(refused_uncovered / refused, 3) if refused else 1.0,
        "refusal_recall": round(refused_uncovered / uncovered, 3),
    }


GRID = list(
    itertools.product(
        [x / 100 for x in range(30, 81, 2)], [x / 20 for x in range(0, 21)], [x / 100 for x in range(50, 101, 2)]
    )
)


def calibrate(signals: Sequence[tuple[CoverageSignals, bool]], max_false_refusal: float = 0.10) -> CoverageThresholds:
    """The grid point refusing the most uncovered questions with at most `max_false_refusal` covered refused;
    ties go to the fewest covered refused, then to the loosest thresholds."""
    best: tuple[float, float, float] | None = None
    chosen = CoverageThresholds()
    for dense, coverage, sure in GRID:
        if sure < dense:
            continue
        thresholds = CoverageThresholds(dense, coverage, sure)
        figures = gate_rates(signals, thresholds)
        if figures["refused_covered"] > max_false_refusal:
            continue
        key = (figures["refused_uncovered"], -figures["refused_covered"], -(dense + coverage + sure))
        if best is None or key > best:
            best, chosen = key, thresholds
    return chosen


def leave_half_out(signals: Sequence[tuple[CoverageSignals, bool]], rounds: int = 20) -> dict[str, Any]:
    """Calibrate on a random half (stratified), score on the other half, `rounds` times."""
    rng = random.Random(14)
    covered = [s for s in signals if s[1]]
    uncovered = [s for s in signals if not s[1]]
    held: list[dict[str, float]] = []
    chosen: list[tuple[float, float, float]] = []
    for _ in range(rounds):
        rng.shuffle(covered)
        rng.shuffle(uncovered)
        train = covered[: len(covered) // 2] + uncovered[: len(uncovered) // 2]
        test = covered[len(covered) // 2 :] + uncovered[len(uncovered) // 2 :]
        thresholds = calibrate(train)
        chosen.append((thresholds.min_dense_cosine, thresholds.min_term_coverage, thresholds.sure_dense_cosine))
        held.append(gate_rates(test, thresholds))
    return {
        "rounds": rounds,
        "held_out_refused_uncovered": [
            min(h["refused_uncovered"] for h in held),
            round(sum(h["refused_uncovered"] for h in held) / rounds, 3),
            max(h["refused_uncovered"] for h in held),
        ],
        "held_out_refused_covered": [
            min(h["refused_covered"] for h in held),
            round(sum(h["refused_covered"] for h in held) / rounds, 3),
            max(h["refused_covered"] for h in held),
        ],
        "thresholds_min_max": {
            name: [min(c[i] for c in chosen), max(c[i] for c in chosen)]
            for i, name in enumerate(("min_dense_cosine", "min_term_coverage", "sure_dense_cosine"))
        },
    }


async def latency(retriever: HybridRetriever, followups: Sequence[Row]) -> dict[str, float]:
    single: list[float] = []
    followup: list[float] = []
    await retriever.search(followups[0]["second"], limit=LIMIT)
    for row in followups:
        started = time.perf_counter()
        await retriever.search(row["second"], limit=LIMIT)
        single.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        await search_followup(retriever, row["second"], [row["first"]], limit=LIMIT)
        followup.append((time.perf_counter() - started) * 1000)
    return {
        "single_search_ms_p50": round(percentile(single, 50), 1),
        "followup_search_ms_p50": round(percentile(followup, 50), 1),
        "extra_ms_p50": round(percentile(followup, 50) - percentile(single, 50), 1),
    }


def _rrf(leading: Sequence[Passage], other: Sequence[Passage], limit: int) -> list[Passage]:
    return fuse_hits([leading, other], [1.0, 1.0], limit)


# How a rewrite's hits may join the model-free ones: the shipped interleave, and equal-weight RRF for comparison.
MERGES = {"interleave (shipped)": interleave_hits, "rrf 1:1": _rrf}


async def score_rewrites(retriever: HybridRetriever, prefix: str) -> dict[str, Any]:
    """hit@1/@5 of the first search with a model rewrite merged in, for rewrites that are right (the hand
    rewrite; for Urdu the English original), fluent but about another row's topic, nonsense, or failed."""
    followups, urdu = load("followups"), load("urdu")
    standalone = [row["second_standalone"] for row in followups]
    english = [row["question_en"] for row in urdu]
    sets: dict[str, list[tuple[str, list[str], str | None, Sequence[str]]]] = {
        "followups, right rewrite": [
            (r["second"], [r["first"]], r["second_standalone"], r["second_files"]) for r in followups
        ],
        "followups, another topic": [
            (r["second"], [r["first"]], standalone[(i + 17) % len(standalone)], r["second_files"])
            for i, r in enumerate(followups)
        ],
        "followups, nonsense": [(r["second"], [r["first"]], "zxqv blorp qwerty", r["second_files"]) for r in followups],
        "followups, failed": [(r["second"], [r["first"]], None, r["second_files"]) for r in followups],
        "urdu, right translation": [(r["question_ur"], [], r["question_en"], r["files"]) for r in urdu],
        "urdu, another question": [
            (r["question_ur"], [], english[(i + 7) % len(english)], r["files"]) for i, r in enumerate(urdu)
        ],
    }
    results: dict[str, Any] = {}
    fake_model, rewriter, answers = start_fake_rewriter(0.0)
    for name, cases in sets.items():
        row: dict[str, Any] = {}
        # End to end: the rewrite asked of the fake model over HTTP (it answers each message with the case's
        # rewrite, or a 500 for "failed"), parsed and merged by the shipped code.
        answers.clear()
        answers.update({message: rewrite for message, _, rewrite, _ in cases})
        outcomes = []
        for message, previous, _, files in cases:
            found = await search_followup(
                retriever, message, previous, limit=LIMIT, rewrite=rewriter.rewrite(message, previous)
            )
            outcomes.append((hits_at(found.hits, files, prefix, 1), hits_at(found.hits, files, prefix, LIMIT)))
        row["shipped, fake model over HTTP"] = rates(outcomes)
        for merge_name, merge in MERGES.items():
            outcomes = []
            for message, previous, rewrite, files in cases:
                found = await search_followup(retriever, message, previous, limit=max(LIMIT, FUSION_FETCH))
                hits = found.hits[:LIMIT]
                if rewrite is not None:
                    extra = await retriever.search(rewrite, limit=max(LIMIT, FUSION_FETCH))
                    hits = merge(found.hits, extra, LIMIT)
                outcomes.append((hits_at(hits, files, prefix, 1), hits_at(hits, files, prefix, LIMIT)))
            row[merge_name] = rates(outcomes)
        results[name] = row
    await rewriter.client.close()
    fake_model.stop()
    return results


def start_fake_rewriter(model_seconds: float) -> tuple[Any, QueryRewriter, dict[str, str | None]]:
    """The test suite's fake model (an OpenAI-compatible HTTP server) answering rewrite calls from a table of
    message -> rewrite (None: a 500), after `model_seconds`; and a QueryRewriter that asks it."""
    # The project root is not on bench's path.
    sys.path.insert(0, str(ROOT))
    from tests.fakes.llm_server import Error, FakeLLMServer, Text, rewrite_message

    answers: dict[str, str | None] = {}

    def reply(body: dict[str, Any]) -> Any:
        latest = rewrite_message(body)[1]
        rewrite = answers.get(latest, latest)
        return Error(500, "no rewrite") if rewrite is None else Text(rewrite, delay=model_seconds)

    fake = FakeLLMServer().start()
    fake.rewriter = reply
    client = AsyncOpenAI(base_url=fake.base_url, api_key="bench")
    return fake, QueryRewriter(client, "fake-model", timeout=5.0, max_tokens=256), answers


async def rewrite_latency(
    retriever: HybridRetriever, followups: Sequence[Row], model_seconds: float
) -> dict[str, float]:
    """A follow-up's first search with the rewrite asked of a fake model over HTTP that answers in
    `model_seconds`, against the model-free search, p50 in ms."""
    fake, rewriter, _ = start_fake_rewriter(model_seconds)
    plain: list[float] = []
    rewritten: list[float] = []
    for row in followups:
        started = time.perf_counter()
        await search_followup(retriever, row["second"], [row["first"]], limit=LIMIT)
        plain.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        rewrite = rewriter.rewrite(row["second"], [row["first"]])
        await search_followup(retriever, row["second"], [row["first"]], limit=LIMIT, rewrite=rewrite)
        rewritten.append((time.perf_counter() - started) * 1000)
    await rewriter.client.close()
    fake.stop()
    return {
        "model_ms": model_seconds * 1000,
        "model_free_ms_p50": round(percentile(plain, 50), 1),
        "with_rewrite_ms_p50": round(percentile(rewritten, 50), 1),
        "extra_ms_p50": round(percentile(rewritten, 50) - percentile(plain, 50), 1),
    }


async def run(book: Path, folder: Path) -> dict[str, Any]:
    retriever, chunks, index_seconds = await build_index(book, folder)
    prefix = book.name + "/"
    followups, topics = load("followups"), load("topic_changes")
    results: dict[str, Any] = {
        "book": book.name,
        "chunks": chunks,
        "index_seconds": round(index_seconds, 1),
        "machine": machine_description(),
        "limit": LIMIT,
    }
    second = [(r["second"], [r["first"]], r["second_files"]) for r in followups]
    changes = [(r["second"], [r["first"]], r["second_files"]) for r in topics]
    results["followups"] = {
        "first turns": await score(retriever, [(r["first"], [], r["first_files"]) for r in followups], prefix, None),
        "asked alone": await score(retriever, second, prefix, None),
        "second_standalone": await score(
            retriever, [(r["second_standalone"], [], r["second_files"]) for r in followups], prefix, None
        ),
        **{method: await score(retriever, second, prefix, method) for method in FOLLOWUP_METHODS},
    }
    results["topic_changes"] = {
        "first turns": await score(retriever, [(r["first"], [], r["first_files"]) for r in topics], prefix, None),
        "asked alone": await score(retriever, changes, prefix, None),
        **{method: await score(retriever, changes, prefix, method) for method in FOLLOWUP_METHODS},
    }
    results["detector"] = {
        "followups_dependent": round(sum(looks_dependent(r["second"]) for r in followups) / len(followups), 3),
        "topic_changes_dependent": round(sum(looks_dependent(r["second"]) for r in topics) / len(topics), 3),
    }
    signals = [(await coverage_signals(retriever, r["question"]), True) for r in load("covered")]
    signals += [(await coverage_signals(retriever, r["question"]), False) for r in load("uncovered")]
    calibrated = calibrate(signals)
    typos = [(await coverage_signals(retriever, with_typo(r["question"])), True) for r in load("covered")]
    results["gate"] = {
        "module_constants": {**CoverageThresholds().__dict__, **gate_rates(signals, CoverageThresholds())},
        "calibrated": {**calibrated.__dict__, **gate_rates(signals, calibrated)},
        "leave_half_out": leave_half_out(signals),
        "covered_with_a_typo_refused": {
            "module_constants": gate_rates(typos, CoverageThresholds())["refused_covered"],
            "calibrated": gate_rates(typos, calibrated)["refused_covered"],
        },
        "signals": [
            {
                "covered": covered,
                "dense": round(s.dense_cosine, 3),
                "coverage": round(s.term_coverage, 3),
                "missing": list(s.missing_terms),
            }
            for s, covered in signals
        ],
    }
    urdu = load("urdu")
    typed = [decide(await coverage_signals(retriever, r["question_ur"])) for r in urdu]
    translated = [decide(await coverage_signals(retriever, r["question_en"])) for r in urdu]
    results["urdu_gate_answered"] = {
        "as typed": round(sum(typed) / len(urdu), 3),
        "with the rewrite's second chance": round(
            sum(a or b for a, b in zip(typed, translated, strict=True)) / len(urdu), 3
        ),
    }
    results["urdu"] = {
        "urdu as is": await score(retriever, [(r["question_ur"], [], r["files"]) for r in urdu], prefix, None),
        "english original": await score(retriever, [(r["question_en"], [], r["files"]) for r in urdu], prefix, None),
    }
    results["rewrite"] = await score_rewrites(retriever, prefix)
    results["latency"] = await latency(retriever, followups)
    results["rewrite_latency"] = await rewrite_latency(retriever, followups, REWRITE_MODEL_SECONDS)
    await retriever.store.close()
    return results


def render(results: dict[str, Any]) -> Table:
    table = Table(title=f"Conversations on {results['book']} (hit@k over the top {LIMIT} passages)")
    for column in ("set", "search", "hit@1", "hit@5"):
        table.add_column(column, justify="right" if column.startswith("hit") else "left")
    for group in ("followups", "topic_changes", "urdu"):
        for name, figures in results[group].items():
            table.add_row(group, name, f"{figures['hit@1']:.3f}", f"{figures['hit@5']:.3f}")
    return table


def render_rewrites(results: dict[str, Any]) -> Table:
    table = Table(title=f"First search with a model rewrite merged in (hit@1 / hit@{LIMIT})")
    table.add_column("rewrite")
    columns = list(next(iter(results["rewrite"].values())))
    for name in columns:
        table.add_column(name, justify="right")
    for name, row in results["rewrite"].items():
        table.add_row(name, *(f"{row[m]['hit@1']:.3f} / {row[m]['hit@5']:.3f}" for m in columns))
    return table


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--book", type=Path, default=DEFAULT_BOOK, help="book folder (default: %(default)s)")
    parser.add_argument("--output", type=Path, help="JSON file (default: bench/results/conversation-<time>.json)")
    args = parser.parse_args(argv)
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bookchat-conversation-") as folder:
        results = await run(args.book.resolve(), Path(folder))
    output = write_results(results, args.output or results_path("conversation"))
    console.print(render(results))
    gate = results["gate"]
    for name in ("module_constants", "calibrated"):
        console.print(f"gate {name}: {json.dumps(gate[name])}", highlight=False)
    console.print(f"gate leave-half-out: {json.dumps(gate['leave_half_out'])}", highlight=False)
    console.print(f"gate, covered with a typo: {json.dumps(gate['covered_with_a_typo_refused'])}", highlight=False)
    console.print(
        f"detector: {json.dumps(results['detector'])}; latency: {json.dumps(results['latency'])}", highlight=False
    )
    console.print(render_rewrites(results))
    console.print(f"rewrite latency: {json.dumps(results['rewrite_latency'])}", highlight=False)
    console.print(f"gate lets Urdu questions through: {json.dumps(results['urdu_gate_answered'])}", highlight=False)
    console.print(
        f"{results['chunks']} chunks indexed in {results['index_seconds']} s; written to {output}", highlight=False
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
