"""Retrieval-confidence gate: does the book cover a question, judged from search signals alone (no model)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from bookchat.retrieval.search import HybridRetriever, Passage, SearchFilters, indexed_text

# Thresholds, calibrated on bench/data/covered.jsonl vs uncovered.jsonl with bench/conversation.py (see
# docs/benchmarks.md, "Conversations and coverage"): the grid point that refuses the most uncovered questions
# while refusing at most 10 % of covered ones (0.947 vs 0.074 there). Over 20 leave-half-out calibrations they
# moved within 0.30-0.38 / 0.80-0.95 / 0.50-0.60. They depend on the embedding model (the bundled one) and the
# BM25 stemming: recalibrate with the benchmark when either changes.
# Best dense cosine between the question and a passage below which the book is taken not to cover it.
MIN_DENSE_COSINE = 0.3
# Share of the question's content terms (stemmed, stop words out) that the best passages must contain.
MIN_TERM_COVERAGE = 0.9
# A question this close to a passage passes whatever its terms (paraphrases share few words).
SURE_DENSE_COSINE = 0.6
# Passages of each side read for the signals.
GATE_DEPTH = 10
# Question and function words left out of term coverage (the BM25 stop list keeps them: "how", "do", "i").
QUESTION_WORDS = frozenset(
    [
        "how",
        "do",
        "does",
        "did",
        "i",
        "me",
        "my",
        "mine",
        "you",
        "your",
        "we",
        "what",
        "whats",
        "what's",
        "why",
        "which",
        "who",
        "whom",
        "where",
        "when",
        "can",
        "could",
        "should",
        "would",
        "will",
        "is",
        "am",
        "was",
        "were",
        "been",
        "being",
        "have",
        "has",
        "had",
        "get",
        "got",
        "make",
        "use",
        "using",
        "there",
        "here",
        "about",
        "some",
        "any",
        "all",
        "just",
        "so",
        "then",
        "than",
        "also",
        "not",
        "no",
        "yes",
        "ok",
        "okay",
        "please",
        "tell",
        "explain",
        "show",
        "give",
        "want",
        "need",
        "way",
    ]
)


@dataclass(frozen=True)
class CoverageSignals:
    """What the gate reads: the best dense cosine, the share of the question's terms found in the best BM25
    passages, and the terms that no such passage contains."""

    dense_cosine: float
    term_coverage: float
    missing_terms: tuple[str, ...]


@dataclass(frozen=True)
class CoverageThresholds:
    """The gate's thresholds (the module constants by default; settings can override them)."""

    min_dense_cosine: float = MIN_DENSE_COSINE
    min_term_coverage: float = MIN_TERM_COVERAGE
    sure_dense_cosine: float = SURE_DENSE_COSINE


@dataclass(frozen=True)
class CoverageVerdict:
    """The gate's answer for one question: `answered` False means "the book does not cover this"."""

    answered: bool
    signals: CoverageSignals


def content_terms(question: str, retriever: HybridRetriever) -> list[str]:
    """The question's stemmed BM25 terms without QUESTION_WORDS: what the book must contain to answer it."""
    kept = [word for word in question.lower().replace("?", " ").split() if word.strip(".,!;:'\"") not in QUESTION_WORDS]
    return retriever.sparse.terms(" ".join(kept))


def term_coverage(
    terms: Sequence[str], passages: Sequence[Passage], retriever: HybridRetriever
) -> tuple[float, tuple[str, ...]]:
    """Share of distinct `terms` present in the passages' indexed text (same stemming), and the missing ones."""
    wanted = list(dict.fromkeys(terms))
    if not wanted:
        return 1.0, ()
    present: set[str] = set()
    for passage in passages:
        present.update(retriever.sparse.terms(indexed_text(passage)))
    missing = tuple(term for term in wanted if term not in present)
    return 1 - len(missing) / len(wanted), missing


async def coverage_signals(
    retriever: HybridRetriever, question: str, *, filters: SearchFilters | None = None
) -> CoverageSignals:
    """A dense and a BM25 search of `question` (GATE_DEPTH passages each) and the signals read off them."""
    dense, sparse = await asyncio.gather(
        retriever.search(question, limit=GATE_DEPTH, filters=filters, mode="dense"),
        retriever.search(question, limit=GATE_DEPTH, filters=filters, mode="bm25"),
    )
    coverage, missing = term_coverage(content_terms(question, retriever), [*sparse, *dense[:3]], retriever)
    return CoverageSignals(dense[0].score if dense else 0.0, coverage, missing)


def decide(signals: CoverageSignals, thresholds: CoverageThresholds | None = None) -> bool:
    """True (answer) when the best passage is very close, or close enough and holding enough of the terms."""
    limits = thresholds or CoverageThresholds()
    if signals.dense_cosine >= limits.sure_dense_cosine:
        return True
    return signals.dense_cosine >= limits.min_dense_cosine and signals.term_coverage >= limits.min_term_coverage


async def judge_coverage(
    retriever: HybridRetriever,
    question: str,
    *,
    thresholds: CoverageThresholds | None = None,
    filters: SearchFilters | None = None,
) -> CoverageVerdict:
    """Whether the collection covers `question`, with the signals the decision was made on."""
    signals = await coverage_signals(retriever, question, filters=filters)
    return CoverageVerdict(decide(signals, thresholds), signals)
