"""create_llm builds the right client for each provider; upstream errors map to the documented statuses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import openai
import openai.resources.chat.completions.completions as completions_module
import pytest
from agents import Agent, Runner
from agents.exceptions import MaxTurnsExceeded, ModelBehaviorError
from openai.types.chat import ChatCompletionChunk

from bookchat.config import DEFAULT_GEMINI_MODEL, GEMINI_OPENAI_BASE_URL, Settings, SettingsError
from bookchat.errors import BadGateway, GatewayTimeout, NotFound, ServiceUnavailable
from bookchat.llm import provider
from bookchat.llm.errors import retry_after_seconds, upstream_error
from bookchat.llm.provider import PLACEHOLDER_API_KEY, create_llm
from bookchat.runtime.observability import configure_logging
from tests.fakes.llm_server import Error, FakeLLMServer, Text


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def test_none_means_no_llm() -> None:
    assert create_llm(settings(llm_provider="none")) is None
    assert create_llm(settings()) is None  # no key, no provider: extractive


def test_gemini_is_the_default_with_a_key() -> None:
    llm = create_llm(settings(GEMINI_API_KEY="AIza-test-key", llm_timeout=12, llm_max_retries=1))
    assert llm is not None
    assert llm.provider == "gemini"
    assert llm.model_name == DEFAULT_GEMINI_MODEL
    assert str(llm.client.base_url) == GEMINI_OPENAI_BASE_URL
    assert llm.client.max_retries == 1
    assert llm.client.timeout.read == 12  # type: ignore[union-attr]
    assert llm.model_settings.include_usage is True


def test_gemini_needs_a_key_and_openai_needs_a_model() -> None:
    with pytest.raises(SettingsError, match="BOOKCHAT_LLM_API_KEY"):
        create_llm(settings(llm_provider="gemini"))
    with pytest.raises(SettingsError, match="BOOKCHAT_LLM_MODEL"):
        create_llm(settings(llm_provider="openai", llm_base_url="http://127.0.0.1:11434/v1"))


def test_openai_compatible_without_a_key_uses_a_placeholder() -> None:
    llm = create_llm(settings(llm_provider="openai", llm_base_url="http://127.0.0.1:11434/v1", llm_model="llama3"))
    assert llm is not None
    assert llm.client.api_key == PLACEHOLDER_API_KEY
    assert str(llm.client.base_url) == "http://127.0.0.1:11434/v1/"


async def test_http_errors_are_not_retried_but_connections_are() -> None:
    with FakeLLMServer() as fake:
        llm = create_llm(settings(llm_provider="openai", llm_base_url=fake.base_url, llm_model="m", llm_max_retries=2))
        assert llm is not None
        fake.script(Error(429, retry_after=1), Text("never"))
        agent = Agent(name="t", instructions="x", model=llm.model)
        with pytest.raises(openai.RateLimitError):
            await Runner.run(agent, "hi")
        assert len(fake.requests) == 1  # a 429 goes straight back to the reader as a 503
        await llm.aclose()


@pytest.fixture
def service_logging() -> Iterator[list[logging.LogRecord]]:
    """The service's logging set up at INFO, with every record that reaches its handler collected."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    records: list[logging.LogRecord] = []
    configure_logging("INFO")

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root.addHandler(Collect())
    try:
        yield records
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


async def test_a_model_call_writes_no_http_client_log_lines(service_logging: list[logging.LogRecord]) -> None:
    # The openai client sends through httpx2, which logs every request at INFO under its own logger names.
    with FakeLLMServer() as fake:
        llm = create_llm(settings(llm_provider="openai", llm_base_url=fake.base_url, llm_model="m"))
        assert llm is not None
        result = await Runner.run(Agent(name="t", instructions="x", model=llm.model), "hi")
        await llm.aclose()
    assert result.final_output
    assert len(fake.requests) == 1
    assert [record.name for record in service_logging if record.name.startswith(("httpx", "httpcore"))] == []
    assert any(record.name == "bookchat.llm.provider" for record in service_logging)  # the handler does collect


