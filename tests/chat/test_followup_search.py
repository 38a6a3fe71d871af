"""A follow-up's first search takes the conversation's previous question; the query run is stored on the answer."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from tests.chat.fixtures import reader_on
from tests.chat.test_chat_api import LIDAR_QUESTION, conversation, passage_number
from tests.fakes.llm_server import FakeLLMServer, Text

FOLLOWUP = "And how many rays does it cast?"
GAZEBO = "Simulating sensors in Gazebo"
URDF = "Describing a robot with URDF"


async def ask(reader: Any, message: str, conversation_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    response = await reader.http.post("/api/chat", json=body)
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    return reply


async def test_a_first_turn_is_searched_with_the_message_alone(reader: Any, llm: FakeLLMServer) -> None:
    llm.script(Text("Gazebo casts rays [1]."))
    first = await ask(reader, LIDAR_QUESTION)
    assert passage_number(llm.last_request, GAZEBO) == 1
    stored = await conversation(reader.http, first["conversation_id"])
    assert stored["messages"][0]["search_query"] is None  # the question row
    assert stored["messages"][1]["search_query"] == LIDAR_QUESTION


async def test_a_follow_up_is_searched_with_the_previous_question(reader: Any, llm: FakeLLMServer) -> None:
    llm.script(Text("Gazebo casts rays [1]."), Text("The ray count is set in the plugin [1]."))
    first = await ask(reader, LIDAR_QUESTION)
    second = await ask(reader, FOLLOWUP, first["conversation_id"])
    assert passage_number(llm.last_request, GAZEBO) == 1
    assert second["citations"][0]["title"] == GAZEBO
    stored = await conversation(reader.http, first["conversation_id"])
    query = stored["messages"][3]["search_query"]
    for word in ("Gazebo", "lidar", "rays", "cast"):
        assert word in query


async def test_a_self_contained_topic_change_finds_its_own_page(reader: Any, llm: FakeLLMServer) -> None:
    llm.script(Text("Gazebo casts rays [1]."), Text("It describes links and joints [1]."))
    first = await ask(reader, LIDAR_QUESTION)
    await ask(reader, "What is a URDF file?", first["conversation_id"])
    assert passage_number(llm.last_request, URDF) == 1


async def test_extractive_follow_ups_use_the_conversation_too(extractive_app: FastAPI) -> None:
    async with reader_on(extractive_app) as reader:
        first = await ask(reader, LIDAR_QUESTION)
        second = await ask(reader, FOLLOWUP, first["conversation_id"])
        assert second["citations"][0]["title"] == GAZEBO
        stored = await conversation(reader.http, first["conversation_id"])
        assert "lidar" in stored["messages"][3]["search_query"]


async def test_selection_mode_stores_no_search_query(reader: Any, llm: FakeLLMServer) -> None:
    llm.script(Text("It has six joints [1]."))
    response = await reader.http.post(
        "/api/chat", json={"message": "How many joints?", "selected_text": "The arm has six revolute joints."}
    )
    assert response.status_code == 200, response.text
    stored = await conversation(reader.http, response.json()["conversation_id"])
    assert stored["messages"][1]["search_query"] is None
