"""The LLM provider factory: one shared OpenAI-compatible client per process wrapped in an Agents SDK model."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, cast

import httpx2
import pydantic
from agents import ModelSettings, OpenAIChatCompletionsModel, set_tracing_disabled
from openai import AsyncOpenAI, AsyncStream, DefaultAsyncHttpxClient, Timeout
from openai._base_client import make_request_options
from openai._types import ResponseT
from openai._utils import is_given
from openai.resources.chat import AsyncChat
from openai.resources.chat.completions import AsyncCompletions
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from bookchat.config import DEFAULT_GEMINI_MODEL, GEMINI_OPENAI_BASE_URL, Settings, SettingsError

log = logging.getLogger(__name__)

# Local servers (Ollama, vLLM, llama.cpp) ignore the key, but the openai client refuses to start without one.
PLACEHOLDER_API_KEY = "not-needed"
# A bounded connect phase: a dead host fails fast (and is retried) instead of eating the whole budget.
CONNECT_TIMEOUT_SECONDS = 10.0
# Low temperature keeps answers close to the passages; the model still phrases them freely.
ANSWER_TEMPERATURE = 0.2


# openai's own default pool size.
_CONNECTION_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)
_SSE_EVENT_END = re.compile(rb"\r?\n\r?\n")
# The first events of a response carry the first words, so they are handed on one at a time: the first token is
# never held behind the rest of a network read. After them, the event loop is handed back every millisecond;
# handing it back after every event cost a fifth of the streams a second at 32 streams (bench/chat.py).
EAGER_EVENTS = 3
EVENT_SLICE_SECONDS = 0.001


class _EventByEventStream(httpx2.AsyncByteStream):
    """A response body handed on one server-sent event at a time, giving other tasks the event loop after each
    of the first `EAGER_EVENTS` events and then after every `EVENT_SLICE_SECONDS` spent on events.

    When one network read holds many events (a fast model, or a stream that fell behind), the Agents SDK would
    otherwise turn all of them into stream events before anything else runs: the first token would wait for
    the last event of that read, and every other stream of the process would wait as well.
    """

    def __init__(self, inner: httpx2.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        events = 0
        async for chunk in self._inner:
            start = 0
            slice_started = time.perf_counter()
            for match in _SSE_EVENT_END.finditer(chunk):
                yield chunk[start : match.end()]
                start = match.end()
                events += 1
                if events <= EAGER_EVENTS or time.perf_counter() - slice_started >= EVENT_SLICE_SECONDS:
                    await asyncio.sleep(0)
                    slice_started = time.perf_counter()
            if start < len(chunk):
                yield chunk[start:]

    async def aclose(self) -> None:
        await self._inner.aclose()


class _EventByEventTransport(httpx2.AsyncBaseTransport):
    """The default transport, with `text/event-stream` bodies wrapped in `_EventByEventStream`."""

    def __init__(self) -> None:
        self._inner = httpx2.AsyncHTTPTransport(limits=_CONNECTION_LIMITS)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        if (
            response.headers.get("content-type", "").startswith("text/event-stream")
            and "content-encoding" not in response.headers  # compressed bytes have no event boundaries to find
            and isinstance(response.stream, httpx2.AsyncByteStream)
        ):
            response.stream = _EventByEventStream(response.stream)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


# The arguments of `create` that shape the HTTP request rather than its JSON body.
_REQUEST_OPTION_ARGUMENTS = ("extra_headers", "extra_query", "extra_body", "timeout")


def _is_plain_json(value: object) -> bool:
    """True for str / int / float / bool / None, and dicts (string keys) and lists of those, all the way down."""
    if value is None or isinstance(value, str | int | float):
        return True
    if isinstance(value, dict):
        return all(isinstance(key, str) and _is_plain_json(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_is_plain_json(item) for item in value)
    return False


class _PlainJSONCompletions(AsyncCompletions):
    """Chat Completions that send a plain-JSON request body as it is.

    The stock `create` first walks the whole request against its TypedDict annotations, to rename aliased keys
    and format dates and files. Chat Completions parameters have none of those, and the Agents SDK hands over
    plain JSON, so the walk returns what it was given, after about 0.7 ms of CPU a request on the event loop
    every stream shares. A request holding anything else (a pydantic model, a tuple, a file) goes the stock way.
    """

    async def create(self, **arguments: Any) -> Any:
        options = {name: arguments.pop(name) for name in _REQUEST_OPTION_ARGUMENTS if name in arguments}
        body = {name: value for name, value in arguments.items() if is_given(value)}
        if not _is_plain_json(body):
            return await super().create(**arguments, **options)
        return await self._post(
            "/chat/completions",
            body=body,
            options=make_request_options(**options, security={"bearer_auth": True}),
            cast_to=ChatCompletion,
            stream=bool(body.get("stream")),
            stream_cls=AsyncStream[ChatCompletionChunk],
        )


class _PlainJSONChat(AsyncChat):
    @cached_property
    def completions(self) -> AsyncCompletions:
        return _PlainJSONCompletions(self._client)


class _BookchatOpenAI(AsyncOpenAI):
    """AsyncOpenAI that retries only connection failures and timeouts, never an HTTP error status, sends plain
    JSON chat requests without re-walking them (`_PlainJSONCompletions`) and builds stream chunks with
    pydantic-core.

    The stock client also retries 429 and 5xx, honouring `Retry-After` for up to two minutes; a reader
    waiting on a chat turn is better served by a prompt 503 with `Retry-After` that the widget can act on.
    """

    @cached_property
    def chat(self) -> AsyncChat:
        return _PlainJSONChat(self)

    def _should_retry(self, response: httpx2.Response) -> bool:
        return False

    def _process_response_data(self, *, data: object, cast_to: type[ResponseT], response: httpx2.Response) -> ResponseT:
        # Stream chunks are most of the objects of a turn. pydantic-core validates one in about 3 µs; the
        # client's lenient pure-Python `construct` takes about 65 µs, on the event loop that every stream shares.
        # A chunk that does not validate (a provider's quirk) still gets the lenient path.
        if cast_to is ChatCompletionChunk and isinstance(data, dict):
            try:
                return cast(ResponseT, ChatCompletionChunk.model_validate(data))
            except pydantic.ValidationError:
                pass
        return super()._process_response_data(data=data, cast_to=cast_to, response=response)


@dataclass(frozen=True)
class LLM:
    """The configured language model: the Agents SDK `model`, its shared `client`, and how to describe it."""

    provider: Literal["gemini", "openai"]
    model_name: str
    base_url: str
    client: AsyncOpenAI
    model: OpenAIChatCompletionsModel

    @property
    def model_settings(self) -> ModelSettings:
        """Per-call settings: usage reported on streams too (token accounting), a grounded temperature."""
        return ModelSettings(temperature=ANSWER_TEMPERATURE, include_usage=True)

    async def aclose(self) -> None:
        await self.client.close()


def create_llm(settings: Settings) -> LLM | None:
    """The LLM for `settings.resolved_llm_provider`, or None for `none` (answers are then extractive).

    `gemini` uses Google's OpenAI-compatible endpoint (Gemini has no Responses API, hence Chat
    Completions); `openai` is any OpenAI-compatible base URL. Raises `SettingsError` for an unusable
    combination, naming the variable to set.
    """
    provider = settings.resolved_llm_provider
    if provider == "none":
        return None
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key is not None else None
    if provider == "gemini":
        if not key:
            raise SettingsError("BOOKCHAT_LLM_API_KEY (or GEMINI_API_KEY): required when BOOKCHAT_LLM_PROVIDER=gemini")
        base_url = settings.llm_base_url or GEMINI_OPENAI_BASE_URL
        model_name = settings.llm_model or DEFAULT_GEMINI_MODEL
    else:
        if not settings.llm_model:
            raise SettingsError("BOOKCHAT_LLM_MODEL: required when BOOKCHAT_LLM_PROVIDER=openai (e.g. gpt-4o-mini)")
        base_url = settings.llm_base_url or "https://api.openai.com/v1"
        model_name = settings.llm_model
    client = _BookchatOpenAI(
        api_key=key or PLACEHOLDER_API_KEY,
        base_url=base_url,
        timeout=Timeout(settings.llm_timeout, connect=min(CONNECT_TIMEOUT_SECONDS, settings.llm_timeout)),
        max_retries=settings.llm_max_retries,
        http_client=DefaultAsyncHttpxClient(transport=_EventByEventTransport()),
    )
    # Tracing exports to OpenAI's platform with an OpenAI key; off unless the operator asks for it.
    set_tracing_disabled(not settings.llm_tracing)
    model = OpenAIChatCompletionsModel(model=model_name, openai_client=client)
    log.info("llm configured", extra={"provider": provider, "model": model_name, "base_url": base_url})
    return LLM(provider=provider, model_name=model_name, base_url=base_url, client=client, model=model)
