"""The insights dashboard in Debian's Chromium: an admin signs in, sees the gap two phrasings of one unanswerable
question made, opens it in the chat, and exports the questions as CSV."""

from __future__ import annotations

import csv
import io
import os
import random
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, expect

from bookchat.auth.service import cli_create_user
from bookchat.config import Settings
from bookchat.documents.ingest import IngestPipeline
from bookchat.main import create_app
from tests.conftest import throwaway_database
from tests.insights.seed import SeedTurn, citation, seed
from tests.web.live_server import LiveServer
from tests.web.test_widget_e2e import HANDBOOK, SAFETY

ADMIN_EMAIL = "author@example.org"
ADMIN_PASSWORD = "a long and unusual passphrase"
CAKE = ["What's a good recipe for a moist chocolate cake?", "How do I bake a chocolate cake that stays moist?"]
ANSWERED = ["How long does charging take?", "Where is the emergency stop?", "How do I clean the lidar window?"]
# What the handbook leaves out: readers' phrasings of three gaps.
UNANSWERED = [
    "Can the robot climb stairs?",
    "Is the robot able to go up stairs?",
    "Does the robot work outdoors in the rain?",
    "Is it safe to use the robot in the rain?",
    "How do I update the robot's firmware?",
    "Firmware update steps?",
]
# Screenshots kept in the repository must stay small.
MAX_SCREENSHOT_BYTES = 300_000


@dataclass
class Dashboard:
    url: str
    seeded: int


@pytest.fixture(scope="module")
async def dashboard_database(postgres_server_url: str) -> AsyncIterator[str]:
    async with throwaway_database(postgres_server_url, "bookchat_dashboard") as url:
        yield url


def history() -> list[SeedTurn]:
    """Two weeks of questions, so the charts have something to draw."""
    rng = random.Random(16)
    now = datetime.now(UTC)
    charging = citation("Robot handbook", "/guide/#charging-the-battery", ["Robot handbook", "Charging the battery"])
    stop = citation("Safety", "/guide/robot/safety#emergency-stop", ["Safety", "Emergency stop"])
    turns = []
    for day in range(14):
        for _ in range(rng.randrange(3, 12)):
            answered = rng.random() < 0.8
            asked = ANSWERED if answered else UNANSWERED
            turns.append(
                SeedTurn(
                    question=rng.choice(asked),
                    at=now - timedelta(days=13 - day, hours=rng.randrange(1, 8)),
                    answered=answered,
                    mode="extractive",
                    latency_ms=rng.randrange(30, 400),
                    first_token_ms=rng.randrange(20, 200),
                    rating=rng.choice([None, None, "up", "up", "down"]),
                    comment="It cites the wrong section." if rng.random() < 0.3 else None,
                    citations=[rng.choice([charging, stop])] if answered else [],
                )
            )
    return turns


@pytest.fixture(scope="module")
def dashboard(
    chromium_path: Path, make_settings: Callable[..., Settings], dashboard_database: str, tmp_path_factory: Any
) -> Iterator[Dashboard]:
    """A real uvicorn serving an extractive app (the coverage gate refuses off-topic questions without a model)
    on a database of its own: the book ingested, an admin account, two weeks of history."""
    book = tmp_path_factory.mktemp("book") / "docs"
    (book / "robot").mkdir(parents=True)
    (book / "index.md").write_text(HANDBOOK, encoding="utf-8")
    (book / "robot" / "01-safety.md").write_text(SAFETY, encoding="utf-8")
    settings = make_settings(database_url=dashboard_database, llm_provider="none", search_limit=3)
    app = create_app(settings)
    app.state.docs_dir = book
    server = LiveServer(app)
    app_lifespan = app.router.lifespan_context
    turns = history()

    @asynccontextmanager
    async def lifespan(running: FastAPI) -> AsyncIterator[Any]:
        async with app_lifespan(running) as state:
            resources = running.state.resources
            pipeline = IngestPipeline(resources.database.pool, resources.retriever, resources.embedder, settings)
            await pipeline.ingest_paths([book], base_url=server.url + "/guide")
            await cli_create_user(
                resources.database.pool, settings, email=ADMIN_EMAIL, password=ADMIN_PASSWORD, admin=True
            )
            await seed(resources.database.pool, turns)
            yield state

    app.router.lifespan_context = lifespan
    with server:
        yield Dashboard(server.url, len(turns))


