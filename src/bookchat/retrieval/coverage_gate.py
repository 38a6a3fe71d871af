"""Retrieval-confidence gate: does the book cover a question, judged from search signals alone (no model)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from rapidfuzz import process
from rapidfuzz.distance import OSA

from bookchat.retrieval.search import HybridRetriever, Passage, SearchFilters, indexed_text

# Thresholds, calibrated on bench/data/covered.jsonl vs uncovered.jsonl with bench/conversation.py (see
# docs/benchmarks.md, "Conversations and coverage"): the grid point that refuses the most uncovered questions
# while refusing at most 10 % of covered ones (0.974 vs 0.037 there; over 20 leave-half-out calibrations 0.926
# vs 0.044 on the held-out halves). Since the absent-term rule (a question naming what the book never mentions
# is refused) does most of the work, the term-coverage share is no longer needed there (0.0) and the best
# cosine only refuses questions that match nothing at all. They depend on the embedding model (the bundled one),
# the BM25 stemming and QUESTION_WORDS: recalibrate with the benchmark when any of them changes.
# Best dense cosine between the question and a passage below which the book is taken not to cover it.
MIN_DENSE_COSINE = 0.30
# Share of the question's content terms (stemmed, stop words and question frame out) found in the best passages.
MIN_TERM_COVERAGE = 0.0
# A question this close to a passage passes whatever its terms (paraphrases share few words).
SURE_DENSE_COSINE = 0.66
# Edits (insertions, deletions, substitutions, swaps of neighbours) a question's term may be away from a term of
# the best passages and still count as found, by the stem's length: readers mistype, and with one typo in the
# longest word of each covered question 0.74 of them were refused (0.24 with this). Stems of 4 letters are left
# exact: "rust" passed as "test", "srdf" as "urdf" (bench/conversation.py, "typos").
TYPO_EDITS = ((9, 2), (5, 1))
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
    passages, the terms that no such passage contains, and those that no passage of the book contains at all."""

    dense_cosine: float
    term_coverage: float
    missing_terms: tuple[str, ...]
    absent_terms: tuple[str, ...] = ()


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
    missing = tuple(term for term in wanted if term not in present and not misspelling_of_any(term, present))
    return 1 - len(missing) / len(wanted), missing


def misspelling_of_any(term: str, terms: Collection[str]) -> bool:
    """True when `term` is within TYPO_EDITS of one of `terms` (a reader's "simluation" for "simulation")."""
    edits = next((count for length, count in TYPO_EDITS if len(term) >= length), 0)
    if not edits or not terms:
        return False
    return process.extractOne(term, terms, scorer=OSA.distance, score_cutoff=edits) is not None


async def coverage_signals(
    retriever: HybridRetriever, question: str, *, filters: SearchFilters | None = None
) -> CoverageSignals:
    """A dense and a BM25 search of `question` (GATE_DEPTH passages each), a presence check of its content
    terms over the whole collection, and the signals read off them."""
    terms = content_terms(question, retriever)
    dense, sparse, present = await asyncio.gather(
        retriever.search(question, limit=GATE_DEPTH, filters=filters, mode="dense"),
        retriever.search(question, limit=GATE_DEPTH, filters=filters, mode="bm25"),
        retriever.present_terms([term for term in terms if not term.isdigit()], filters=filters),
    )
    coverage, missing = term_coverage(terms, [*sparse, *dense[:3]], retriever)
    absent = tuple(term for term in missing if not term.isdigit() and term not in present)
    return CoverageSignals(dense[0].score if dense else 0.0, coverage, missing, absent)


def decide(signals: CoverageSignals, thresholds: CoverageThresholds | None = None) -> bool:
    """True (answer) when the best passage is very close; else False when the question names something the book
    never mentions; else True when the best passage is close enough and holds enough of the terms."""
    limits = thresholds or CoverageThresholds()
    if signals.dense_cosine >= limits.sure_dense_cosine:
        return True
    if signals.absent_terms:
        return False
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
