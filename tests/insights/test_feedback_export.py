"""Rated answers and the CSV export: newest first, paginated, pseudonyms instead of reader ids, one row per question."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from bookchat.insights.gap_repository import GapRepository
from bookchat.insights.service import csv_cell
from tests.insights.seed import SeedTurn, citation, seed

DAY = datetime(2026, 9, 7, 10, tzinfo=UTC)
IMU = citation("Sensors", "https://book.example.org/docs/m2/imu", ["Module 2", "Sensors", "IMU"])
NAV = citation("Nav2", "https://book.example.org/docs/m3/nav2", ["Module 3", "Nav2"], index=2)


async def test_disliked_answers_newest_first_with_pages(
    insights_app: FastAPI, admin: httpx.AsyncClient, clean: None
) -> None:
    pool = insights_app.state.resources.database.pool
    owner = "user:7d4e0c52-9f59-4d4e-9a3b-2f3f7f1f0001"
    turns = [
        SeedTurn(question=f"Question {i}?", at=DAY + timedelta(hours=i), rating="down", comment=f"bad {i}", owner=owner)
        for i in range(3)
    ]
    turns.append(SeedTurn(question="Liked?", at=DAY, rating="up", citations=[IMU, NAV], answer="Yes [1][2]."))
    ids = await seed(pool, turns)
    # Rated in this order, so "newest first" is by the time of the rating.
    for offset, message_id in enumerate(ids):
        await pool.execute(
            "UPDATE feedback SET updated_at = $2 WHERE message_id = $1",
            message_id,
            DAY + timedelta(days=1, minutes=offset),
        )

    first = (await admin.get("/api/insights/feedback", params={"rating": "down", "limit": 2})).json()
    assert [item["question"] for item in first["items"]] == ["Question 2?", "Question 1?"]
    assert [item["comment"] for item in first["items"]] == ["bad 2", "bad 1"]
    second = (
        await admin.get("/api/insights/feedback", params={"rating": "down", "limit": 2, "cursor": first["next_cursor"]})
    ).json()
    assert [item["question"] for item in second["items"]] == ["Question 0?"]
    assert second["next_cursor"] is None
    readers = {item["reader"] for item in first["items"] + second["items"]}
    assert len(readers) == 1  # one reader, one stable pseudonym
    assert owner not in str(first)
    assert owner.split(":")[1] not in str(first)

    liked = (await admin.get("/api/insights/feedback", params={"rating": "up"})).json()["items"]
    assert len(liked) == 1
    assert liked[0]["answer"] == "Yes [1][2]."
    assert [c["url"] for c in liked[0]["citations"]] == [IMU["url"], NAV["url"]]
    assert liked[0]["reader"] not in readers

    assert (await admin.get("/api/insights/feedback", params={"rating": "meh"})).status_code == 422
    bad = await admin.get("/api/insights/feedback", params={"cursor": "WyJub3QgYSB0aW1lIiwieCJd"})
    assert bad.status_code == 400


async def test_the_csv_has_one_row_per_question(insights_app: FastAPI, admin: httpx.AsyncClient, clean: None) -> None:
    pool = insights_app.state.resources.database.pool
    turns = [
        SeedTurn(question="How does Gazebo simulate a lidar?", at=DAY, citations=[IMU, NAV, IMU], rating="up"),
        SeedTurn(
            question='=HYPERLINK("http://evil")',
            at=DAY + timedelta(minutes=1),
            answered=False,
            rating="down",
            comment='Wrong, "very" wrong,\nsee',
        ),
        SeedTurn(
            question="Cancelled one", at=DAY + timedelta(minutes=2), status="cancelled", answered=None, latency_ms=None
        ),
        SeedTurn(question="Outside", at=DAY + timedelta(days=3)),
    ]
    turns += [SeedTurn(question=f"bulk {i}", at=DAY + timedelta(minutes=10, seconds=i)) for i in range(1200)]
    await seed(pool, turns)
    response = await admin.get("/api/insights/questions.csv", params={"from": "2026-09-07", "to": "2026-09-08"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 3 + 1200
    first, injected, cancelled = rows[:3]
    assert first["question"] == "How does Gazebo simulate a lidar?"
    assert first["answered"] == "true"
    assert first["rating"] == "up"
    assert sorted(first["cited_urls"].split(" ")) == sorted([IMU["url"], NAV["url"]])
    assert first["latency_ms"] == "1000"
    assert first["first_token_ms"] == "300"
    assert datetime.fromisoformat(first["time"]) == DAY + timedelta(microseconds=1)
    assert len(first["reader"]) == 12
    assert injected["question"] == '\'=HYPERLINK("http://evil")'
    assert injected["answered"] == "false"
    assert injected["comment"] == 'Wrong, "very" wrong,\nsee'
    assert cancelled["status"] == "cancelled"
    assert cancelled["answered"] == ""
    assert cancelled["latency_ms"] == ""
    assert [row["question"] for row in rows[3:5]] == ["bulk 0", "bulk 1"]


def test_csv_cells() -> None:
    assert csv_cell(None) == ""
    assert csv_cell(True) == "true"
    assert csv_cell(["a", "b"]) == "a b"
    assert csv_cell("-1+1") == "'-1+1"
    assert csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert csv_cell(12) == "12"


async def test_a_database_failure_half_way_through_grouping_stores_nothing(
    insights_app: FastAPI, admin: httpx.AsyncClient, clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = insights_app.state.resources.database.pool
    await seed(pool, [SeedTurn(question="How do I renew my passport?", at=DAY, answered=False)])

    async def lost(*args: object) -> None:
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")

    # After the gaps are written, before the questions are: the transaction must take the gaps back.
    monkeypatch.setattr(GapRepository, "insert_questions", staticmethod(lost))
    response = await admin.get("/api/insights/gaps", params={"from": "2026-09-01", "to": "2026-09-30"})
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await pool.fetchval("SELECT count(*) FROM insight_gaps") == 0
    monkeypatch.undo()
    page = (await admin.get("/api/insights/gaps", params={"from": "2026-09-01", "to": "2026-09-30"})).json()
    assert [gap["asked"] for gap in page["items"]] == [1]