def ask_as_a_reader(url: str, question: str) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=30) as http:
        token = http.post("/api/auth/guest").json()["access_token"]
        response = http.post("/api/chat", json={"message": question}, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture
def page(dashboard: Dashboard, browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == []


def test_sign_in_see_the_gap_ask_it_and_export(dashboard: Dashboard, page: Page, tmp_path: Path) -> None:
    for question in CAKE:
        assert ask_as_a_reader(dashboard.url, question)["answered"] is False
    assert ask_as_a_reader(dashboard.url, "How long does the robot take to charge its battery?")["answered"] is True

    page.goto(dashboard.url + "/admin")
    expect(page.get_by_role("heading", name="Sign in as an admin")).to_be_visible()
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("email or password is incorrect")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("body")).to_have_attribute("data-loaded", "true")

    gap = page.locator("#gaps-body tr.gap").filter(has_text=CAKE[0])
    expect(gap).to_have_count(1)
    expect(gap.locator("td").first).to_have_text("2")
    for question in CAKE:
        expect(gap).to_contain_text(question)
    expect(page.locator("#figures")).to_contain_text(str(dashboard.seeded + 3))
    # Every chart is drawn, and has its table.
    for chart in ("#chart-questions", "#chart-share", "#chart-feedback"):
        assert page.locator(f"{chart} svg").count() == 1
        assert page.locator(f"{chart} .fallback table tbody tr").count() >= 14
    assert page.locator("#chart-questions rect").count() > 14
    expect(page.locator("#disliked-list li").first).to_be_visible()
    expect(page.locator("#sections-body")).to_contain_text("Charging the battery")

    shot = tmp_path / "insights-dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert 10_000 < shot.stat().st_size < MAX_SCREENSHOT_BYTES
    if os.environ.get("INSIGHTS_SCREENSHOT"):
        # INSIGHTS_SCREENSHOT=docs/images/insights-dashboard.png pytest tests/web/test_admin_e2e.py
        shutil.copyfile(shot, os.environ["INSIGHTS_SCREENSHOT"])

    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    exported = Path(download.value.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert len(rows) == dashboard.seeded + 3
    cake_rows = [row for row in rows if row["question"] in CAKE]
    assert [row["answered"] for row in cake_rows] == ["false", "false"]

    # Dark theme, chosen and kept.
    page.get_by_role("button", name="Switch between light and dark theme").click()
    assert page.evaluate("() => document.documentElement.dataset.theme") in {"dark", "light"}
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    page.get_by_role("button", name="Switch between light and dark theme").click()
    assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") != background

    # "Ask in the chat" opens the reader's chat with the question typed in, not sent.
    link = gap.get_by_role("link", name="Ask in the chat").get_attribute("href")
    assert link is not None
    assert parse_qs(urlsplit(link).query)["bookchat-ask"][0] in CAKE
    page.goto(dashboard.url + link)
    box = page.get_by_role("textbox", name="Your question")
    expect(box).to_be_visible()
    expect(box).to_have_value(parse_qs(urlsplit(link).query)["bookchat-ask"][0])


def test_a_reader_token_is_refused(dashboard: Dashboard, page: Page) -> None:
    with httpx.Client(base_url=dashboard.url) as http:
        guest = http.post("/api/auth/guest").json()["access_token"]
    page.goto(dashboard.url + "/admin")
    page.get_by_label("Admin token").fill(guest)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Administrator role required")
    expect(page.get_by_role("heading", name="Sign in as an admin")).to_be_visible()