def _status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://x/v1/chat/completions")
    response = httpx2.Response(status, headers=headers or {}, request=request)
    cls = {429: openai.RateLimitError, 500: openai.InternalServerError}.get(status, openai.APIStatusError)
    return cls("boom", response=response, body=None)


@pytest.mark.parametrize(
    ("error", "kind", "code", "retry_after"),
    [
        (_status_error(429, {"retry-after": "12"}), ServiceUnavailable, "llm-unavailable", 12),
        (_status_error(429, {"retry-after": "0.2"}), ServiceUnavailable, "llm-unavailable", 1),
        (_status_error(429, {"retry-after": "99999"}), ServiceUnavailable, "llm-unavailable", 300),
        (
            _status_error(429, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}),
            ServiceUnavailable,
            "llm-unavailable",
            1,
        ),
        (_status_error(429, {"retry-after": "soon"}), ServiceUnavailable, "llm-unavailable", 5),
        (_status_error(429), ServiceUnavailable, "llm-unavailable", 5),
        (_status_error(503), ServiceUnavailable, "llm-unavailable", 5),
        (_status_error(500), BadGateway, "llm-error", None),
        (_status_error(401), BadGateway, "llm-error", None),
        (openai.APITimeoutError(request=httpx2.Request("POST", "http://x")), GatewayTimeout, "llm-timeout", None),
        (TimeoutError(), GatewayTimeout, "llm-timeout", None),
        (openai.APIConnectionError(request=httpx2.Request("POST", "http://x")), BadGateway, "llm-unreachable", None),
        (
            openai.APIError("x", httpx2.Request("POST", "http://x"), body={"code": 429}),
            ServiceUnavailable,
            "llm-unavailable",
            5,
        ),
        (openai.APIError("x", httpx2.Request("POST", "http://x"), body=None), BadGateway, "llm-error", None),
        (MaxTurnsExceeded("too many"), BadGateway, "llm-no-answer", None),
        (ModelBehaviorError("odd"), BadGateway, "llm-bad-response", None),
        (ValueError("json"), BadGateway, "llm-bad-response", None),
    ],
)
def test_upstream_error_mapping(error: BaseException, kind: type, code: str, retry_after: int | None) -> None:
    mapped = upstream_error(error)
    assert type(mapped) is kind
    assert mapped.code == code
    assert retry_after_seconds(mapped) == retry_after


def test_bookchat_errors_pass_through() -> None:
    error = NotFound("x")
    assert upstream_error(error) is error


def test_stream_chunks_are_validated_and_quirky_ones_still_parse() -> None:
    llm = create_llm(settings(llm_provider="openai", llm_model="m", llm_base_url="http://127.0.0.1:9/v1"))
    assert llm is not None
    response = httpx2.Response(200, request=httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions"))
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello"}, "finish_reason": None}],
    }
    parsed = llm.client._process_response_data(data=chunk, cast_to=ChatCompletionChunk, response=response)
    assert isinstance(parsed, ChatCompletionChunk)
    assert parsed.choices[0].delta.content == "Hello"
    # Some OpenAI-compatible servers label chunks "chat.completion" and leave out `created`: strict validation
    # refuses that, the client's lenient path does not, and neither may we.
    quirky = {**chunk, "object": "chat.completion", "created": None}
    parsed = llm.client._process_response_data(data=quirky, cast_to=ChatCompletionChunk, response=response)
    assert isinstance(parsed, ChatCompletionChunk)
    assert parsed.choices[0].delta.content == "Hello"


