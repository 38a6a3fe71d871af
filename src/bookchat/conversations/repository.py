"""SQL for conversations, messages and feedback (asyncpg, parameterised); every read is scoped to its owner."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from bookchat.edge.pagination import InvalidCursor, decode_cursor, encode_cursor
from bookchat.text import page_address, shorten

MAX_TITLE_CHARS = 80
MAX_MESSAGES_PER_CONVERSATION_READ = 1000
# As the `messages.search_query` column's CHECK (migrations/006_search_query.sql).
MAX_SEARCH_QUERY_CHARS = 4000


class ConversationNotFound(LookupError):
    """No conversation with that id belongs to the caller (it may exist for someone else)."""


@dataclass(frozen=True)
class HistoryMessage:
    role: str
    content: str


@dataclass(frozen=True)
class StartedTurn:
    conversation_id: UUID
    user_message_id: UUID
    assistant_message_id: UUID
    history: list[HistoryMessage]  # oldest first, without the new question


@dataclass(frozen=True)
class ConversationRecord:
    id: UUID
    title: str
    created_at: datetime
    updated_at: datetime
    message_count: int


@dataclass(frozen=True)
class FeedbackRecord:
    message_id: UUID
    rating: str
    comment: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class MessageRecord:
    id: UUID
    role: str
    content: str
    selected_text: str | None
    page_url: str | None
    citations: list[dict[str, Any]]
    mode: str | None
    model: str | None
    status: str
    error_code: str | None
    latency_ms: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    created_at: datetime
    feedback: FeedbackRecord | None
    search_query: str | None = None
    answered: bool | None = None


def title_from(question: str) -> str:
    """A conversation title: the first question on one line, cut at a word boundary."""
    return shorten(question, MAX_TITLE_CHARS)


def encode_conversation_cursor(updated_at: datetime, conversation_id: UUID) -> str:
    return encode_cursor(updated_at.isoformat(), str(conversation_id))


def decode_conversation_cursor(cursor: str) -> tuple[datetime, UUID]:
    stamp, identifier = decode_cursor(cursor, 2)
    try:
        moment = datetime.fromisoformat(stamp)
        if moment.tzinfo is None:
            raise ValueError("naive timestamp")
        # Converted here: a crafted offset at the edge of the calendar overflows, and must not reach asyncpg.
        return moment.astimezone(UTC), UUID(identifier)
    except (ValueError, OverflowError):
        raise InvalidCursor("invalid cursor: pass back a `next_cursor` unchanged") from None


def _json_list(value: Any) -> list[dict[str, Any]]:
    # jsonb arrives as text unless a codec is registered on the pool; accept both.
    if isinstance(value, str):
        value = json.loads(value)
    return list(value or [])


# The question and its pending answer in one statement: one round trip, atomic without a transaction block.
# The answer is stamped one microsecond after the question, so "ORDER BY created_at" can never swap them.
_TURN_MESSAGES_SQL = """
    INSERT INTO messages (conversation_id, role, content, selected_text, page_url, mode, status, created_at)
    SELECT c.id, v.role, v.content, v.selected_text, v.page_url, v.mode, v.status, t.ts + v.delay
    FROM c, (SELECT clock_timestamp() AS ts) AS t,
         (VALUES ('user', $3::text, $4::text, $5::text, NULL::text, 'ok', interval '0'),
                 ('assistant', '', NULL, NULL, $6::text, 'pending', interval '1 microsecond'))
           AS v (role, content, selected_text, page_url, mode, status, delay)
    RETURNING conversation_id, id, role
"""
_NEW_CONVERSATION_TURN_SQL = (
    "WITH c AS (INSERT INTO conversations (owner_id, title) VALUES ($1, $2) RETURNING id)"  # noqa: S608
    + _TURN_MESSAGES_SQL
)
# No row comes back when the conversation is not the owner's: nothing is written then.
_CONTINUE_CONVERSATION_TURN_SQL = (
    "WITH c AS (UPDATE conversations SET updated_at = now() WHERE id = $1 AND owner_id = $2 RETURNING id)"  # noqa: S608
    + _TURN_MESSAGES_SQL
)
# Questions always; answers only when they completed (a failed answer teaches the model nothing).
_HISTORY_SQL = """
    SELECT m.role, m.content FROM messages m JOIN conversations c ON c.id = m.conversation_id
    WHERE m.conversation_id = $1 AND c.owner_id = $2
      AND (m.role = 'user' OR (m.status = 'ok' AND m.content <> ''))
    ORDER BY m.created_at DESC, m.id DESC LIMIT $3
