"""Answers a crash left `pending` are swept to `error`/`interrupted` (at start-up and periodically), and the
writes still running when the app stops are waited for, so a clean stop loses nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI

from bookchat.chat.schemas import ChatRequest
from bookchat.chat.service import ChatService
from bookchat.config import Settings
from bookchat.conversations.repository import ConversationRepository
from tests.chat.fixtures import chat_app_for, wait_for

STALE = 11 * 60  # seconds: older than the default bound of ten minutes
QUESTION = "How does Gazebo simulate a lidar sensor?"


async def turn_started(conn: Any, age_seconds: float, status: str = "pending") -> uuid.UUID:
    """A question and its answer row as `start_turn` writes them, `age_seconds` ago; the answer's id."""
    conversation_id = await conn.fetchval(
        "INSERT INTO conversations (owner_id, title) VALUES ($1, 'a crashed turn') RETURNING id",
        f"guest:{uuid.uuid4()}",
    )
    answer_id: uuid.UUID = await conn.fetchval(
        "WITH t AS (SELECT clock_timestamp() - make_interval(secs => $3) AS ts),"
        " q AS (INSERT INTO messages (conversation_id, role, content, status, created_at)"
        "   SELECT $1, 'user', $2, 'ok', ts FROM t)"
        " INSERT INTO messages (conversation_id, role, content, mode, status, created_at)"
        " SELECT $1, 'assistant', '', 'retrieval', $4, ts + interval '1 microsecond' FROM t"
        " RETURNING id",
        conversation_id,
        QUESTION,
        float(age_seconds),
        status,
    )
    return answer_id


async def state_of(conn: Any, message_id: uuid.UUID) -> tuple[str, str | None]:
    row = await conn.fetchrow("SELECT status, error_code FROM messages WHERE id = $1", message_id)
    return row["status"], row["error_code"]


async def test_the_sweep_marks_stale_pending_answers_interrupted_and_leaves_fresh_ones(app: FastAPI) -> None:
    pool = app.state.resources.database.pool
    repository = ConversationRepository(pool)
    async with pool.acquire() as conn:
        stale = await turn_started(conn, STALE)
        fresh = await turn_started(conn, 5)
        finished = await turn_started(conn, STALE, status="ok")
    assert await repository.sweep_interrupted(older_than=600) >= 1
    async with pool.acquire() as conn:
        assert await state_of(conn, stale) == ("error", "interrupted")
        assert await state_of(conn, fresh) == ("pending", None)
        assert await state_of(conn, finished) == ("ok", None)
        # The question stays as it was.
        questions = await conn.fetch(
            "SELECT q.status FROM messages q JOIN messages a USING (conversation_id)"
            " WHERE a.id = $1 AND q.role = 'user'",
            stale,
        )
        assert [row["status"] for row in questions] == ["ok"]
    await repository.sweep_interrupted(older_than=600)  # a second pass changes nothing
    async with pool.acquire() as conn:
        assert await state_of(conn, stale) == ("error", "interrupted")


async def test_start_up_and_a_periodic_sweep_repair_interrupted_answers(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        # The schema exists once any app of the session has started; this one may be the first.
        settings = make_settings(llm_provider="none", search_limit=3, pending_sweep_interval=0.1)
        async with chat_app_for(settings):
            before = await turn_started(conn, STALE)
        # The crash: a turn left pending by a process that is gone. The next start-up sweeps it at once.
        settings = make_settings(llm_provider="none", search_limit=3, pending_sweep_interval=3600)
        async with chat_app_for(settings):
            assert await state_of(conn, before) == ("error", "interrupted")
        settings = make_settings(llm_provider="none", search_limit=3, pending_sweep_interval=0.1)
        async with chat_app_for(settings):
            # A row that goes stale while the app runs is swept by the next periodic pass.
            during = await turn_started(conn, STALE)
            fresh = await turn_started(conn, 1)

            async def swept() -> bool:
                return await state_of(conn, during) == ("error", "interrupted")

            await wait_for(swept, timeout=5)
            assert await state_of(conn, fresh) == ("pending", None)
    finally:
        await conn.close()


async def test_a_write_left_running_at_shutdown_is_stored_before_the_app_stops(
    make_settings: Callable[..., Settings], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(llm_provider="none", search_limit=3)
    write_started = asyncio.Event()
    finish_message = ConversationRepository.finish_message

    async def slow_finish_message(self: ConversationRepository, *args: Any, **kwargs: Any) -> None:
        write_started.set()
        await asyncio.sleep(0.3)  # a write that takes a moment (a busy database), still running at shutdown
        await finish_message(self, *args, **kwargs)

    async with chat_app_for(settings) as app:
        resources = app.state.resources
        service = ChatService(ConversationRepository(resources.database.pool), resources.retriever, None, settings)
        turn = await service.start(f"guest:{uuid.uuid4()}", ChatRequest(message=QUESTION))
        monkeypatch.setattr(ConversationRepository, "finish_message", slow_finish_message)
        events = service.stream(turn)
        sent = ""
        async for name, event in events:
            if name == "delta":
                sent = event.text
                break
        # The reader goes as the server stops: the stream's clean-up is cancelled in its turn, and the write of
        # the partial answer carries on in the background.
        closing = asyncio.create_task(events.aclose())
        await asyncio.wait_for(write_started.wait(), 2)
        closing.cancel()
        await asyncio.gather(closing, return_exceptions=True)
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT status, content FROM messages WHERE id = $1", turn.message_id)
    finally:
        await conn.close()
    assert (row["status"], row["content"]) == ("cancelled", sent)
