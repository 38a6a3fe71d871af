"""How a turn ends when something other than the model goes wrong: its search is cancelled, the final write fails,
the stream is closed mid-answer, or an internal bug breaks it — the ChatService alone, with a fake store."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from bookchat.chat.schemas import ChatRequest, DeltaEvent, ErrorEvent
from bookchat.chat.service import ChatService
from bookchat.config import Settings
from bookchat.conversations.repository import StartedTurn
from bookchat.errors import BookchatError
from tests.chat.fixtures import book_passages

QUESTION = "How does Gazebo simulate a lidar sensor?"
BOUND = 5.0


@dataclass
class Finished:
    status: str
    content: str
    error_code: str | None


class FakeStore:
    """The two calls a turn makes on its repository; `failing` maps a status to the error its write raises."""

    def __init__(self, failing: dict[str, BaseException] | None = None) -> None:
        self.failing = failing or {}
        self.finished: list[Finished] = []

    async def start_turn(self, **_: Any) -> StartedTurn:
        return StartedTurn(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), [])

    async def finish_message(
        self, message_id: uuid.UUID, *, content: str, status: str, error_code: str | None = None, **_: Any
    ) -> None:
        if status in self.failing:
            raise self.failing[status]
        self.finished.append(Finished(status, content, error_code))


class FakeRetriever:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error

    async def search(self, query: str, *, limit: int, filters: Any = None) -> list[Any]:
        await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        return book_passages()[:limit]


def outage() -> BaseException:
    return asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")


@pytest.fixture(scope="module")
def settings(make_settings: Callable[..., Settings]) -> Settings:
    # The fake retriever has no dense scores nor BM25 terms for the coverage gate to read: these tests are about faults.
    return make_settings(llm_provider="none", search_limit=3, coverage_gate=False)


def service_with(settings: Settings, store: FakeStore, retriever: FakeRetriever | None = None) -> ChatService:
    return ChatService(store, retriever or FakeRetriever(), None, settings)  # type: ignore[arg-type]


async def events_of(service: ChatService, request: ChatRequest) -> list[tuple[str, Any]]:
    turn = await service.start("guest:test", request)
    return [event async for event in service.stream(turn)]


def source_of(*pieces: str, then: BaseException | None = None, closed: asyncio.Event | None = None) -> Any:
    """A stand-in for the extractive answer stream: `pieces`, then `then` raised (or a long wait)."""

    async def pieces_then() -> AsyncIterator[str]:
        try:
            for piece in pieces:
                yield piece
                await asyncio.sleep(0.05)
            if then is not None:
                raise then
            await asyncio.sleep(60)
        finally:
            if closed is not None:
                closed.set()

    return lambda turn: pieces_then()


# ---- a cancelled search


async def test_a_cancelled_search_is_a_cancellation_not_a_503(settings: Settings) -> None:
    store = FakeStore()
    service = service_with(settings, store, FakeRetriever(asyncio.CancelledError()))
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(service.start("guest:test", ChatRequest(message=QUESTION)), BOUND)
    assert [(f.status, f.error_code) for f in store.finished] == [("cancelled", None)]


async def test_a_failed_search_is_still_a_503(settings: Settings) -> None:
    store = FakeStore()
    service = service_with(settings, store, FakeRetriever(RuntimeError("qdrant is down")))
    with pytest.raises(BookchatError) as caught:
        await service.start("guest:test", ChatRequest(message=QUESTION))
    assert (caught.value.status, caught.value.code) == (503, "search-unavailable")
    assert [(f.status, f.error_code) for f in store.finished] == [("error", "search-unavailable")]


# ---- the final write fails


async def test_an_answer_that_cannot_be_stored_is_marked_error_and_a_503(settings: Settings) -> None:
    store = FakeStore({"ok": outage()})
    service = service_with(settings, store)
    turn = await service.start("guest:test", ChatRequest(message=QUESTION))
    with pytest.raises(BookchatError) as caught:
        await service.answer(turn)
    assert (caught.value.status, caught.value.code) == (503, "database-unavailable")
    assert caught.value.headers["Retry-After"].isdigit()
    [finished] = store.finished
    assert (finished.status, finished.error_code) == ("error", "database-unavailable")
    assert finished.content  # the answer the reader did not get is kept with the failure


async def test_a_stream_whose_answer_cannot_be_stored_ends_with_an_error_event(settings: Settings) -> None:
    store = FakeStore({"ok": outage()})
    events = await asyncio.wait_for(events_of(service_with(settings, store), ChatRequest(message=QUESTION)), BOUND)
    name, error = events[-1]
    assert name == "error"
    assert isinstance(error, ErrorEvent)
    assert (error.status, error.code) == (503, "database-unavailable")
    assert "done" not in [name for name, _ in events]
    [finished] = store.finished
    assert (finished.status, finished.error_code) == ("error", "database-unavailable")
    assert finished.content == "".join(event.text for name, event in events if isinstance(event, DeltaEvent))


async def test_a_stream_ends_with_an_error_event_when_no_write_gets_through(settings: Settings) -> None:
    # The database is down for both writes: the row stays pending (the sweep repairs it); the reader is told.
    store = FakeStore({"ok": outage(), "error": outage()})
    events = await asyncio.wait_for(events_of(service_with(settings, store), ChatRequest(message=QUESTION)), BOUND)
    assert events[-1][0] == "error"
    assert events[-1][1].code == "database-unavailable"
    assert store.finished == []


async def test_a_failed_turn_whose_failure_cannot_be_stored_still_reports_the_model_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bookchat.chat.service.extractive_pieces", source_of("Gazebo ", then=TimeoutError()))
    store = FakeStore({"error": outage()})
    events = await asyncio.wait_for(events_of(service_with(settings, store), ChatRequest(message=QUESTION)), BOUND)
    assert events[-1][0] == "error"
    assert events[-1][1].code == "llm-timeout"


# ---- the stream closed mid-answer


async def test_closing_the_stream_mid_answer_closes_its_source(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = asyncio.Event()
    monkeypatch.setattr("bookchat.chat.service.extractive_pieces", source_of("Gazebo casts rays. ", closed=closed))
    store = FakeStore()
    service = service_with(settings, store)
    turn = await service.start("guest:test", ChatRequest(message=QUESTION))
    events = service.stream(turn)
    async for name, _event in events:
        if name == "delta":
            break
    await events.aclose()  # the reader left while the answer was being written
    assert closed.is_set(), "the answer's source is still being read after its stream was closed"
    assert [(f.status, f.content) for f in store.finished] == [("cancelled", "Gazebo casts rays.")]


# ---- an internal bug is logged with its traceback, an upstream failure in one line


async def test_an_internal_bug_is_logged_with_its_traceback(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("bookchat.chat.service.extractive_pieces", source_of("Gazebo ", then=KeyError("bug")))
    with caplog.at_level(logging.WARNING, logger="bookchat.chat.service"):
        events = await events_of(service_with(settings, FakeStore()), ChatRequest(message=QUESTION))
    assert events[-1][1].code == "llm-bad-response"
    [record] = [r for r in caplog.records if r.getMessage() == "chat turn failed"]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], KeyError)
    assert "Traceback" in caplog.text


async def test_an_upstream_failure_is_logged_in_one_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("bookchat.chat.service.extractive_pieces", source_of("Gazebo ", then=TimeoutError()))
    with caplog.at_level(logging.WARNING, logger="bookchat.chat.service"):
        events = await events_of(service_with(settings, FakeStore()), ChatRequest(message=QUESTION))
    assert events[-1][1].code == "llm-timeout"
    [record] = [r for r in caplog.records if r.getMessage() == "chat turn failed"]
    assert record.exc_info is None
    assert getattr(record, "cause", None) == "TimeoutError"
