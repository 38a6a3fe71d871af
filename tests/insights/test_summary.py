"""GET /api/insights/summary: every figure checked against a count done here, independently of the SQL."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from tests.chat.fixtures import token_for
from tests.conftest import client_for
from tests.insights.seed import SeedTurn, citation, seed

START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
SECTIONS = [
    citation("Sensors", "https://book.example.org/docs/m2/imu", ["Module 2", "Sensors", "IMU"]),
    citation("Nav2", "https://book.example.org/docs/m3/nav2", ["Module 3", "Nav2"]),
    citation("URDF", "https://book.example.org/docs/m1/urdf", ["Module 1", "URDF"]),
]


def make_turns() -> list[SeedTurn]:
    rng = random.Random(15)
    turns = []
    for i in range(90):
        day = rng.randrange(14)
        at = START + timedelta(days=day, hours=rng.randrange(24), minutes=rng.randrange(60))
        status = rng.choice(["ok"] * 8 + ["error", "cancelled"])
        answered = None if status != "ok" else rng.random() < 0.7
        cited = rng.sample(SECTIONS, rng.randrange(len(SECTIONS) + 1)) if answered else []
        turns.append(
            SeedTurn(
                question=f"question {i}",
                at=at,
                answered=answered,
                mode=rng.choice(["retrieval", "selection", "extractive"]),
                status=status,
                latency_ms=rng.randrange(200, 5000),
                first_token_ms=rng.randrange(50, 900),
                rating=rng.choice([None, None, "up", "down"]),
                citations=[{**section, "index": n + 1} for n, section in enumerate(cited)],
            )
        )
    # Outside the range asked for: must not count.
    turns.append(SeedTurn(question="too early", at=START - timedelta(seconds=1), rating="up"))
    turns.append(SeedTurn(question="too late", at=START + timedelta(days=14), rating="down"))
    return turns


def percentiles(values: list[int]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None}
    # percentile_cont interpolates linearly between the closest ranks, as numpy's default does.
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95))}


def figures(turns: list[SeedTurn], mode: str | None) -> dict[str, Any]:
    answered = sum(1 for turn in turns if turn.answered)
    judged = sum(1 for turn in turns if turn.answered is not None)
    ok = [turn for turn in turns if turn.status == "ok"]
    return {
        "mode": mode,
        "questions": len(turns),
        "answered": answered,
        "answered_share": answered / judged if judged else None,
        "first_token_ms": percentiles([turn.first_token_ms for turn in ok if turn.first_token_ms is not None]),
        "full_answer_ms": percentiles([turn.latency_ms for turn in ok if turn.latency_ms is not None]),
    }


def close(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, dict):
            close(actual[key], value)
        elif isinstance(value, float):
            assert actual[key] == pytest.approx(value), key
        else:
            assert actual[key] == value, key


async def test_every_figure_of_the_summary(insights_app: FastAPI, admin: httpx.AsyncClient, clean: None) -> None:
    turns = make_turns()
    await seed(insights_app.state.resources.database.pool, turns)
    inside = [turn for turn in turns if START <= turn.at < START + timedelta(days=14)]
    params = {"from": START.isoformat(), "to": (START + timedelta(days=14)).isoformat()}

    response = await admin.get("/api/insights/summary", params=params)
    assert response.status_code == 200, response.text
    summary = response.json()
    close(summary["totals"], figures(inside, None))
    assert summary["up"] == sum(1 for turn in inside if turn.rating == "up")
    assert summary["down"] == sum(1 for turn in inside if turn.rating == "down")
    by_mode = {row["mode"]: row for row in summary["by_mode"]}
    assert sorted(by_mode) == sorted({turn.mode for turn in inside})
    for mode, row in by_mode.items():
        close(row, figures([turn for turn in inside if turn.mode == mode], mode))

    days: dict[datetime, list[SeedTurn]] = defaultdict(list)
    for turn in inside:
        days[turn.at.replace(hour=0, minute=0, second=0, microsecond=0)].append(turn)
    assert [datetime.fromisoformat(bucket["start"]) for bucket in summary["series"]] == sorted(days)
    for bucket in summary["series"]:
        group = days[datetime.fromisoformat(bucket["start"])]
        expected = figures(group, None)
        assert bucket["questions"] == expected["questions"]
        assert bucket["answered"] == expected["answered"]
        assert bucket["answered_share"] == pytest.approx(expected["answered_share"])
        assert bucket["up"] == sum(1 for turn in group if turn.rating == "up")
        assert bucket["down"] == sum(1 for turn in group if turn.rating == "down")

    cited = Counter(section["url"] for turn in inside for section in turn.citations)
    assert {row["url"]: row["citations"] for row in summary["top_sections"]} == dict(cited)
    assert [row["citations"] for row in summary["top_sections"]] == sorted(cited.values(), reverse=True)
    imu = next(row for row in summary["top_sections"] if row["url"].endswith("/imu"))
    assert imu["heading_path"] == ["Module 2", "Sensors", "IMU"]
    assert imu["title"] == "Sensors"

    # The closed days came from the rollup; a range with partial days reads its edges live, as exactly.
    pool = insights_app.state.resources.database.pool
    assert await pool.fetchval("SELECT sum(questions) FROM insight_days") == len(turns)
    since, until = START + timedelta(hours=12, minutes=30), START + timedelta(days=13, hours=6)
    partial = (
        await admin.get("/api/insights/summary", params={"from": since.isoformat(), "to": until.isoformat()})
    ).json()
    close(partial["totals"], figures([turn for turn in turns if since <= turn.at < until], None))
    assert sum(row["citations"] for row in partial["top_sections"]) == sum(
        len(turn.citations) for turn in turns if since <= turn.at < until
    )

    weekly = (await admin.get("/api/insights/summary", params={**params, "interval": "week"})).json()
    assert [bucket["questions"] for bucket in weekly["series"]] == [
        sum(1 for turn in inside if turn.at < START + timedelta(days=7)),
        sum(1 for turn in inside if turn.at >= START + timedelta(days=7)),
    ]
    assert datetime.fromisoformat(weekly["series"][1]["start"]) == START + timedelta(days=7)


async def test_an_empty_range_has_no_figures(admin: httpx.AsyncClient, clean: None) -> None:
    summary = (await admin.get("/api/insights/summary", params={"from": "2001-01-01", "to": "2001-01-08"})).json()
    assert summary["totals"]["questions"] == 0
    assert summary["totals"]["answered_share"] is None
    assert summary["totals"]["full_answer_ms"] == {"p50": None, "p95": None}
    assert summary["series"] == []
    assert summary["by_mode"] == []
    assert summary["top_sections"] == []


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"from": "2026-12-02", "to": "2026-12-01"}, "invalid-range"),
        ({"from": "2020-01-01", "to": "2026-01-01", "interval": "day"}, "range-too-long"),
    ],
)
async def test_bad_ranges_are_400(admin: httpx.AsyncClient, params: dict[str, str], code: str) -> None:
    response = await admin.get("/api/insights/summary", params=params)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


@pytest.mark.parametrize("params", [{"interval": "month"}, {"from": "yesterday"}])
async def test_bad_parameters_are_422(admin: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await admin.get("/api/insights/summary", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "path",
    [
        "/api/insights/summary",
        "/api/insights/gaps",
        "/api/insights/feedback?rating=down",
        "/api/insights/questions.csv",
    ],
)
async def test_only_admins_see_insights(insights_app: FastAPI, path: str) -> None:
    async with client_for(insights_app) as anonymous:
        assert (await anonymous.get(path)).status_code == 401
    for role, subject in (("guest", None), ("user", "user:00000000-0000-0000-0000-000000000001")):
        async with client_for(insights_app, Authorization=f"Bearer {token_for(insights_app, subject, role)}") as http:
            response = await http.get(path)
            assert response.status_code == 403, (role, response.text)
            assert response.json()["code"] == "admin-required"
    admin_token = token_for(insights_app, "user:00000000-0000-0000-0000-000000000002", "admin")
    async with client_for(insights_app, Authorization=f"Bearer {admin_token}") as http:
        assert (await http.get(path)).status_code == 200
