"""Follow-up search: the dependency detector, the conversation query, weighted RRF and searches on a small corpus."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

import pytest

from bookchat.retrieval.followups import (
    FOLLOWUP_METHODS,
    SELF_CONTAINED_WEIGHTS,
    conversation_query,
    fuse_hits,
    interleave_hits,
    looks_dependent,
    search_followup,
    wants_rewrite,
)
from bookchat.retrieval.query_script import other_script_share
from bookchat.retrieval.search import HybridRetriever, Passage
from tests.retrieval.helpers import passage

GAZEBO = str(uuid5(UUID(int=2), "book/gazebo.md"))
ISAAC = str(uuid5(UUID(int=2), "book/isaac.md"))
NAV = str(uuid5(UUID(int=2), "book/nav2.md"))


def corpus() -> list[Passage]:
    gazebo: dict[str, Any] = {"source_path": "book/gazebo.md", "title": "Gazebo"}
    isaac: dict[str, Any] = {"source_path": "book/isaac.md", "title": "Isaac Sim"}
    nav: dict[str, Any] = {"source_path": "book/nav2.md", "title": "Navigation with Nav2"}
    return [
        passage(GAZEBO, 0, "Launch the Gazebo simulator with ros2 launch gazebo_ros gazebo.launch.py.", **gazebo),
        passage(GAZEBO, 1, "To add a camera, attach the libgazebo_ros_camera plugin to a link in the SDF.", **gazebo),
        passage(ISAAC, 0, "Start Isaac Sim from the Omniverse launcher and open a stage.", **isaac),
        passage(ISAAC, 1, "To add a camera, create a Camera prim on the stage and set its resolution.", **isaac),
        passage(NAV, 0, "Nav2 costmap layers: the static layer, the obstacle layer and the inflation layer.", **nav),
        passage(NAV, 1, "The planner server computes a path through the costmap for the controller.", **nav),
    ]


@pytest.mark.parametrize(
    "message",
    [
        "And how do I add a camera to it?",
        "What about the camera?",
        "It keeps crashing when I start it. Why?",
        "Can they be compressed too?",
        "Show me a code example of one.",
        "Which one is easier to debug?",
    ],
)
def test_dependent_messages_are_detected(message: str) -> None:
    assert looks_dependent(message)


@pytest.mark.parametrize(
    "message",
    [
        "How do Nav2 costmap layers keep a robot away from walls?",
        "What does robot_state_publisher do?",
        "How do I record only the camera and lidar topics with ros2 bag?",
        "",
    ],
)
def test_self_contained_messages_are_left_alone(message: str) -> None:
    assert not looks_dependent(message)


def test_conversation_query_puts_the_last_question_first() -> None:
    assert conversation_query("And a camera?", ["Old question", "How do I launch Gazebo?"]) == (
        "How do I launch Gazebo?\nAnd a camera?"
    )
    assert conversation_query("And a camera?", ["a", "b"], history=2) == "a\nb\nAnd a camera?"
    assert conversation_query("And a camera?", []) == "And a camera?"


def test_fuse_hits_weights_lists_and_sums_shared_chunks() -> None:
    one, two, three = (passage(GAZEBO, i, f"text {i}") for i in range(3))
    fused = fuse_hits([[one, two], [three, two]], [1.0, 1.0], limit=3)
    assert fused[0].chunk_id == two.chunk_id  # in both lists
    heavy = fuse_hits([[one], [three]], [1.0, 2.0], limit=2)
    assert [hit.chunk_id for hit in heavy] == [three.chunk_id, one.chunk_id]
    assert heavy[0].score == pytest.approx(2.0 / 61)
    with pytest.raises(ValueError, match="one weight per hit list"):
        fuse_hits([[one]], [1.0, 2.0], limit=1)


async def test_dependent_followup_retrieves_the_first_turns_topic(retriever: HybridRetriever) -> None:
    await retriever.index_passages(corpus())
    previous = ["How do I launch the Gazebo simulator?"]
    for method in ("concat", "detect_concat", "weighted_fuse"):
        found = await search_followup(retriever, "And how do I add a camera to it?", previous, method=method, limit=2)
        assert found.dependent
        assert found.hits[0].source_path == "book/gazebo.md", method
        # Gazebo's camera passage, not Isaac Sim's, answers it.
        assert ("book/gazebo.md", 1) in [(hit.source_path, hit.chunk_index) for hit in found.hits], method


async def test_self_contained_topic_change_keeps_its_own_topic(retriever: HybridRetriever) -> None:
    await retriever.index_passages(corpus())
    found = await search_followup(
        retriever,
        "How do Nav2 costmap layers keep a robot away from obstacles?",
        ["How do I add a camera in Isaac Sim?"],
        method="detect_concat",
        limit=3,
    )
    assert not found.dependent
    assert found.weights == SELF_CONTAINED_WEIGHTS
    assert found.hits[0].source_path == "book/nav2.md"


async def test_first_turn_and_alone_search_the_message_only(retriever: HybridRetriever) -> None:
    await retriever.index_passages(corpus())
    for method in FOLLOWUP_METHODS:
        first = await search_followup(retriever, "And the camera?", [], method=method, limit=2)
        assert first.queries == ("And the camera?",)
    alone = await search_followup(retriever, "And the camera?", ["How do I start Isaac Sim?"], method="alone")
    assert alone.queries == ("And the camera?",)
    with pytest.raises(ValueError, match="unknown follow-up method"):
        await search_followup(retriever, "x", [], method="nope")  # type: ignore[arg-type]


def test_interleave_keeps_the_leading_lists_first_hit_and_half_the_places() -> None:
    a, b, c, d, e = (passage(GAZEBO, i, f"text {i}") for i in range(5))
    merged = interleave_hits([a, b, c], [d, a, e], limit=4)
    assert [hit.chunk_id for hit in merged] == [a.chunk_id, d.chunk_id, b.chunk_id, c.chunk_id]
    assert interleave_hits([a], [], limit=3) == [a]
    assert interleave_hits([], [b, c], limit=1) == [b]


@pytest.mark.parametrize(
    ("message", "previous", "wanted"),
    [
        ("And how do I add a camera to it?", ["How do I launch Gazebo?"], True),  # dependent follow-up
        ("And how do I add a camera to it?", [], False),  # a first turn is searched as it is
        ("How do Nav2 costmap layers work?", ["How do I launch Gazebo?"], False),  # self-contained
        ("ROS 2 کیا ہے، اور اسے middleware کیوں کہا جاتا ہے؟", [], True),  # Urdu, English terms inside
        ("domain randomization کیا ہے؟", [], True),
        ("What is θ in the DH table of the arm?", [], False),  # a Greek symbol in an English question
    ],
)
def test_a_rewrite_is_wanted_only_where_it_may_help(message: str, previous: list[str], wanted: bool) -> None:
    assert wants_rewrite(message, previous) is wanted


def test_other_script_share_counts_letters_only() -> None:
    assert other_script_share("1234 !? ...") == 0.0
    assert other_script_share("ROS 2") == 0.0
    assert other_script_share("روبوٹ") == 1.0
    assert other_script_share("ab روبو") == pytest.approx(4 / 6)


async def test_a_rewrite_is_merged_after_the_model_free_hits(retriever: HybridRetriever) -> None:
    await retriever.index_passages(corpus())
    previous = ["How do I launch the Gazebo simulator?"]

    async def rewrite(query: str | None) -> str | None:
        return query

    plain = await search_followup(retriever, "And how do I add a camera to it?", previous, limit=3)
    wrong = await search_followup(
        retriever, "And how do I add a camera to it?", previous, limit=3, rewrite=rewrite("Nav2 planner server")
    )
    assert wrong.rewritten == "Nav2 planner server"
    assert wrong.searched == "Nav2 planner server"
    assert wrong.hits[0].chunk_id == plain.hits[0].chunk_id  # the model-free top passage stays first
    assert wrong.hits[1].source_path == "book/nav2.md"
    for nothing in (None, "   ", plain.queries[-1]):
        same = await search_followup(
            retriever, "And how do I add a camera to it?", previous, limit=3, rewrite=rewrite(nothing)
        )
        assert [hit.chunk_id for hit in same.hits] == [hit.chunk_id for hit in plain.hits]
        assert same.rewritten is None
        assert same.searched == plain.queries[-1]
