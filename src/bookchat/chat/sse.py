"""Server-Sent Events: encoding, and a response that stops its producer when the client goes, then frees its slot."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import TypeVar

from pydantic import BaseModel
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

log = logging.getLogger(__name__)

T = TypeVar("T")

EVENT_STREAM = "text/event-stream"
# no-cache: proxies must not hold the stream; X-Accel-Buffering: nginx must not buffer it.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def encode_event(name: str, payload: BaseModel) -> bytes:
    """One SSE message: `event: <name>` and a single-line JSON `data:` (JSON never contains a raw newline)."""
    return b"event: " + name.encode() + b"\ndata: " + payload.model_dump_json().encode() + b"\n\n"


async def encode_events(events: AsyncIterator[tuple[str, BaseModel]]) -> AsyncGenerator[bytes, None]:
    try:
        async for name, payload in events:
            yield encode_event(name, payload)
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def accepts_event_stream(accept: str | None) -> bool:
    """True when an `Accept` header asks for `text/event-stream`."""
    if not accept:
        return False
    return any(part.split(";", 1)[0].strip().lower() == EVENT_STREAM for part in accept.split(","))


class EventStreamResponse(Response):
    """Streams `body` as `text/event-stream` while watching for `http.disconnect`.

    Starlette's StreamingResponse notices a vanished client only on its next write, so a model that is
    still thinking would run on for nothing; here the producer is cancelled the moment the client goes,
    and the event generator is always closed, so its clean-up (store the partial answer) runs.
    """

    media_type = EVENT_STREAM

    def __init__(self, body: AsyncIterator[bytes], headers: Mapping[str, str] | None = None) -> None:
        self.body_iterator = body
        self.status_code = 200
        self.background = None
        self.init_headers({**SSE_HEADERS, **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def produce() -> None:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def listen() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        producer = asyncio.ensure_future(produce())
        listener = asyncio.ensure_future(listen())
        try:
            await asyncio.wait({producer, listener}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (producer, listener):
                if not task.done():
                    task.cancel()
            await asyncio.gather(producer, listener, return_exceptions=True)
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        if not producer.cancelled() and (error := producer.exception()) is not None and not isinstance(error, OSError):
            raise error


async def stream_in_slot(
    release: Callable[[], Awaitable[None]],
    start: Awaitable[T],
    events: Callable[[T], AsyncGenerator[bytes, None]],
    headers: Mapping[str, str] | None = None,
) -> EventStreamResponse:
    """The response of a stream that holds a stream slot (taken before, so a 429 could still be sent):
    `release` gives it back if `start` fails, else once the `events` of what it started are closed."""
    try:
        started = await start
    except BaseException:
        await release()
        raise

    async def body() -> AsyncIterator[bytes]:
        inner = events(started)
        try:
            async for chunk in inner:
                yield chunk
        finally:
            try:
                await inner.aclose()  # runs the stream's clean-up (a cancelled answer is stored) before the release
            finally:
                await release()

    return EventStreamResponse(body(), headers=headers)
