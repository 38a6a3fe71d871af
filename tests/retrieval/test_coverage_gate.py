"""Coverage gate: the decision rule on given signals, term coverage, and verdicts on a small indexed corpus."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from bookchat.retrieval.coverage_gate import (
    CoverageSignals,
    CoverageThresholds,
    content_terms,
    coverage_signals,
    decide,
    judge_coverage,
    misspelling_of_any,
    term_coverage,
)
from bookchat.retrieval.search import HybridRetriever, Passage, SearchFilters
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


def handbook() -> list[Passage]:
    """A tiny product handbook: the answer to "how long" is there, in words the question does not use."""
    doc = str(uuid5(UUID(int=3), "handbook/battery.md"))
    meta: dict[str, Any] = {"source_path": "handbook/battery.md", "title": "Battery"}
    return [
        passage(doc, 0, "Charging the battery: with the supplied charger, charging lasts forty minutes.", **meta),
        passage(doc, 1, "Store the battery at room temperature and keep it away from water.", **meta),
        passage(doc, 2, "The status light turns green when the battery is full.", **meta),
    ]


def test_content_terms_leave_out_the_question_frame(retriever: HybridRetriever) -> None:
    assert content_terms("How long does charging the battery take?", retriever) == ["charg", "batteri"]
    assert content_terms("How many sensors does it need, and what's the best way to mount them?", retriever) == [
        "sensor",
        "mount",
    ]
    # A word after "how" is frame only when it asks for a quantity or manner; elsewhere it is a topic word.
    assert "long" in content_terms("What is a long exposure?", retriever)


async def test_gate_answers_a_how_long_question_the_handbook_covers(retriever: HybridRetriever) -> None:
    await retriever.index_passages(handbook())
    verdict = await judge_coverage(retriever, "How long does charging the battery take?")
    assert verdict.signals.term_coverage == 1.0
    assert verdict.answered


async def test_gate_refuses_an_off_topic_question_made_of_common_words(retriever: HybridRetriever) -> None:
    await retriever.index_passages(handbook())
    verdict = await judge_coverage(retriever, "How long does it take to bake bread?")
    assert not verdict.answered
    assert {"bake", "bread"} <= set(verdict.signals.missing_terms)


def test_a_term_the_book_never_mentions_refuses_unless_very_close() -> None:
    limits = CoverageThresholds(min_dense_cosine=0.3, min_term_coverage=0.0, sure_dense_cosine=0.66)
    assert not decide(CoverageSignals(0.55, 0.8, ("lora",), ("lora",)), limits)
    assert decide(CoverageSignals(0.55, 0.8, ("lora",), ()), limits)  # missing from the best passages only
    assert decide(CoverageSignals(0.7, 0.8, ("lora",), ("lora",)), limits)  # a paraphrase very close to a passage


async def test_absent_terms_are_those_no_passage_of_the_book_holds(retriever: HybridRetriever) -> None:
    await retriever.index_passages(corpus())
    # "costmap" is in the book (the Nav2 page), far from the Gazebo passages this question finds; "unitree" nowhere.
    signals = await coverage_signals(retriever, "How do I mount a Unitree camera in Gazebo with a costmap?")
    assert "unitre" in signals.absent_terms
    assert "costmap" not in signals.absent_terms
    assert not decide(signals)
    assert await retriever.present_terms(["costmap", "unitre", "gazebo"]) == {"costmap", "gazebo"}
    assert await retriever.present_terms([]) == set()


async def test_absent_terms_respect_the_filters(retriever: HybridRetriever) -> None:
    await retriever.index_passages(corpus())
    everywhere = await retriever.present_terms(["costmap", "omnivers"])
    in_gazebo = await retriever.present_terms(["costmap", "omnivers"], filters=SearchFilters(path_prefix="book/gazebo"))
    assert everywhere == {"costmap", "omnivers"}
    assert in_gazebo == set()


async def test_numbers_and_typos_are_not_absent_terms(retriever: HybridRetriever) -> None:
    await retriever.index_passages(corpus())
    verdict = await judge_coverage(retriever, "How do I add a cmaera plugin to a link in Gazebo 11?")
    assert verdict.signals.absent_terms == ()
    assert verdict.answered
    assert misspelling_of_any("simluat", {"simul", "simulat"})
    assert not misspelling_of_any("rust", {"test", "must"})  # four letters: exact only
    assert not misspelling_of_any("camera", set())
