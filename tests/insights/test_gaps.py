"""GET /api/insights/gaps: unanswered questions grouped by meaning, incrementally, ranked, paginated, by date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from bookchat.insights.gap_repository import GapVectors, distinct
from bookchat.insights.gaps import GapIndexer, VectorCache, assign
from bookchat.retrieval.embeddings import EmbeddingError
from tests.chat.fixtures import reader_on
from tests.insights.seed import SeedTurn, seed

CAKE = ["What's a good recipe for a moist chocolate cake?", "How do I bake a chocolate cake that stays moist?"]
PASSPORT = "How do I renew my passport?"


async def ask(app: FastAPI, question: str) -> dict[str, Any]:
    async with reader_on(app) as reader:
        response = await reader.http.post("/api/chat", json={"message": question})
        assert response.status_code == 200, response.text
        return dict(response.json())


async def test_two_phrasings_are_one_gap_and_another_question_another(
    insights_app: FastAPI, admin: httpx.AsyncClient, clean: None
) -> None:
    for question in [*CAKE, PASSPORT]:
        assert (await ask(insights_app, question))["answered"] is False
    assert (await ask(insights_app, "How does Gazebo simulate a lidar sensor?"))["answered"] is True

    page = (await admin.get("/api/insights/gaps")).json()
    assert page["complete"] is True
    assert [gap["asked"] for gap in page["items"]] == [2, 1]
    cake, passport = page["items"]
    assert sorted(cake["examples"]) == sorted(CAKE)
    assert passport["examples"] == [PASSPORT]
    assert cake["last_asked"] < passport["last_asked"]

    # Incremental: a third phrasing joins the existing gap; nothing already grouped is grouped again.
    await ask(insights_app, "Chocolate cake recipe, please")
    again = (await admin.get("/api/insights/gaps")).json()
    assert [(gap["id"], gap["asked"]) for gap in again["items"]] == [(cake["id"], 3), (passport["id"], 1)]
    assert again["items"][0]["examples"][0] == "Chocolate cake recipe, please"
    pool = insights_app.state.resources.database.pool
    assert await pool.fetchval("SELECT count(*) FROM insight_questions") == 4
    assert await pool.fetchval("SELECT members FROM insight_gaps WHERE id = $1", cake["id"]) == 3


async def test_pages_and_dates(insights_app: FastAPI, admin: httpx.AsyncClient, clean: None) -> None:
    day = datetime(2026, 10, 5, tzinfo=UTC)
    questions = [
        ("How do I renew my passport?", 0),
        ("What are the steps to get my passport renewed?", 1),
        ("Passport renewal: how?", 2),
        ("What will the weather be like in Lahore tomorrow?", 3),
        ("Lahore weather forecast for tomorrow?", 4),
        ("What is the capital of Australia?", 5),
    ]
    await seed(
        insights_app.state.resources.database.pool,
        [SeedTurn(question=q, at=day + timedelta(days=offset), answered=False) for q, offset in questions],
    )
    params = {"from": "2026-10-01", "to": "2026-11-01"}
    first = (await admin.get("/api/insights/gaps", params={**params, "limit": 2})).json()
    assert [gap["asked"] for gap in first["items"]] == [3, 2]
    assert first["next_cursor"]
    second = (
        await admin.get("/api/insights/gaps", params={**params, "limit": 2, "cursor": first["next_cursor"]})
    ).json()
    assert [gap["asked"] for gap in second["items"]] == [1]
    assert second["items"][0]["examples"] == ["What is the capital of Australia?"]
    assert second["next_cursor"] is None

    # Only what was asked in the range counts.
    narrow = (await admin.get("/api/insights/gaps", params={"from": "2026-10-06", "to": "2026-10-09"})).json()
    assert [(len(gap["examples"]), gap["asked"]) for gap in narrow["items"]] == [(2, 2), (1, 1)]


@pytest.mark.parametrize("cursor", ["nope", "WyIxIl0", "WyItMSIsIjEiXQ", "WyI5OTk5OTk5OTk5OTk5OTk5OTk5OTkiLCIxIl0"])
async def test_bad_cursors_are_400(admin: httpx.AsyncClient, cursor: str) -> None:
    response = await admin.get("/api/insights/gaps", params={"cursor": cursor})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid-cursor"


async def test_a_failing_embedder_groups_nothing_and_the_next_request_catches_up(
    insights_app: FastAPI, admin: httpx.AsyncClient, clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = insights_app.state.resources.database.pool
    await seed(
        pool, [SeedTurn(question="What's the weather in Lahore tomorrow?", at=datetime.now(UTC), answered=False)]
    )
    embedder = insights_app.state.resources.embedder

    async def broken(texts: list[str]) -> list[list[float]]:
        raise EmbeddingError("the embedding service is down")

    monkeypatch.setattr(embedder, "embed_documents", broken)
    page = (await admin.get("/api/insights/gaps")).json()
    assert page == {"items": [], "next_cursor": None, "complete": False}
    assert await pool.fetchval("SELECT count(*) FROM insight_gaps") == 0
    monkeypatch.undo()
    page = (await admin.get("/api/insights/gaps")).json()
    assert page["complete"] is True
    assert [gap["asked"] for gap in page["items"]] == [1]


async def test_batches_and_a_pending_answer_hold_the_watermark(insights_app: FastAPI, clean: None) -> None:
    resources = insights_app.state.resources
    pool = resources.database.pool
    now = datetime.now(UTC)
    await seed(
        pool,
        [
            SeedTurn(question=f"Off-topic question {i}", at=now - timedelta(hours=3 - i), answered=False)
            for i in range(3)
        ],
    )
    # A turn still being written when the gaps are read: it must be grouped once it ends unanswered.
    [pending] = await seed(
        pool,
        [SeedTurn(question="A late one about cakes", at=now - timedelta(hours=5), answered=None, status="pending")],
    )
    indexer = GapIndexer(pool, resources.embedder, threshold=0.725, batch=2)
    first = await indexer.assign_pending()
    assert (first.assigned, first.complete) == (2, False)
    second = await indexer.assign_pending()
    assert (second.assigned, second.complete) == (1, True)
    # Held at the pending answer (written a microsecond after its question).
    assert await pool.fetchval("SELECT watermark FROM insight_state") == now - timedelta(hours=5, microseconds=-1)
    await pool.execute("UPDATE messages SET status = 'ok', answered = false WHERE id = $1", pending)
    assert (await indexer.assign_pending()).assigned == 1
    assert await pool.fetchval("SELECT count(*) FROM insight_questions") == 4


async def test_a_busy_lock_serves_what_is_grouped(insights_app: FastAPI, clean: None) -> None:
    resources = insights_app.state.resources
    pool = resources.database.pool
    indexer = GapIndexer(pool, resources.embedder, threshold=0.725, batch=10)
    async with pool.acquire() as conn, conn.transaction():
        assert await indexer.repository.try_lock(conn)
        outcome = await indexer.assign_pending()
    assert (outcome.assigned, outcome.complete) == (0, False)


async def test_a_new_embedding_model_rebuilds_the_gaps(insights_app: FastAPI, clean: None) -> None:
    resources = insights_app.state.resources
    pool = resources.database.pool
    await seed(pool, [SeedTurn(question="How do I renew my passport?", at=datetime.now(UTC), answered=False)])
    indexer = GapIndexer(pool, resources.embedder, threshold=0.725, batch=10)
    await indexer.assign_pending()
    before = await pool.fetchval("SELECT id FROM insight_gaps")
    await pool.execute("UPDATE insight_state SET embedding_model = 'another-model'")
    assert (await indexer.assign_pending()).assigned == 1
    assert await pool.fetchval("SELECT id FROM insight_gaps") != before
    assert await pool.fetchval("SELECT embedding_model FROM insight_state") == resources.embedder.model_id


def test_greedy_assignment_moves_the_centroid() -> None:
    a, b, c = np.eye(3, dtype=np.float32)
    near_a = (a * 0.9 + b * 0.1) / np.linalg.norm(a * 0.9 + b * 0.1)
    empty = GapVectors([], np.zeros((0, 3), np.float32), [])
    result = assign(np.stack([a, near_a, c]), empty, threshold=0.8)
    assert result.gap_index == [0, 0, 1]
    assert result.members == [2, 1]
    assert result.similarity[1] == pytest.approx(float(near_a @ a))
    existing = GapVectors([7], np.stack([c * 2]), [2])
    result = assign(np.stack([c, a]), existing, threshold=0.8)
    assert result.gap_index == [0, 1]
    assert result.existing == 1
    assert result.members == [3, 1]


def test_vector_cache_is_bounded_and_holds_no_text() -> None:
    cache = VectorCache(size=2)
    for i in range(3):
        cache.put(f"question {i}", np.full(2, i, np.float32))
    assert len(cache) == 2
    assert cache.get("question 0") is None
    assert cache.get("question 2") is not None
    assert all(isinstance(key, bytes) and b"question" not in key for key in cache._vectors)
    cache.clear()
    assert len(cache) == 0


def test_examples_are_distinct_and_at_most_five() -> None:
    assert distinct(["A b", "a  B", "c", "d", "e", "f", "g"]) == ["A b", "c", "d", "e", "f"]
    assert distinct(None) == []
