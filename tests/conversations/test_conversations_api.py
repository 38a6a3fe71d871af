"""The history API: list (cursor pages, newest first), read, delete, feedback — each scoped to its owner."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI

from bookchat.conversations.repository import decode_conversation_cursor, encode_conversation_cursor, title_from
from tests.chat.fixtures import Reader, reader_on
from tests.fakes.llm_server import FakeLLMServer, Text


async def ask(reader: Reader, message: str, conversation_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if conversation_id:
        body["conversation_id"] = conversation_id
    response = await reader.http.post("/api/chat", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_list_is_newest_first_with_cursor_pages(reader: Reader) -> None:
    ids = [(await ask(reader, f"Question number {i} about lidar?"))["conversation_id"] for i in range(5)]
    # Activity moves a conversation to the top.
    await ask(reader, "A follow-up", ids[0])
    expected = [ids[0], ids[4], ids[3], ids[2], ids[1]]

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await reader.http.get("/api/conversations", params=params)).json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    assert pages == 3
    first = (await reader.http.get("/api/conversations", params={"limit": 1})).json()["items"][0]
    assert first["title"] == "Question number 0 about lidar?"  # the first question, not the follow-up
    assert first["message_count"] == 4


async def test_bad_cursor_and_limits(reader: Reader) -> None:
    assert (await reader.http.get("/api/conversations", params={"cursor": "garbage!"})).status_code == 400
    assert (await reader.http.get("/api/conversations", params={"limit": 0})).status_code == 422
    assert (await reader.http.get("/api/conversations", params={"limit": 101})).status_code == 422


async def test_others_conversations_are_invisible(reader: Reader, chat_app: FastAPI) -> None:
    mine = await ask(reader, "What is URDF?")
    conversation_id = mine["conversation_id"]
    async with reader_on(chat_app) as stranger:
        assert (await stranger.http.get("/api/conversations")).json()["items"] == []
        assert (await stranger.http.get(f"/api/conversations/{conversation_id}")).status_code == 404
        assert (await stranger.http.delete(f"/api/conversations/{conversation_id}")).status_code == 404
        feedback = await stranger.http.post(f"/api/messages/{mine['message_id']}/feedback", json={"rating": "down"})
        assert feedback.status_code == 404
    assert (await reader.http.get(f"/api/conversations/{conversation_id}")).status_code == 200
    missing = await reader.http.get(f"/api/conversations/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


async def test_delete_removes_the_conversation(reader: Reader) -> None:
    reply = await ask(reader, "What are ROS 2 topics?")
    await reader.http.post(f"/api/messages/{reply['message_id']}/feedback", json={"rating": "up"})
    response = await reader.http.delete(f"/api/conversations/{reply['conversation_id']}")
    assert response.status_code == 204
    assert (await reader.http.get(f"/api/conversations/{reply['conversation_id']}")).status_code == 404
    assert (await reader.http.delete(f"/api/conversations/{reply['conversation_id']}")).status_code == 404
    assert (await reader.http.get("/api/conversations")).json()["items"] == []


async def test_feedback_on_answers(reader: Reader, llm: FakeLLMServer) -> None:
    llm.script(Text("Topics carry messages [1]."))
    reply = await ask(reader, "What are ROS 2 topics?")
    url = f"/api/messages/{reply['message_id']}/feedback"
    first = await reader.http.post(url, json={"rating": "up", "comment": "Clear."})
    assert first.status_code == 200, first.text
    assert first.json()["rating"] == "up"
    again = await reader.http.post(url, json={"rating": "down"})
    assert (again.json()["rating"], again.json()["comment"]) == ("down", None)
    detail = (await reader.http.get(f"/api/conversations/{reply['conversation_id']}")).json()
    answer = detail["messages"][1]
    assert answer["feedback"]["rating"] == "down"
    assert detail["messages"][0]["feedback"] is None

    on_question = await reader.http.post(f"/api/messages/{reply['user_message_id']}/feedback", json={"rating": "up"})
    assert on_question.status_code == 422
    assert (await reader.http.post(f"/api/messages/{uuid.uuid4()}/feedback", json={"rating": "up"})).status_code == 404


@pytest.mark.parametrize(
    "body",
    [{"rating": "meh"}, {"rating": "up", "comment": "x" * 2001}, {"rating": "up", "extra": True}, {}],
)
async def test_feedback_validation(reader: Reader, body: dict[str, Any]) -> None:
    reply = await ask(reader, "What is Isaac Sim?")
    response = await reader.http.post(f"/api/messages/{reply['message_id']}/feedback", json=body)
    assert response.status_code == 422


async def test_history_needs_authentication(chat_app: FastAPI) -> None:
    import httpx

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=chat_app), base_url="http://t") as anonymous:
        assert (await anonymous.get("/api/conversations")).status_code == 401


def test_titles_and_cursors() -> None:
    assert title_from("  How   does\nit work?  ") == "How does it work?"
    long = title_from("word " * 40)
    assert len(long) <= 80
    assert long.endswith("…")
    from datetime import UTC, datetime

    stamp, identifier = datetime.now(UTC), uuid.uuid4()
    assert decode_conversation_cursor(encode_conversation_cursor(stamp, identifier)) == (stamp, identifier)


async def test_a_stored_page_url_keeps_neither_query_nor_fragment(reader: Reader) -> None:
    body = {
        "message": "What does this say?",
        "selected_text": "URDF describes a robot's links and joints.",
        "page_url": "https://book.example.org/docs/urdf?token=s3cret&utm_source=mail#joints",
    }
    response = await reader.http.post("/api/chat", json=body)
    assert response.status_code == 200, response.text
    conversation = (await reader.http.get(f"/api/conversations/{response.json()['conversation_id']}")).json()
    question = next(message for message in conversation["messages"] if message["role"] == "user")
    assert question["page_url"] == "https://book.example.org/docs/urdf"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://book.example.org/docs/urdf?x=1#top", "https://book.example.org/docs/urdf"),
        ("https://book.example.org/docs/urdf#top", "https://book.example.org/docs/urdf"),
        ("https://book.example.org/docs/urdf", "https://book.example.org/docs/urdf"),
        ("http://book.example.org:8080/?q", "http://book.example.org:8080/"),
        ("https://reader:pw@book.example.org/a", "https://book.example.org/a"),
    ],
)
def test_page_address_is_origin_and_path(given: str, kept: str) -> None:
    from bookchat.text import page_address

    assert page_address(given) == kept
