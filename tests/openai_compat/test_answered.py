"""/v1 carries `answered` (extension): on a whole completion, and on the streamed chunk with `finish_reason`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from tests.chat.fixtures import token_for
from tests.fakes.llm_server import FakeLLMServer, Text
from tests.openai_compat.conftest import openai_client

LIDAR_QUESTION = "How does Gazebo simulate a lidar sensor?"


def extras(model: Any) -> dict[str, Any]:
    return dict(model.model_extra or {})


async def test_completions_carry_answered(compat: FastAPI, fake: FakeLLMServer) -> None:
    fake.script(Text("Gazebo casts rays [1]."))
    async with openai_client(compat, token_for(compat)) as client:
        answered = await client.chat.completions.create(
            model="bookchat", messages=[{"role": "user", "content": LIDAR_QUESTION}]
        )
        before = len(fake.requests)
        refused = await client.chat.completions.create(
            model="bookchat", messages=[{"role": "user", "content": "What is a good recipe for chocolate cake?"}]
        )
        assert len(fake.requests) == before
    assert extras(answered)["answered"] is True
    assert extras(refused)["answered"] is False
    assert extras(refused)["citations"] == []


async def test_a_stream_carries_answered_on_its_final_chunk(compat: FastAPI, fake: FakeLLMServer) -> None:
    fake.script(Text("NOT_COVERED\nThe passages do not say.", chunks=["NOT_C", "OVERED\n", "The passages do not say."]))
    async with openai_client(compat, token_for(compat)) as client:
        stream = await client.chat.completions.create(
            model="bookchat", messages=[{"role": "user", "content": LIDAR_QUESTION}], stream=True
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert "NOT_C" not in text
    assert text.startswith("The passages do not say.")
    finals = [chunk for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason == "stop"]
    assert extras(finals[0])["answered"] is False
