"""The LLM fails mid-stream — the connection drops, the model stalls, or it sends garbage — under the real app:
the reader gets an `error` event in bounded time, the partial answer is kept as `error` beside the question,
the reader's stream slot is free again, and the next question is answered normally."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fastapi import FastAPI

from bookchat.config import Settings
from tests.chat.fixtures import chat_app_for, llm_settings, parse_sse, reader_on
from tests.fakes.llm_server import Abort, FakeLLMServer, Malformed, Reply, Text

QUESTION = "How does Gazebo simulate a lidar sensor?"
LLM_TIMEOUT = 0.5
# A stall must end well within this; far less than the stall itself, which would run for seconds.
STREAM_DEADLINE = 3 * LLM_TIMEOUT + 1.5


@pytest.fixture(scope="module")
async def faulty_app(make_settings: Callable[..., Settings], fake_llm: FakeLLMServer) -> AsyncIterator[FastAPI]:
    """Rate limits on, one open stream per reader: a slot a failed stream kept would refuse the next question."""
    settings = llm_settings(
        make_settings,
        fake_llm,
        llm_timeout=LLM_TIMEOUT,
        rate_limit_enabled=True,
        max_concurrent_streams=1,
        rate_limit_chat="1000/minute",
        rate_limit_ip="1000/minute",
    )
    async with chat_app_for(settings) as app:
        yield app


def stalled(before: str, stall: float) -> Text:
    """`before` in one chunk, then nothing for `stall` seconds (far past the LLM timeout) before the rest."""
    return Text(before + "never sent", chunks=[before, "never sent"], chunk_delay=stall)


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (Abort(after_chunks=["Gazebo ", "casts ", "rays "]), "llm-unreachable"),
        (stalled("Gazebo casts ", stall=6.0), "llm-timeout"),
        (Malformed(body="{not json at all", after_chunks=["Gazebo ", "casts ", "rays "]), "llm-bad-response"),
    ],
    ids=["dropped-after-chunks", "stalled-mid-stream", "garbage-mid-stream"],
)
async def test_a_model_failing_mid_stream_ends_the_turn_cleanly(
    faulty_app: FastAPI, llm: FakeLLMServer, reply: Reply, code: str
) -> None:
    async with reader_on(faulty_app) as reader:
        llm.script(reply)
        started = time.monotonic()
        response = await asyncio.wait_for(
            reader.http.post("/api/chat", json={"message": QUESTION, "stream": True}), STREAM_DEADLINE
        )
        took = time.monotonic() - started
        assert response.status_code == 200
        events = parse_sse(response.text)
        name, error = events[-1]
        assert name == "error", events
        assert error["code"] == code
        assert took < STREAM_DEADLINE
        partial = "".join(payload["text"] for name, payload in events if name == "delta")
        assert partial.startswith("Gazebo")

        conversation_id = events[0][1]["conversation_id"]
        stored: dict[str, Any] = (await reader.http.get(f"/api/conversations/{conversation_id}")).json()
        question, answer = stored["messages"]
        assert (question["role"], question["content"]) == ("user", QUESTION)
        assert (answer["status"], answer["error_code"]) == ("error", code)
        assert answer["content"] == partial

        # The slot is free (one stream per reader), and the model answers the next question as usual.
        llm.script(Text("Gazebo casts rays from the sensor [1]."))
        follow_up = await reader.http.post(
            "/api/chat", json={"message": "And its range?", "conversation_id": conversation_id, "stream": True}
        )
        assert follow_up.status_code == 200, follow_up.text
        events = parse_sse(follow_up.text)
        assert events[-1][0] == "done"
        assert "".join(payload["text"] for name, payload in events if name == "delta") == (
            "Gazebo casts rays from the sensor [1]."
        )