"""


class ConversationRepository:
    """Data access for one pool. Owner ids are principal ids ("user:<uuid>", "guest:<uuid>", ...)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def start_turn(
        self,
        *,
        owner_id: str,
        conversation_id: UUID | None,
        question: str,
        selected_text: str | None,
        page_url: str | None,
        mode: str,
        history_messages: int,
        history: list[HistoryMessage] | None = None,
    ) -> StartedTurn:
        """Store the question and a `pending` answer row (one statement), before any model is called.

        Continues `conversation_id` when the owner has it (raises `ConversationNotFound` otherwise) or
        starts a conversation titled after the question. Returns the recent history as it was before: `history`
        when the caller already read it (`recent_history`), else read here.
        """
        if history is None:
            history = []
            if conversation_id is not None and history_messages > 0:
                history = await self.recent_history(owner_id, conversation_id, history_messages)
        # Whatever the caller validated: a page's query string and fragment are never stored.
        page_url = page_address(page_url) if page_url is not None else None
        if conversation_id is None:
            rows = await self.pool.fetch(
                _NEW_CONVERSATION_TURN_SQL, owner_id, title_from(question), question, selected_text, page_url, mode
            )
        else:
            rows = await self.pool.fetch(
                _CONTINUE_CONVERSATION_TURN_SQL, conversation_id, owner_id, question, selected_text, page_url, mode
            )
        if not rows:
            raise ConversationNotFound(str(conversation_id))
        ids = {row["role"]: row["id"] for row in rows}
        return StartedTurn(rows[0]["conversation_id"], ids["user"], ids["assistant"], history)

    async def recent_history(self, owner_id: str, conversation_id: UUID, limit: int) -> list[HistoryMessage]:
        """The conversation's last `limit` messages worth replaying, oldest first (none when it is not the owner's)."""
        rows = await self.pool.fetch(_HISTORY_SQL, conversation_id, owner_id, limit)
        return [HistoryMessage(row["role"], row["content"]) for row in reversed(rows)]

    async def finish_message(
        self,
        message_id: UUID,
        *,
        content: str,
        status: str,
        citations: Sequence[dict[str, Any]] = (),
        mode: str | None = None,
        model: str | None = None,
        latency_ms: int | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        error_code: str | None = None,
        search_query: str | None = None,
        answered: bool | None = None,
        first_token_ms: int | None = None,
    ) -> None:
        """Record how an answer ended: `ok`, `error` (with `error_code`) or `cancelled` (partial content)."""
        await self.pool.execute(
            "UPDATE messages SET content = $2, status = $3, citations = $4::jsonb, mode = COALESCE($5, mode),"
            " model = $6, latency_ms = $7, prompt_tokens = $8, completion_tokens = $9, error_code = $10,"
            " search_query = $11, answered = $12, first_token_ms = $13 WHERE id = $1",
            message_id,
            content,
            status,
            json.dumps(list(citations)),
            mode,
            model,
            latency_ms,
            prompt_tokens,
            completion_tokens,
            error_code,
            search_query[:MAX_SEARCH_QUERY_CHARS] if search_query is not None else None,
            answered,
            first_token_ms,
        )

    async def sweep_interrupted(self, *, older_than: float) -> int:
        """Mark answers still `pending` `older_than` seconds after they were started as `error` with code
        `interrupted` (the process writing them died mid-turn); returns how many. Idempotent, and cheap: a
        partial index holds only the pending rows."""
        result: str = await self.pool.execute(
            "UPDATE messages SET status = 'error', error_code = 'interrupted'"
            " WHERE status = 'pending' AND role = 'assistant'"
            " AND created_at < clock_timestamp() - make_interval(secs => $1::double precision)",
            float(older_than),
        )
        return int(result.rsplit(" ", 1)[-1])

    async def list_conversations(
        self, owner_id: str, *, limit: int, cursor: str | None = None
    ) -> tuple[list[ConversationRecord], str | None]:
        """A page of the owner's conversations, most recently active first, and the next page's cursor."""
        after = decode_conversation_cursor(cursor) if cursor else None
        rows = await self.pool.fetch(
            "SELECT c.id, c.title, c.created_at, c.updated_at,"
            " (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS message_count"
            " FROM conversations c WHERE c.owner_id = $1"
            " AND ($2::timestamptz IS NULL OR (c.updated_at, c.id) < ($2::timestamptz, $3::uuid))"
            " ORDER BY c.updated_at DESC, c.id DESC LIMIT $4",
            owner_id,
            after[0] if after else None,
            after[1] if after else None,
            limit + 1,
        )
        records = [ConversationRecord(**dict(row)) for row in rows[:limit]]
        next_cursor = encode_conversation_cursor(records[-1].updated_at, records[-1].id) if len(rows) > limit else None
        return records, next_cursor

    async def get_conversation(self, owner_id: str, conversation_id: UUID) -> ConversationRecord | None:
        row = await self.pool.fetchrow(
            "SELECT c.id, c.title, c.created_at, c.updated_at,"
            " (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS message_count"
            " FROM conversations c WHERE c.id = $1 AND c.owner_id = $2",
            conversation_id,
            owner_id,
        )
        return ConversationRecord(**dict(row)) if row is not None else None

    async def list_messages(
        self, owner_id: str, conversation_id: UUID, *, limit: int = MAX_MESSAGES_PER_CONVERSATION_READ
    ) -> list[MessageRecord]:
        """The conversation's messages in the order they were written, with the owner's feedback."""
        rows = await self.pool.fetch(
            "SELECT m.id, m.role, m.content, m.selected_text, m.page_url, m.citations, m.mode, m.model,"
            " m.status, m.error_code, m.latency_ms, m.prompt_tokens, m.completion_tokens, m.created_at,"
            " m.search_query, m.answered,"
            " f.rating, f.comment, f.created_at AS feedback_created_at, f.updated_at AS feedback_updated_at"
            " FROM messages m JOIN conversations c ON c.id = m.conversation_id"
            " LEFT JOIN feedback f ON f.message_id = m.id AND f.owner_id = c.owner_id"
            " WHERE m.conversation_id = $1 AND c.owner_id = $2"
            " ORDER BY m.created_at, m.id LIMIT $3",
            conversation_id,
            owner_id,
            limit,
        )
        return [
            MessageRecord(
                id=row["id"],
                role=row["role"],
                content=row["content"],
                selected_text=row["selected_text"],
                page_url=row["page_url"],
                citations=_json_list(row["citations"]),
                mode=row["mode"],
                model=row["model"],
                status=row["status"],
                error_code=row["error_code"],
                latency_ms=row["latency_ms"],
                prompt_tokens=row["prompt_tokens"],
                completion_tokens=row["completion_tokens"],
                created_at=row["created_at"],
                search_query=row["search_query"],
                answered=row["answered"],
                feedback=FeedbackRecord(
                    row["id"], row["rating"], row["comment"], row["feedback_created_at"], row["feedback_updated_at"]
                )
                if row["rating"] is not None
                else None,
            )
            for row in rows
        ]

    async def delete_conversation(self, owner_id: str, conversation_id: UUID) -> bool:
        """Delete the conversation with its messages and feedback; False when the owner has no such id."""
        deleted = await self.pool.fetchval(
            "DELETE FROM conversations WHERE id = $1 AND owner_id = $2 RETURNING id", conversation_id, owner_id
        )
        return deleted is not None

    async def message_role(self, owner_id: str, message_id: UUID) -> str | None:
        """The role of a message in one of the owner's conversations, None when there is no such message."""
        role: str | None = await self.pool.fetchval(
            "SELECT m.role FROM messages m JOIN conversations c ON c.id = m.conversation_id"
            " WHERE m.id = $1 AND c.owner_id = $2",
            message_id,
            owner_id,
        )
        return role

    async def save_feedback(self, owner_id: str, message_id: UUID, rating: str, comment: str | None) -> FeedbackRecord:
        """Insert or replace the owner's feedback on a message (the caller has checked ownership)."""
        row = await self.pool.fetchrow(
            "INSERT INTO feedback (message_id, owner_id, rating, comment) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (message_id, owner_id) DO UPDATE"
            " SET rating = EXCLUDED.rating, comment = EXCLUDED.comment, updated_at = now()"
            " RETURNING message_id, rating, comment, created_at, updated_at",
            message_id,
            owner_id,
            rating,
            comment,
        )
        assert row is not None  # INSERT ... RETURNING always yields the row
        return FeedbackRecord(**dict(row))
