"""Retrieval-confidence gate: does the book cover a question, judged from search signals alone (no model)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bookchat.retrieval.search import HybridRetriever, Passage, SearchFilters, indexed_text

# Thresholds, calibrated on bench/data/covered.jsonl vs uncovered.jsonl with bench/conversation.py (see
# docs/benchmarks.md, "Conversations and coverage"): the grid point that refuses the most uncovered questions
# while refusing at most 10 % of covered ones (0.947 vs 0.037 there). Over 20 leave-half-out calibrations they
# moved within 0.30-0.34 / 0.75-0.90 / 0.52-0.60. They depend on the embedding model (the bundled one), the
# BM25 stemming and QUESTION_WORDS: recalibrate with the benchmark when any of them changes.
# Best dense cosine between the question and a passage below which the book is taken not to cover it.
MIN_DENSE_COSINE = 0.34
# Share of the question's content terms (stemmed, stop words and question frame out) found in the best passages.
MIN_TERM_COVERAGE = 0.85
# A question this close to a passage passes whatever its terms (paraphrases share few words).
SURE_DENSE_COSINE = 0.6
# Passages of each side read for the signals.
GATE_DEPTH = 10
_WORD = re.compile(r"\w+", re.UNICODE)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# The frame a reader's question wraps around its topic, left out of term coverage: a book answering "How long does
# charging take?" need not contain "long" or "take". Compared by stem (BM25 stemming), so "takes", "taking",
# "mentioned" and "needs" count too; the BM25 stop list keeps most of these, since they still help ranking.
# Groups: interrogatives and auxiliaries; pronouns and determiners; generic verbs of doing, wanting, asking and
# telling; references to the book itself; evaluation, comparison and manner ("best way", "difference between");
# hedges and degree adverbs; contractions' leftovers. Topic words ("battery", "charge", "method") never belong.
QUESTION_WORDS = _words(
    """
    how what whats why which who whom whose where when whether
    do does did doing done can could should would will shall may might must is am are was were be been being
    have has had having
    i me my mine myself you your yours yourself we us our ours it its they them their he she his her one ones
    someone somebody something anyone anybody anything everyone everything nothing
    this that these those there here some any all each every other another else own
    get got getting make made making use used using take took taken taking go goes going went put set
    want need try let keep see look find know think say said tell explain show give help mention mentioned
    describe cover discuss talk mean meaning work
    book chapter section page
    way ways best better good right proper properly correct correctly possible able easy hard
    difference different differ compare versus vs between like kind sort thing things example examples
    about around over under onto into from without within instead also just so then than too very really
    actually exactly usually typically normally ever still even only more most much many
    not no yes ok okay please thanks
    s t d ll m re ve
    """
)
# Words that, right after "how", ask for a quantity or a manner rather than name the topic ("how long", "how many").
HOW_WORDS = _words("long many much often far big large small fast slow old soon well come")


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
    """The question's stemmed BM25 terms without its frame (QUESTION_WORDS by stem, the word after "how" when
    it is one of HOW_WORDS): what the book must contain to answer it."""
    words = _WORD.findall(question.lower())
    kept = [word for i, word in enumerate(words) if not (i and words[i - 1] == "how" and word in HOW_WORDS)]
    frame = set(retriever.sparse.terms(" ".join(QUESTION_WORDS))) | QUESTION_WORDS
    return [term for term in retriever.sparse.terms(" ".join(kept)) if term not in frame]


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
