"""POST /api/chat as Server-Sent Events: event order, renumbered deltas, errors, and client disconnects."""

from __future__ import annotations

import itertools
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.chat.fixtures import book_passages, live_server, parse_sse, reader_on, token_for, wait_for
from tests.fakes.llm_server import Abort, Error, FakeLLMServer, Reply, Text, request_text

QUESTION = "How does Gazebo simulate a lidar sensor?"


def lidar_answer(body: dict[str, Any]) -> Reply:
    text = request_text(body)
    lidar = int(re.search(r'<passage id="(\d+)" title="Simulating sensors', text).group(1))  # type: ignore[union-attr]
    other = next(n for n in (1, 2, 3) if n != lidar)
    content = f"Gazebo casts rays [{lidar}] and measures distance [{other}][{lidar}], not [9]. Done."
    # Split inside the markers, as a tokenizer would, to exercise the held-back buffer.
    cut = [0, 7, content.index("[") + 1, content.index("]") + 3, len(content) - 12, len(content) - 3, len(content)]
    # Pieces slower than the delta interval stay separate deltas, so markers really are split across them.
    return Text(content, chunks=[content[a:b] for a, b in itertools.pairwise(cut)], chunk_delay=0.03)


async def stored(http: httpx.AsyncClient, conversation_id: str) -> dict[str, Any]:
    result: dict[str, Any] = (await http.get(f"/api/conversations/{conversation_id}")).json()
    return result


async def test_events_in_order_and_deltas_equal_the_stored_answer(reader: Any, llm: FakeLLMServer) -> None:
    llm.script(lidar_answer)
    response = await reader.http.post("/api/chat", json={"message": QUESTION, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    assert names[:2] == ["meta", "citations"]
    assert names[-1] == "done"
    assert set(names[2:-1]) == {"delta"}
    meta, candidates, done = events[0][1], events[1][1], events[-1][1]
    assert meta["mode"] == "retrieval"
    assert [c["index"] for c in candidates["citations"]] == [1, 2, 3]
    deltas = [payload for name, payload in events if name == "delta"]
    answer = "".join(delta["text"] for delta in deltas)
    assert answer == "Gazebo casts rays [1] and measures distance [2][1], not. Done."
    announced = [c for delta in deltas for c in delta["citations"]]
    assert announced == done["citations"]
    assert [c["index"] for c in done["citations"]] == [1, 2]
    lidar_chunk = next(p.chunk_id for p in book_passages() if p.title.startswith("Simulating sensors"))
    assert done["citations"][0]["chunk_id"] == lidar_chunk
    assert done["status"] == "ok"
    assert done["usage"]["completion_tokens"] > 0  # the final usage chunk was asked for and read
    assert llm.last_request["stream"] is True
    assert llm.last_request["stream_options"] == {"include_usage": True}

    conversation = await stored(reader.http, meta["conversation_id"])
    message = conversation["messages"][1]
    assert message["id"] == meta["message_id"] == done["message_id"]
    assert message["content"] == answer
    assert message["citations"] == done["citations"]
    assert message["status"] == "ok"


async def test_accept_header_selects_streaming(reader: Any, llm: FakeLLMServer) -> None:
    response = await reader.http.post(
        "/api/chat", json={"message": QUESTION}, headers={"Accept": "application/json, text/event-stream;q=0.9"}
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert parse_sse(response.text)[-1][0] == "done"


async def test_selection_mode_streams(reader: Any, llm: FakeLLMServer) -> None:
    llm.script(Text("Six joints [1]."))
    response = await reader.http.post(
        "/api/chat", json={"message": "How many joints?", "selected_text": "The arm has six joints.", "stream": True}
    )
    events = parse_sse(response.text)
    assert events[1] == ("citations", {"citations": [events[-1][1]["citations"][0]]})
    assert "".join(p["text"] for n, p in events if n == "delta") == "Six joints [1]."


async def test_extractive_mode_streams(extractive_app: FastAPI) -> None:
    async with reader_on(extractive_app) as reader:
        response = await reader.http.post("/api/chat", json={"message": QUESTION, "stream": True})
        events = parse_sse(response.text)
        assert [n for n, _ in events][:2] == ["meta", "citations"]
        answer = "".join(p["text"] for n, p in events if n == "delta")
        conversation = await stored(reader.http, events[0][1]["conversation_id"])
        assert conversation["messages"][1]["content"] == answer
        assert events[-1][1]["model"] is None


@pytest.mark.parametrize(
    ("reply", "status", "code", "partial"),
    [
        (Error(429, retry_after=7), 503, "llm-unavailable", ""),
        (Error(500), 502, "llm-error", ""),
        (Text("late", delay=3), 504, "llm-timeout", ""),
        (Error(500, in_stream=True, after_chunks=["Gazebo ", "casts "]), 502, "llm-error", "Gazebo casts"),
        (Abort(after_chunks=["Partial "]), 502, "llm-unreachable", "Partial"),
    ],
    ids=["429", "500", "timeout", "error-mid-stream", "dropped-mid-stream"],
)
async def test_upstream_failure_becomes_an_error_event(
    reader: Any, llm: FakeLLMServer, reply: Reply, status: int, code: str, partial: str
) -> None:
    llm.script(reply)
    response = await reader.http.post("/api/chat", json={"message": QUESTION, "stream": True})
    assert response.status_code == 200  # the stream had started: the failure is an event
    events = parse_sse(response.text)
    name, error = events[-1]
    assert name == "error"
    assert (error["status"], error["code"]) == (status, code)
    assert error["retry_after"] == (7 if status == 503 else None)
    assert "done" not in [n for n, _ in events]
    conversation = await stored(reader.http, events[0][1]["conversation_id"])
    question, answer = conversation["messages"]
    assert question["content"] == QUESTION
    assert (answer["status"], answer["error_code"]) == ("error", code)
    # Whatever reached the reader is what is kept (the trailing space was still held back).
    assert answer["content"] == "".join(p["text"] for n, p in events if n == "delta") == partial


async def test_disconnect_cancels_the_model_and_stores_the_partial_answer(
    chat_app: FastAPI, llm: FakeLLMServer
) -> None:
    words = [f"word{i} " for i in range(200)]
    llm.script(Text("".join(words), chunks=words, chunk_delay=0.05))
    token = token_for(chat_app)
    async with live_server(chat_app) as url:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http,
            http.stream("POST", "/api/chat", json={"message": QUESTION, "stream": True}) as response,
        ):
            assert response.status_code == 200
            raw = ""
            async for chunk in response.aiter_text():
                raw += chunk
                if raw.count("event: delta") >= 3:
                    break
        # Leaving the block closed the connection mid-stream.
        await wait_for(lambda: llm.streams_cancelled == 1)
        meta = parse_sse(raw.split("event: delta")[0])[0][1]
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http:

            async def cancelled() -> dict[str, Any] | None:
                message = (await stored(http, meta["conversation_id"]))["messages"][1]
                return message if message["status"] == "cancelled" else None

            message = await wait_for(cancelled)
    assert message["content"].startswith("word0 word1")
    assert len(message["content"]) < len("".join(words))
    assert llm.streams_completed == 0