class _OneRead(httpx2.AsyncByteStream):
    """A response body that arrives in a single network read."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.body


@pytest.mark.parametrize(
    ("eager_events", "slice_seconds", "loop_turns_between_events"),
    [(0, 0.0, [0, 1, 2]), (0, 60.0, [0, 0, 0]), (1, 60.0, [0, 1, 1]), (3, 60.0, [0, 1, 2])],
)
async def test_stream_events_come_one_at_a_time_and_hand_back_the_loop_per_slice(
    monkeypatch: pytest.MonkeyPatch, eager_events: int, slice_seconds: float, loop_turns_between_events: list[int]
) -> None:
    monkeypatch.setattr(provider, "EAGER_EVENTS", eager_events)
    monkeypatch.setattr(provider, "EVENT_SLICE_SECONDS", slice_seconds)
    body = b'data: {"n": 1}\n\ndata: {"n": 2}\r\n\r\ndata: [DONE]\n\n'
    turns = 0

    async def other_stream() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_stream())
    await asyncio.sleep(0)
    try:
        start = turns
        events: list[bytes] = []
        seen: list[int] = []
        async for event in provider._EventByEventStream(_OneRead(body)):
            events.append(event)
            seen.append(turns - start)
    finally:
        other.cancel()
    assert events == [b'data: {"n": 1}\n\n', b'data: {"n": 2}\r\n\r\n', b"data: [DONE]\n\n"]
    # The eager first events, and then each slice, end with the loop handed back; within a slice, events run on.
    assert seen == loop_turns_between_events


@pytest.fixture
def request_walks(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every request body openai's `create` walks against its TypedDict annotations (the stock path)."""
    walks: list[object] = []
    stock_walk = completions_module.async_maybe_transform

    async def counted_walk(data: object, expected_type: object) -> Any:
        walks.append(data)
        return await stock_walk(data, expected_type)

    monkeypatch.setattr(completions_module, "async_maybe_transform", counted_walk)
    return walks


async def test_plain_json_chat_requests_are_sent_as_the_stock_client_sends_them(request_walks: list[object]) -> None:
    request: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "system", "content": "Answer from the passages."}, {"role": "user", "content": "Hi?"}],
        "tools": [{"type": "function", "function": {"name": "search_book", "parameters": {"type": "object"}}}],
        "temperature": 0.2,
        "top_p": openai.omit,
        "stream": True,
        "stream_options": {"include_usage": True},
        "extra_headers": {"User-Agent": "Agents/Python", "X-Trace": "1"},
        "extra_body": {"reasoning": {"effort": "low"}},
    }
    with FakeLLMServer() as fake:
        fake.script(Text("One [1]."), Text("Two [1]."))
        llm = create_llm(settings(llm_provider="openai", llm_base_url=fake.base_url, llm_model="m"))
        stock = openai.AsyncOpenAI(base_url=fake.base_url, api_key=PLACEHOLDER_API_KEY)
        assert llm is not None
        for client in (llm.client, stock):
            stream = await client.chat.completions.create(**request)
            assert [chunk async for chunk in stream]
        await llm.aclose()
        await stock.close()
    assert len(request_walks) == 1  # the stock client's request only
    ours, theirs = fake.requests
    assert ours == theirs
    assert ours["reasoning"] == {"effort": "low"}
    assert "top_p" not in ours
    headers = [
        {name: value for name, value in sent.items() if name in ("authorization", "x-trace")}
        for sent in fake.request_headers
    ]
    assert headers[0] == headers[1] == {"authorization": f"Bearer {PLACEHOLDER_API_KEY}", "x-trace": "1"}


async def test_a_chat_request_that_is_not_plain_json_goes_the_stock_way(request_walks: list[object]) -> None:
    with FakeLLMServer() as fake:
        llm = create_llm(settings(llm_provider="openai", llm_base_url=fake.base_url, llm_model="m"))
        assert llm is not None
        # A tuple is not JSON: the stock path turns it into a list, as it would for any iterable.
        messages = ({"role": "user", "content": "Hi?"},)
        completion = await llm.client.chat.completions.create(model="m", messages=messages)
        await llm.aclose()
    assert completion.choices[0].message.content
    assert len(request_walks) == 1
    assert fake.last_request["messages"] == [{"role": "user", "content": "Hi?"}]
