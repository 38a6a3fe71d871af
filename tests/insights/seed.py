"""Turns written straight into PostgreSQL with chosen times, modes, latencies, verdicts and ratings."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg


def citation(title: str, url: str, heading: list[str], index: int = 1) -> dict[str, Any]:
    return {
        "index": index,
        "document_id": None,
        "chunk_id": None,
        "title": title,
        "url": url,
        "heading_path": heading,
        "snippet": "…",
        "score": 0.5,
    }


@dataclass
class SeedTurn:
    question: str
    at: datetime
    answered: bool | None = True
    mode: str = "retrieval"
    status: str = "ok"
    latency_ms: int | None = 1000
    first_token_ms: int | None = 300
    rating: str | None = None
    comment: str | None = None
    citations: list[dict[str, Any]] = field(default_factory=list)
    owner: str = field(default_factory=lambda: f"guest:{uuid.uuid4()}")
    answer: str = "An answer."


async def seed(pool: asyncpg.Pool, turns: list[SeedTurn]) -> list[uuid.UUID]:
    """One conversation per turn; returns the answers' message ids."""
    ids = []
    for turn in turns:
        conversation = await pool.fetchval(
            "INSERT INTO conversations (owner_id, title, created_at, updated_at) VALUES ($1, $2, $3, $3) RETURNING id",
            turn.owner,
            turn.question[:80],
            turn.at,
        )
        await pool.execute(
            "INSERT INTO messages (conversation_id, role, content, created_at) VALUES ($1, 'user', $2, $3)",
            conversation,
            turn.question,
            turn.at,
        )
        answer = await pool.fetchval(
            "INSERT INTO messages (conversation_id, role, content, mode, status, latency_ms, first_token_ms,"
            " answered, citations, created_at) VALUES ($1, 'assistant', $2, $3, $4, $5, $6, $7, $8::jsonb, $9)"
            " RETURNING id",
            conversation,
            turn.answer,
            turn.mode,
            turn.status,
            turn.latency_ms,
            turn.first_token_ms,
            turn.answered,
            json.dumps(turn.citations),
            turn.at + timedelta(microseconds=1),
        )
        if turn.rating is not None:
            await pool.execute(
                "INSERT INTO feedback (message_id, owner_id, rating, comment) VALUES ($1, $2, $3, $4)",
                answer,
                turn.owner,
                turn.rating,
                turn.comment,
            )
        ids.append(answer)
    return ids
