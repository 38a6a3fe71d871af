"""The fake LLM server speaks the OpenAI API well enough for the openai client and the Agents SDK."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from openai import AsyncOpenAI

from tests.fakes.llm_server import (
    Abort,
    Error,
    FakeLLMServer,
    Malformed,
    Text,
    ToolCall,
    ToolCalls,
    fake_embedding,
    request_text,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def client(server: FakeLLMServer, **options: float) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=server.base_url, api_key="test-key", max_retries=0, **options)  # type: ignore[arg-type]


async def test_non_stream_text_and_recorded_body(llm: FakeLLMServer) -> None:
    llm.script(Text("Hello [1].", prompt_tokens=11, completion_tokens=3))
    reply = await client(llm).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi there"}])
    assert reply.choices[0].message.content == "Hello [1]."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 11
    assert reply.usage.total_tokens == 14
    assert llm.last_request["messages"] == [{"role": "user", "content": "hi there"}]
    assert llm.request_headers[-1]["authorization"] == "Bearer test-key"
    assert request_text(llm.last_request) == "hi there"


async def test_stream_chunks_usage_and_done(llm: FakeLLMServer) -> None:
    llm.script(Text("one two three", chunks=["one", " two", " three"]))
    stream = await client(llm).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage = [], None, None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert pieces == ["one", " two", " three"]
    assert finish == "stop"
    assert usage is not None
    assert usage.completion_tokens > 0
    assert llm.streams_completed == 1


async def test_default_reply_cites_when_passages_are_numbered(llm: FakeLLMServer) -> None:
    reply = await client(llm).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "[1] passage text\nQuestion?"}]
    )
    assert "[1]" in (reply.choices[0].message.content or "")
    reply = await client(llm).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert "does not cover" in (reply.choices[0].message.content or "")


async def test_tool_calls_non_stream_and_stream(llm: FakeLLMServer) -> None:
    llm.script(ToolCalls.one("search_book", query="sensors"), ToolCalls([ToolCall("f", '{"a": 1}', id="c1")]))
    reply = await client(llm).chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
    calls = reply.choices[0].message.tool_calls or []
    assert reply.choices[0].finish_reason == "tool_calls"
    assert calls[0].function.name == "search_book"  # type: ignore[union-attr]
    assert json.loads(calls[0].function.arguments) == {"query": "sensors"}  # type: ignore[union-attr]

    stream = await client(llm).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "q"}], stream=True
    )
    arguments, ids, finish = "", [], None
    async for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                arguments += (call.function.arguments or "") if call.function else ""
                if call.id:
                    ids.append(call.id)
            finish = choice.finish_reason or finish
    assert (arguments, ids, finish) == ('{"a": 1}', ["c1"], "tool_calls")


async def test_errors_statuses_and_retry_after(llm: FakeLLMServer) -> None:
    llm.script(Error(429, retry_after=7), Error(500), Error(503, headers={"x-extra": "1"}))
    with pytest.raises(openai.RateLimitError) as rate:
        await client(llm).chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
    assert rate.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.InternalServerError):
        await client(llm).chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
    with pytest.raises(openai.APIStatusError) as unavailable:
        await client(llm).chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
    assert unavailable.value.status_code == 503


async def test_delay_makes_the_client_time_out(llm: FakeLLMServer) -> None:
    llm.script(Text("late", delay=2))
    with pytest.raises(openai.APITimeoutError):
        await client(llm, timeout=0.2).chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])


async def test_malformed_and_broken_streams(llm: FakeLLMServer) -> None:
    llm.script(Malformed(), Malformed(after_chunks=["ok "]), Error(500, in_stream=True), Abort())
    with pytest.raises(json.JSONDecodeError):
        await client(llm).chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
    expectations: list[type[Exception]] = [json.JSONDecodeError, openai.APIError, openai.APIConnectionError]
    for expected in expectations:
        stream = await client(llm).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "q"}], stream=True
        )
        with pytest.raises(expected):
            async for _ in stream:
                pass


async def test_client_disconnect_is_seen_as_cancelled(llm: FakeLLMServer) -> None:
    llm.script(Text("a b c d e f g h", chunk_delay=0.2))
    stream = await client(llm).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "q"}], stream=True
    )
    async for _ in stream:
        break
    await stream.close()
    for _ in range(100):
        if llm.streams_cancelled:
            break
        await asyncio.sleep(0.02)
    assert llm.streams_cancelled == 1


async def test_embeddings_float_base64_and_dimensions(llm: FakeLLMServer) -> None:
    api = client(llm)
    as_base64 = await api.embeddings.create(model="e", input=["robot sensors", "robot sensors"], dimensions=64)
    as_float = await api.embeddings.create(model="e", input="robot sensors", encoding_format="float")
    assert len(as_base64.data) == 2
    assert len(as_base64.data[0].embedding) == 64
    assert len(as_float.data[0].embedding) == 768
    assert as_base64.data[0].embedding == pytest.approx(fake_embedding("robot sensors", 64), abs=1e-6)
    assert math.isclose(sum(v * v for v in as_float.data[0].embedding), 1.0, rel_tol=1e-6)
    near = sum(
        a * b for a, b in zip(fake_embedding("robot sensors", 256), fake_embedding("sensors", 256), strict=False)
    )
    far = sum(a * b for a, b in zip(fake_embedding("robot sensors", 256), fake_embedding("cooking", 256), strict=False))
    assert near > far
    assert llm.embedding_requests[0]["dimensions"] == 64


async def test_models_and_api_key_check() -> None:
    with FakeLLMServer(api_key="right", model="gemini-x") as server:
        models = await AsyncOpenAI(base_url=server.base_url, api_key="right").models.list()
        assert [model.id async for model in models] == ["gemini-x"]
        with pytest.raises(openai.AuthenticationError):
            await AsyncOpenAI(base_url=server.base_url, api_key="wrong", max_retries=0).models.list()


async def test_agents_sdk_runs_a_tool_loop_against_the_fake(llm: FakeLLMServer) -> None:
    set_tracing_disabled(True)
    seen: list[str] = []

    @function_tool
    def search_book(query: str) -> str:
        """Search the book."""
        seen.append(query)
        return "[2] Lidar measures distance."

    llm.script(ToolCalls.one("search_book", query="lidar"), Text("Lidar measures distance [2]."))
    agent = Agent(
        name="t",
        instructions="Answer.",
        tools=[search_book],
        model=OpenAIChatCompletionsModel(model="fake-model", openai_client=client(llm)),
        model_settings=ModelSettings(include_usage=True),
    )
    result = Runner.run_streamed(agent, "What is lidar?", max_turns=3)
    deltas = [
        event.data.delta
        async for event in result.stream_events()
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta"
    ]
    assert "".join(deltas) == result.final_output == "Lidar measures distance [2]."
    assert seen == ["lidar"]
    second = llm.requests[1]
    assert second["messages"][-1]["role"] == "tool"
    assert "Lidar measures distance." in second["messages"][-1]["content"]
    assert second["stream_options"] == {"include_usage": True}
    assert result.context_wrapper.usage.requests == 2
    assert result.context_wrapper.usage.output_tokens > 0


def test_runs_as_a_separate_process() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.llm_server", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("FAKE_LLM_BASE_URL=http://127.0.0.1:")
        base_url = line.split("=", 1)[1]
        for _ in range(100):
            try:
                response = httpx.post(
                    f"{base_url}/chat/completions",
                    json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
                )
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["role"] == "assistant"
    finally:
        process.terminate()
        process.wait(timeout=10)
