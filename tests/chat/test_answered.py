"""`answered`: the coverage gate refuses off-topic questions without a model call; the model's NOT_COVERED marker."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from bookchat.chat.coverage import NOT_COVERED_MARKER, NOT_COVERED_REPLY, MarkerFilter
from tests.chat.fixtures import parse_sse, reader_on
from tests.chat.test_chat_api import LIDAR_QUESTION, conversation
from tests.fakes.llm_server import FakeLLMServer, Text

OFF_TOPIC = "What is a good recipe for chocolate cake?"
MARKED = "NOT_COVERED\nThe passages do not say how far the lidar reaches."
MARKED_CHUNKS = ["NOT", "_COV", "ERED", "\n", "The passages ", "do not say ", "how far the lidar reaches."]


def assert_closest_pages(pages: list[dict[str, Any]]) -> None:
    assert 1 <= len(pages) <= 3
    for page in pages:
        assert set(page) == {"title", "url", "heading_path"}
        assert page["url"].startswith("https://book.example.org/docs/")


async def test_an_off_topic_question_is_refused_without_a_model_call(reader: Any, llm: FakeLLMServer) -> None:
    before = len(llm.requests)
    response = await reader.http.post("/api/chat", json={"message": OFF_TOPIC})
    assert response.status_code == 200, response.text
    reply = response.json()
    assert len(llm.requests) == before  # the model was not called
    assert reply["answered"] is False
    assert reply["answer"] == NOT_COVERED_REPLY
    assert reply["citations"] == []
    assert reply["sources"] == []
    assert_closest_pages(reply["closest_pages"])
    stored = await conversation(reader.http, reply["conversation_id"])
    answer = stored["messages"][1]
    assert answer["answered"] is False
    assert answer["content"] == NOT_COVERED_REPLY
    assert answer["status"] == "ok"
    assert stored["messages"][0]["answered"] is None  # the question


async def test_an_off_topic_question_streams_a_refusal(reader: Any, llm: FakeLLMServer) -> None:
    before = len(llm.requests)
    response = await reader.http.post("/api/chat", json={"message": OFF_TOPIC, "stream": True})
    events = parse_sse(response.text)
    assert len(llm.requests) == before
    assert [name for name, _ in events] == ["meta", "citations", "delta", "done"]
    assert events[1][1]["citations"] == []
    assert events[2][1]["text"] == NOT_COVERED_REPLY
    done = events[-1][1]
    assert done["answered"] is False
    assert done["citations"] == []
    assert_closest_pages(done["closest_pages"])


async def test_an_extractive_off_topic_question_is_refused(extractive_app: FastAPI) -> None:
    async with reader_on(extractive_app) as reader:
        reply = (await reader.http.post("/api/chat", json={"message": OFF_TOPIC})).json()
    assert reply["answered"] is False
    assert reply["citations"] == []


async def test_a_normal_answer_is_answered(reader: Any, llm: FakeLLMServer) -> None:
    llm.script(Text("Gazebo casts rays [1]."), Text("Gazebo casts rays [1]."))
    reply = (await reader.http.post("/api/chat", json={"message": LIDAR_QUESTION})).json()
    assert reply["answered"] is True
    assert reply["closest_pages"] == []
    stored = await conversation(reader.http, reply["conversation_id"])
    assert stored["messages"][1]["answered"] is True
    streamed = await reader.http.post("/api/chat", json={"message": LIDAR_QUESTION, "stream": True})
    assert parse_sse(streamed.text)[-1][1]["answered"] is True


async def test_the_model_saying_not_covered_is_answered_false(reader: Any, llm: FakeLLMServer) -> None:
    llm.script(Text(MARKED))
    reply = (await reader.http.post("/api/chat", json={"message": LIDAR_QUESTION})).json()
    assert reply["answered"] is False
    assert reply["answer"] == "The passages do not say how far the lidar reaches."
    assert NOT_COVERED_MARKER not in reply["answer"]
    stored = await conversation(reader.http, reply["conversation_id"])
    assert stored["messages"][1]["answered"] is False
    assert NOT_COVERED_MARKER not in stored["messages"][1]["content"]


async def test_the_marker_never_reaches_a_delta(reader: Any, llm: FakeLLMServer) -> None:
    llm.script(Text(MARKED, chunks=MARKED_CHUNKS))
    response = await reader.http.post("/api/chat", json={"message": LIDAR_QUESTION, "stream": True})
    events = parse_sse(response.text)
    deltas = [data["text"] for name, data in events if name == "delta"]
    assert deltas
    for text in deltas:
        assert "NOT" not in text
        assert "COV" not in text
        assert "ERED" not in text
    assert "".join(deltas) == "The passages do not say how far the lidar reaches."
    assert events[-1][1]["answered"] is False
    stored = await conversation(reader.http, events[0][1]["conversation_id"])
    assert stored["messages"][1]["content"] == "".join(deltas)
    assert stored["messages"][1]["answered"] is False


async def test_selection_mode_uses_the_marker_too(reader: Any, llm: FakeLLMServer) -> None:
    llm.script(Text("NOT_COVERED\nThe selection does not say."))
    reply = (
        await reader.http.post(
            "/api/chat", json={"message": "How fast is it?", "selected_text": "The arm has six revolute joints."}
        )
    ).json()
    assert reply["answered"] is False
    assert reply["answer"] == "The selection does not say."
    assert "NOT_COVERED" in llm.last_request["messages"][0]["content"]  # the prompt asks for it


def test_marker_filter_holds_back_only_while_it_may_be_the_marker() -> None:
    plain = MarkerFilter()
    assert plain.feed("Nodes") == "Nodes"  # cannot be the marker: sent at once
    assert plain.found is False
    held = MarkerFilter()
    assert held.feed("NOT") == ""  # could start "NOT_COVERED"
    assert held.feed(" every node") == "NOT every node"
    assert held.feed(" messages") == " messages"
    assert held.found is False
    marked = MarkerFilter()
    assert "".join([marked.feed(piece) for piece in MARKED_CHUNKS]) + marked.finish() == MARKED.split("\n", 1)[1]
    assert marked.found is True
    alone = MarkerFilter()
    assert alone.feed("NOT_COVERED") == ""
    assert alone.finish() == ""
    assert alone.found is True
