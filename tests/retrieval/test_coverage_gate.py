"""Coverage gate: the decision rule on given signals, term coverage, and verdicts on a small indexed corpus."""

from __future__ import annotations

from uuid import UUID, uuid5

from bookchat.retrieval.coverage_gate import (
    CoverageSignals,
    CoverageThresholds,
    decide,
    judge_coverage,
    term_coverage,
)
from bookchat.retrieval.search import HybridRetriever
from tests.retrieval.helpers import passage
from tests.retrieval.test_followups import corpus

DOC = str(uuid5(UUID(int=3), "book/gazebo.md"))


def test_decide_needs_closeness_and_terms_unless_very_close() -> None:
    limits = CoverageThresholds(min_dense_cosine=0.3, min_term_coverage=0.9, sure_dense_cosine=0.6)
    assert decide(CoverageSignals(0.65, 0.0, ("pizza",)), limits)  # very close: passes whatever its terms
    assert decide(CoverageSignals(0.4, 1.0, ()), limits)
    assert not decide(CoverageSignals(0.4, 0.5, ("unitree",)), limits)  # a rare term the book never has
    assert not decide(CoverageSignals(0.2, 1.0, ()), limits)  # terms alone are not enough


def test_term_coverage_counts_stemmed_terms_in_the_passages(retriever: HybridRetriever) -> None:
    hits = [passage(DOC, 0, "Launching the simulators with a launch file.", title="Gazebo")]
    terms = retriever.sparse.terms("launch simulator gazebo pizza")
    coverage, missing = term_coverage(terms, hits, retriever)
    assert missing == ("pizza",)
    assert coverage == 0.75
    assert term_coverage([], hits, retriever) == (1.0, ())


async def test_gate_refuses_off_topic_and_passes_on_topic(retriever: HybridRetriever) -> None:
    await retriever.index_passages(corpus())
    off = await judge_coverage(retriever, "What's a good recipe for a moist chocolate cake?")
    assert not off.answered
    assert {"recip", "chocol"} <= set(off.signals.missing_terms)
    on = await judge_coverage(retriever, "How do I add a camera plugin to a link in Gazebo?")
    assert on.answered
    assert on.signals.term_coverage == 1.0
    assert on.signals.dense_cosine > off.signals.dense_cosine
