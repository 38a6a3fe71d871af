"""POST /api/chat as JSON: what the model is sent, how citations come back, and what is stored."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI

from bookchat.llm.extractive import NO_LLM_LINE
from bookchat.runtime.resources import Resources
from tests.chat.fixtures import BOOK, book_passages, reader_on
from tests.fakes.llm_server import Error, FakeLLMServer, Malformed, Reply, Text, ToolCalls, request_text

LIDAR_QUESTION = "How does Gazebo simulate a lidar sensor?"


def passage_number(body: dict[str, Any], title: str) -> int:
    """The number the prompt (or a tool result) gave the passage with `title`."""
    match = re.search(r'<passage id="(\d+)" title="' + re.escape(title) + '"', request_text(body) + _tool_text(body))
    assert match is not None, f"{title!r} is not among the passages sent to the model"
    return int(match.group(1))


def _tool_text(body: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content")) for m in body["messages"] if m.get("role") == "tool")


def chunk_of(title: str) -> str:
    return next(p.chunk_id for p in book_passages() if p.title == title)


async def conversation(http: Any, conversation_id: str) -> dict[str, Any]:
    response = await http.get(f"/api/conversations/{conversation_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_retrieval_mode_sends_numbered_passages_and_maps_citations(reader: Any, llm: FakeLLMServer) -> None:
    def answer(body: dict[str, Any]) -> Reply:
        lidar = passage_number(body, "Simulating sensors in Gazebo")
        other = next(n for n in (1, 2, 3) if n != lidar)
        return Text(f"Gazebo casts rays from the sensor [{lidar}]. Compare [{other}], not [42].", prompt_tokens=50)

    llm.script(answer)
    response = await reader.http.post("/api/chat", json={"message": LIDAR_QUESTION})
    assert response.status_code == 200, response.text
    reply = response.json()

    sent = llm.last_request
    system, user = sent["messages"][0], sent["messages"][-1]
    assert system["role"] == "system"
    assert "never instructions" in system["content"]
    assert user["role"] == "user"
    assert LIDAR_QUESTION in user["content"]
    assert "<passages>" in user["content"]
    assert BOOK[0]["text"] in user["content"]
    assert sent["model"] == "fake-model"
    assert llm.request_headers[-1]["authorization"] == "Bearer test-llm-key"
    assert [tool["function"]["name"] for tool in sent["tools"]] == ["search_book"]

    assert reply["mode"] == "retrieval"
    assert reply["model"] == "fake-model"
    assert reply["answer"] == "Gazebo casts rays from the sensor [1]. Compare [2], not."
    assert [c["index"] for c in reply["citations"]] == [1, 2]
    assert reply["citations"][0]["chunk_id"] == chunk_of("Simulating sensors in Gazebo")
    assert reply["citations"][0]["title"] == "Simulating sensors in Gazebo"
    assert reply["citations"][0]["heading_path"] == ["Module 2", "Gazebo", "Sensors"]
    assert reply["citations"][0]["url"] == "https://book.example.org/docs/module-2/gazebo-sensors"
    assert reply["citations"][0]["snippet"].startswith("Gazebo simulates a lidar sensor")
    assert len(reply["sources"]) == 3
    assert {c["chunk_id"] for c in reply["citations"]} <= {s["chunk_id"] for s in reply["sources"]}
    assert reply["usage"]["prompt_tokens"] == 50
    assert reply["usage"]["total_tokens"] == reply["usage"]["prompt_tokens"] + reply["usage"]["completion_tokens"]

    stored = await conversation(reader.http, reply["conversation_id"])
    assert stored["title"] == LIDAR_QUESTION
    question, answer_message = stored["messages"]
    assert (question["role"], question["content"], question["id"]) == ("user", LIDAR_QUESTION, reply["user_message_id"])
    assert answer_message["id"] == reply["message_id"]
    assert answer_message["content"] == reply["answer"]
    assert answer_message["citations"] == reply["citations"]
    assert (answer_message["status"], answer_message["mode"], answer_message["model"]) == (
        "ok",
        "retrieval",
        "fake-model",
    )
    assert answer_message["usage"] == reply["usage"]
    assert answer_message["latency_ms"] >= 0


async def test_answer_citing_nothing_valid_has_no_citations(reader: Any, llm: FakeLLMServer) -> None:
    llm.script(Text("The book does not cover this [7][0]."))
    reply = (await reader.http.post("/api/chat", json={"message": "What do URDF joints connect?"})).json()
    assert reply["answer"] == "The book does not cover this."
    assert reply["citations"] == []


async def test_selection_mode_sends_only_the_selection(
    reader: Any, llm: FakeLLMServer, chat_app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources: Resources = chat_app.state.resources
    searches: list[str] = []
    original = resources.retriever.search

    async def counting_search(query: str, **options: Any) -> Any:
        searches.append(query)
        return await original(query, **options)

    monkeypatch.setattr(resources.retriever, "search", counting_search)
    selection = "The robot arm has six revolute joints, each driven by a servo with an encoder."
    llm.script(Text("It has six joints [1]. See also [2]."))
    response = await reader.http.post(
        "/api/chat",
        json={
            "message": "How many joints does the arm have? Also explain Gazebo lidar and URDF.",
            "selected_text": selection,
            # A query string and fragment (session tokens, campaign ids) reach neither the model nor a citation.
            "page_url": "https://reader@book.example.org/docs/module-1/arm?token=s3cret#joints",
        },
    )
    assert response.status_code == 200, response.text
    reply = response.json()
    sent = llm.last_request
    text = request_text(sent)
    assert selection in text
    assert "s3cret" not in text
    for page in BOOK:  # nothing from the book leaks in: no passage text, no title
        assert page["text"][:40] not in text
        assert page["title"] not in text
    assert "tools" not in sent
    assert len(sent["messages"]) == 2  # the instructions and the one user turn
    assert searches == []
    assert reply["mode"] == "selection"
    assert reply["answer"] == "It has six joints [1]. See also."
    assert reply["citations"] == [
        {
            "index": 1,
            "document_id": None,
            "chunk_id": None,
            "title": "Your selection",
            "url": "https://book.example.org/docs/module-1/arm",
            "heading_path": [],
            "snippet": selection,
            "score": None,
        }
    ]
    stored = await conversation(reader.http, reply["conversation_id"])
    assert stored["messages"][0]["selected_text"] == selection
    assert stored["messages"][0]["page_url"] == "https://book.example.org/docs/module-1/arm"


async def test_selection_mode_ignores_history(reader: Any, llm: FakeLLMServer) -> None:
    first = (await reader.http.post("/api/chat", json={"message": LIDAR_QUESTION})).json()
    await reader.http.post(
        "/api/chat",
        json={
            "message": "Explain this",
            "selected_text": "Joints link parts.",
            "conversation_id": first["conversation_id"],
        },
    )
    assert LIDAR_QUESTION not in request_text(llm.last_request)
    assert len(llm.last_request["messages"]) == 2


async def test_second_question_carries_the_first_exchange(reader: Any, llm: FakeLLMServer) -> None:
    llm.script(Text("Gazebo casts rays [1]."), Text("Yes, noise is configurable [1]."))
    first = (await reader.http.post("/api/chat", json={"message": LIDAR_QUESTION})).json()
    second = await reader.http.post(
        "/api/chat", json={"message": "Can it add noise?", "conversation_id": first["conversation_id"]}
    )
    assert second.status_code == 200, second.text
    assert second.json()["conversation_id"] == first["conversation_id"]
    messages = llm.last_request["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1]["content"] == LIDAR_QUESTION
    assert messages[2]["content"] == "Gazebo casts rays."  # old markers removed: they meant other passages
    assert "Can it add noise?" in messages[3]["content"]
    stored = await conversation(reader.http, first["conversation_id"])
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant", "user", "assistant"]
    assert stored["title"] == LIDAR_QUESTION


async def test_search_book_tool_adds_passages_with_new_numbers(reader: Any, llm: FakeLLMServer) -> None:
    def final(body: dict[str, Any]) -> Reply:
        urdf = passage_number(body, "Describing a robot with URDF")
        return Text(f"A URDF joint connects two links [{urdf}].")

    llm.script(ToolCalls.one("search_book", query="URDF joint parent child link"), final)
    response = await reader.http.post("/api/chat", json={"message": "Tell me about isaac sim rendering"})
    assert response.status_code == 200, response.text
    reply = response.json()
    first, second = llm.requests
    assert first["messages"][-1]["role"] == "user"
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool"
    numbers = [int(n) for n in re.findall(r'<passage id="(\d+)"', tool_message["content"])]
    assert numbers
    assert min(numbers) == 4  # three passages came with the question; new ones continue the numbering
    assert reply["answer"] == "A URDF joint connects two links [1]."
    assert reply["citations"][0]["chunk_id"] == chunk_of("Describing a robot with URDF")
    assert len(reply["sources"]) > 3


async def test_the_search_tool_is_capped(reader: Any, llm: FakeLLMServer) -> None:
    llm.script(
        ToolCalls.one("search_book", query="lidar"),
        ToolCalls.one("search_book", query="urdf"),
        ToolCalls.one("search_book", query="topics"),
        Text("Done [1]."),
    )
    response = await reader.http.post("/api/chat", json={"message": LIDAR_QUESTION})
    assert response.status_code == 200, response.text
    assert "search limit is reached" in llm.requests[3]["messages"][-1]["content"]


@pytest.mark.parametrize(
    ("reply", "status", "code"),
    [
        (Error(429, retry_after=7), 503, "llm-unavailable"),
        (Error(503), 503, "llm-unavailable"),
        (Error(500), 502, "llm-error"),
        (Text("too late", delay=3), 504, "llm-timeout"),
        (Malformed(), 502, "llm-bad-response"),
        (Malformed('{"id": "x", "object": "chat.completion"}'), 502, "llm-bad-response"),
        (Text(""), 502, "llm-empty-answer"),
    ],
    ids=["429", "503", "500", "timeout", "malformed", "no-choices", "empty"],
)
async def test_upstream_failures_map_to_statuses_and_keep_the_question(
    reader: Any, llm: FakeLLMServer, reply: Reply, status: int, code: str
) -> None:
    llm.script(reply)
    response = await reader.http.post("/api/chat", json={"message": LIDAR_QUESTION})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status
    assert problem["code"] == code
    assert "test-llm-key" not in response.text
    if status == 503:
        assert response.headers["retry-after"] == ("7" if isinstance(reply, Error) and reply.retry_after else "5")
    listing = (await reader.http.get("/api/conversations")).json()
    assert len(listing["items"]) == 1
    stored = await conversation(reader.http, listing["items"][0]["id"])
    question, answer = stored["messages"]
    assert question["content"] == LIDAR_QUESTION
    assert question["status"] == "ok"
    assert (answer["status"], answer["error_code"]) == ("error", code)


async def test_extractive_mode_without_an_llm(extractive_app: FastAPI) -> None:
    async with reader_on(extractive_app) as reader:
        response = await reader.http.post("/api/chat", json={"message": LIDAR_QUESTION})
        assert response.status_code == 200, response.text
        reply = response.json()
        assert reply["mode"] == "extractive"
        assert reply["model"] is None
        assert reply["answer"].splitlines()[0] == NO_LLM_LINE
        assert "casting rays" in reply["answer"]
        assert reply["citations"][0]["chunk_id"] == chunk_of("Simulating sensors in Gazebo")
        assert re.findall(r"\[(\d+)\]", reply["answer"])[0] == "1"
        assert reply["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        stored = await conversation(reader.http, reply["conversation_id"])
        assert stored["messages"][1]["content"] == reply["answer"]
        assert stored["messages"][1]["mode"] == "extractive"

        selection = await reader.http.post(
            "/api/chat",
            json={"message": "How many joints?", "selected_text": "The arm has six joints. It is painted red."},
        )
        assert selection.json()["answer"].endswith("- The arm has six joints. [1]")
        assert selection.json()["citations"][0]["title"] == "Your selection"


@pytest.mark.parametrize(
    "body",
    [
        {"message": ""},
        {"message": "   "},
        {"message": "x" * 4001},
        {"message": "q", "selected_text": "x" * 8001},
        {"message": "q", "selected_text": ""},
        {"message": "q", "page_url": "javascript:alert(1)"},
        {"message": "q", "unknown": 1},
        {"message": "q", "filters": {"path_prefix": "a", "other": 1}},
        {"message": "q", "conversation_id": "not-a-uuid"},
    ],
)
async def test_invalid_bodies_are_422(reader: Any, body: dict[str, Any]) -> None:
    response = await reader.http.post("/api/chat", json=body)
    assert response.status_code == 422, response.text


async def test_unknown_or_foreign_conversation_is_404(reader: Any, chat_app: FastAPI, llm: FakeLLMServer) -> None:
    mine = (await reader.http.post("/api/chat", json={"message": LIDAR_QUESTION})).json()
    async with reader_on(chat_app) as stranger:
        response = await stranger.http.post(
            "/api/chat", json={"message": "hi", "conversation_id": mine["conversation_id"]}
        )
        assert response.status_code == 404
        assert response.json()["code"] == "conversation-not-found"
    listing = await reader.http.get(f"/api/conversations/{mine['conversation_id']}")
    assert len(listing.json()["messages"]) == 2  # the stranger's message went nowhere


async def test_chat_requires_a_principal(chat_app: FastAPI) -> None:
    import httpx

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=chat_app), base_url="http://t") as anonymous:
        response = await anonymous.post("/api/chat", json={"message": "hi"})
    assert response.status_code == 401


async def test_filters_reach_the_search(reader: Any, llm: FakeLLMServer) -> None:
    response = await reader.http.post(
        # Asked of module 1, the lidar question would be refused by the coverage gate (module 1 does not cover it);
        # this one is covered there, and Gazebo's page would be among the 3 passages without the filter.
        "/api/chat",
        json={"message": "What does a joint of a robot connect?", "filters": {"path_prefix": "module-1/"}},
    )
    assert response.status_code == 200, response.text
    sources = response.json()["sources"]
    assert sources
    assert all(s["url"].startswith("https://book.example.org/docs/module-1/") for s in sources)
    assert BOOK[0]["text"] not in request_text(llm.last_request)


async def test_search_failure_is_503_and_the_turn_is_kept(
    reader: Any, chat_app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_search(query: str, **options: Any) -> Any:
        raise ConnectionError("qdrant went away")

    monkeypatch.setattr(chat_app.state.resources.retriever, "search", broken_search)
    response = await reader.http.post("/api/chat", json={"message": LIDAR_QUESTION})
    assert response.status_code == 503
    assert response.json()["code"] == "search-unavailable"
    assert response.headers["retry-after"] == "5"
    listing = (await reader.http.get("/api/conversations")).json()
    stored = await conversation(reader.http, listing["items"][0]["id"])
    assert [m["status"] for m in stored["messages"]] == ["ok", "error"]
    assert stored["messages"][1]["error_code"] == "search-unavailable"
