"""`coalesce`, the re-cutting of a stream's text, when its source or its consumer ends abnormally."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from bookchat.chat.streaming import SourceInterrupted, coalesce

BOUND = 2.0  # every test ends in milliseconds; a hang fails it in two seconds instead of never


async def collect(pieces: AsyncIterator[str]) -> list[str]:
    return [piece async for piece in pieces]


async def test_text_arriving_together_is_joined_and_an_error_follows_it() -> None:
    async def source() -> AsyncIterator[str]:
        yield "a"
        yield "b"
        raise ValueError("boom")

    got: list[str] = []

    async def consume() -> None:
        async for piece in coalesce(source(), 0):
            got.append(piece)

    with pytest.raises(ValueError, match="boom"):
        await asyncio.wait_for(consume(), BOUND)
    assert "".join(got) == "ab"


async def test_a_cancellation_raised_inside_the_source_ends_the_stream_as_a_failure() -> None:
    # Raised from inside a library (say httpx's stream), not aimed at us: the consumer must not wait forever.
    async def source() -> AsyncIterator[str]:
        yield "partial"
        await asyncio.sleep(0)
        raise asyncio.CancelledError

    got: list[str] = []

    async def consume() -> None:
        async for piece in coalesce(source(), 0):
            got.append(piece)

    with pytest.raises(SourceInterrupted) as caught:
        await asyncio.wait_for(consume(), BOUND)
    assert isinstance(caught.value.__cause__, asyncio.CancelledError)
    assert got == ["partial"]


async def test_closing_does_not_swallow_a_cancellation_of_the_consumer() -> None:
    cleaning_up = asyncio.Event()

    async def source() -> AsyncIterator[str]:
        try:
            yield "first"
            await asyncio.sleep(60)
            yield "never"
        finally:
            # A source whose clean-up takes a moment (closing a connection, say).
            cleaning_up.set()
            await asyncio.sleep(0.2)

    async def consume() -> str:
        pieces = coalesce(source(), 0)
        await pieces.__anext__()
        await pieces.aclose()
        return "carried on as if never cancelled"

    task = asyncio.create_task(consume())
    await asyncio.wait_for(cleaning_up.wait(), BOUND)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, BOUND)
    assert task.cancelled()


async def test_a_cancelled_consumer_stops_the_source() -> None:
    closed = asyncio.Event()

    async def source() -> AsyncIterator[str]:
        try:
            yield "first"
            await asyncio.sleep(60)
        finally:
            closed.set()

    async def consume() -> None:
        async for _piece in coalesce(source(), 0):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, BOUND)
    assert task.cancelled()
    assert closed.is_set()
