"""Retention (`bookchat purge`, the in-process sweep) and `bookchat insights gaps` in the terminal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from bookchat.cli import app as cli
from bookchat.config import Settings
from bookchat.errors import BadRequest
from bookchat.insights.gaps import vector_cache
from bookchat.insights.retention import purge, retention_upkeep, sweep_once
from bookchat.insights.terminal import parse_since
from tests.insights.seed import SeedTurn, seed

runner = CliRunner()
NOW = datetime.now(UTC)


async def counts(pool: object) -> tuple[int, int, int, int, int]:
    row = await pool.fetchrow(  # type: ignore[attr-defined]
        "SELECT (SELECT count(*) FROM conversations) AS c, (SELECT count(*) FROM messages) AS m,"
        " (SELECT count(*) FROM feedback) AS f, (SELECT count(*) FROM insight_questions) AS q,"
        " (SELECT count(*) FROM insight_gaps) AS g"
    )
    return row["c"], row["m"], row["f"], row["q"], row["g"]


async def test_purge_removes_old_conversations_everywhere(
    insights_app: FastAPI, admin: httpx.AsyncClient, clean: None
) -> None:
    pool = insights_app.state.resources.database.pool
    old = NOW - timedelta(days=40)
    await seed(
        pool,
        [
            SeedTurn(question="How do I renew my passport?", at=old, answered=False, rating="down", comment="no"),
            SeedTurn(question="What is the capital of Australia?", at=old, answered=False),
            SeedTurn(question="Old but answered", at=old, rating="up"),
            SeedTurn(question="What are the steps to get my passport renewed?", at=NOW, answered=False),
            SeedTurn(question="Recent and answered", at=NOW, rating="up"),
        ],
    )
    assert (
        len(
            (await admin.get("/api/insights/gaps", params={"from": (NOW - timedelta(days=60)).isoformat()})).json()[
                "items"
            ]
        )
        == 2
    )
    vector_cache().put("anything", np.ones(2, np.float32))
    assert await counts(pool) == (5, 10, 3, 3, 2)

    result = await purge(pool, 30)
    assert (result.messages, result.conversations, result.gaps) == (6, 3, 1)  # Australia's gap had only old questions
    assert await counts(pool) == (2, 4, 1, 1, 1)
    assert len(vector_cache()) == 0
    left = await pool.fetch("SELECT content FROM messages WHERE role = 'user' ORDER BY content")
    assert [row["content"] for row in left] == ["Recent and answered", "What are the steps to get my passport renewed?"]
    assert (await purge(pool, 30)).messages == 0  # idempotent


async def test_the_sweep_runs_at_start_and_survives_an_outage(
    insights_app: FastAPI, make_settings: Callable[..., Settings], clean: None, caplog: pytest.LogCaptureFixture
) -> None:
    pool = insights_app.state.resources.database.pool
    await seed(pool, [SeedTurn(question="Ancient", at=NOW - timedelta(days=400))])
    async with retention_upkeep(pool, make_settings(retention_days=365, retention_sweep_interval=60)):
        assert await pool.fetchval("SELECT count(*) FROM messages") == 0
    async with retention_upkeep(pool, make_settings()):  # off by default: nothing runs
        pass

    class Down:
        async def execute(self, *args: object) -> str:
            raise ConnectionRefusedError("database down")

    with caplog.at_level(logging.WARNING, logger="bookchat.insights.retention"):
        assert await sweep_once(Down(), 30) is None  # type: ignore[arg-type]
    assert "retention sweep failed" in caplog.text


async def test_cli_gaps_and_purge(insights_app: FastAPI, insights_database: str, clean: None) -> None:
    pool = insights_app.state.resources.database.pool
    await seed(
        pool,
        [
            SeedTurn(question="How do I renew my passport?", at=NOW - timedelta(days=2), answered=False),
            SeedTurn(question="Passport renewal: how?", at=NOW - timedelta(days=1), answered=False),
            SeedTurn(question="Who is the best chess player?", at=NOW - timedelta(days=20), answered=False),
        ],
    )
    settings = insights_app.state.settings
    env = {"BOOKCHAT_DATABASE_URL": insights_database, "BOOKCHAT_DATA_DIR": str(settings.data_dir)}
    shown = await asyncio.to_thread(runner.invoke, cli, ["insights", "gaps", "--since", "7d"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "Passport renewal: how?" in shown.output
    assert "How do I renew my passport?" in shown.output
    assert "chess" not in shown.output
    bad = await asyncio.to_thread(runner.invoke, cli, ["insights", "gaps", "--since", "soon"], env=env)
    assert bad.exit_code == 2
    assert "--since" in bad.output

    no_days = await asyncio.to_thread(runner.invoke, cli, ["purge"], env=env)
    assert no_days.exit_code == 2
    assert "BOOKCHAT_RETENTION_DAYS" in no_days.output
    purged = await asyncio.to_thread(runner.invoke, cli, ["purge"], env={**env, "BOOKCHAT_RETENTION_DAYS": "10"})
    assert purged.exit_code == 0, purged.output
    assert "older than 10 days: 2 messages, 1 conversations, 1 gaps deleted" in purged.output
    nothing = await asyncio.to_thread(runner.invoke, cli, ["insights", "gaps", "--since", "2000-01-01"], env=env)
    assert "Passport renewal" in nothing.output


def test_parse_since() -> None:
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("12h", now) == now - timedelta(hours=12)
    assert parse_since("2w", now) == now - timedelta(weeks=2)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(BadRequest):
        parse_since("yesterday", now)
