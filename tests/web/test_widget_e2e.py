"""The whole stack in a browser: a real server with the fake LLM and an ingested book, the widget on the demo page."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, BrowserContext, Dialog, Page, expect

from bookchat.config import Settings
from bookchat.documents.ingest import IngestPipeline
from bookchat.main import create_app
from tests.chat.fixtures import llm_settings
from tests.fakes.llm_server import FakeLLMServer, ReplyFactory, Text, request_text
from tests.web.live_server import LiveServer
from tests.web.page_actions import select_sentence

HANDBOOK = """---
title: Robot handbook
---

# Robot handbook

This handbook explains how to look after the robot: charging, cleaning and safe operation.

## Charging the battery

The robot charges its battery at the dock in forty minutes. Keep the charging contacts clean and dry.

## Cleaning the sensors

Wipe the camera and lidar windows with a dry microfibre cloth once a week.
"""

SAFETY = """---
title: Safety
---

# Safety

## Emergency stop

Press the red emergency stop button to cut power to all motors. Keep children away from the moving arm.
"""

QUOTING = """---
title: Quoting markup
---

# Quoting markup

## Markup in passages

Some pages quote markup such as <img src=x onerror="window.__pwned='doc'"> and <script>window.__pwned='doc'</script>
to show what must never run.
"""

SELECTED = "Press the red emergency stop button to cut power to all motors."


@dataclass
class Site:
    url: str
    llm: FakeLLMServer

    @property
    def guide(self) -> str:
        return self.url + "/guide"


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("book") / "docs"
    (root / "robot").mkdir(parents=True)
    (root / "index.md").write_text(HANDBOOK, encoding="utf-8")
    (root / "robot" / "01-safety.md").write_text(SAFETY, encoding="utf-8")
    (root / "robot" / "02-quoting.md").write_text(QUOTING, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def site(chromium_path: Path, make_settings: Callable[..., Settings], book: Path) -> Iterator[Site]:
    """A real uvicorn serving the app, the fake LLM behind it and the book ingested with demo-site URLs."""
    with FakeLLMServer() as llm:
        settings = llm_settings(make_settings, llm, llm_timeout=10.0)
        app = create_app(settings)
        app.state.docs_dir = book
        server = LiveServer(app)  # binds its port now, so the ingestion knows the URLs
        app_lifespan = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(running: FastAPI) -> AsyncIterator[Any]:
            async with app_lifespan(running) as state:
                resources = running.state.resources
                pipeline = IngestPipeline(resources.database.pool, resources.retriever, resources.embedder, settings)
                await pipeline.ingest_paths([book], base_url=server.url + "/guide")
                yield state

        app.router.lifespan_context = lifespan
        with server:
            yield Site(server.url, llm)


@pytest.fixture
def fake(site: Site) -> Iterator[FakeLLMServer]:
    site.llm.reset()
    yield site.llm
    site.llm.reset()


@pytest.fixture
def context(site: Site, browser: Browser) -> Iterator[BrowserContext]:
    # `site` first: its async database fixtures must be set up before Playwright's loop runs in this thread.
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


@dataclass
class Watch:
    """Everything a page did that an injected script would: dialogs, and requests to other origins."""

    dialogs: list[str]
    requests: list[str]


@pytest.fixture
def page(context: BrowserContext, site: Site) -> Iterator[tuple[Page, Watch]]:
    page = context.new_page()
    watch = Watch([], [])
    page.on("dialog", lambda dialog: record_dialog(watch.dialogs, dialog))
    page.on("request", lambda request: watch.requests.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page, watch
    assert errors == []


def record_dialog(seen: list[str], dialog: Dialog) -> None:
    """Note an alert/confirm/prompt (only injected script would open one) and close it."""
    seen.append(dialog.message)
    dialog.dismiss()


def citing(keyword: str, answer: str, **options: Any) -> ReplyFactory:
    """A reply that cites, as `[n]`, whichever passage of the prompt contains `keyword`."""

    def reply(body: dict[str, Any]) -> Text:
        for match in re.finditer(r'<passage id="(\d+)"[^>]*>(.*?)</passage>', request_text(body), re.S):
            if keyword in match.group(2):
                return Text(answer.format(n=match.group(1)), **options)
        return Text("The book does not say.")

    return reply


def open_chat(page: Page) -> None:
    page.get_by_role("button", name="Ask the book").click()
    expect(page.get_by_role("dialog", name="Ask the book")).to_be_visible()


def ask(page: Page, question: str) -> None:
    box = page.get_by_role("textbox", name="Your question")
    box.fill(question)
    box.press("Enter")


def test_streamed_answer_links_to_the_cited_section_and_survives_reload(
    site: Site, fake: FakeLLMServer, page: tuple[Page, Watch], tmp_path: Path
) -> None:
    browser_page, watch = page
    fake.script(
        citing(
            "forty minutes",
            "The robot charges at its dock in **forty minutes** [{n}]. Keep the contacts clean and dry.",
            chunk_delay=0.08,
        )
    )
    browser_page.goto(site.url + "/")
    open_chat(browser_page)
    # Record, as it happens, whether part of the answer was on screen while it was still being written.
    browser_page.evaluate(
        """() => new MutationObserver(() => {
            const body = document.querySelector('.bkc-msg-assistant[aria-busy="true"] .bkc-body');
            const text = body ? body.textContent : "";
            if (text.includes("The robot") && !text.includes("dry.")) window.__sawPartialAnswer = true;
        }).observe(document.body, {subtree: true, childList: true, characterData: true})"""
    )
    ask(browser_page, "Where does the robot charge its battery?")
    answer = browser_page.locator(".bkc-msg-assistant").last
    expect(answer.locator(".bkc-body")).to_contain_text("Keep the contacts clean and dry.")
    expect(answer).not_to_have_attribute("aria-busy", "true")
    assert browser_page.evaluate("() => window.__sawPartialAnswer") is True  # it streamed in
    expect(answer.locator(".bkc-body strong")).to_have_text("forty minutes")

    section = site.guide + "/#charging-the-battery"
    cite = answer.locator(".bkc-body a.bkc-cite")
    expect(cite).to_have_text("[1]")
    expect(cite).to_have_attribute("href", section)
    expect(answer.locator(".bkc-sources a")).to_have_attribute("href", section)
    expect(answer.locator(".bkc-sources")).to_contain_text("Robot handbook › Charging the battery")
    panel_shot = tmp_path / "widget-panel.png"
    browser_page.get_by_role("dialog", name="Ask the book").screenshot(path=str(panel_shot))
    assert panel_shot.stat().st_size > 5_000
    if os.environ.get("WIDGET_SCREENSHOT"):
        # `make`-free way to refresh the README image: WIDGET_SCREENSHOT=docs/img/widget.png pytest ...
        browser_page.screenshot(path=str(tmp_path / "page.png"))
        shutil.copyfile(tmp_path / "page.png", os.environ["WIDGET_SCREENSHOT"])

    # The citation opens the section of the demo site (same tab: the widget comes back with the conversation).
    cite.click()
    browser_page.wait_for_url(re.compile(r"#charging-the-battery$"))
    expect(browser_page.locator("#charging-the-battery")).to_be_in_viewport()
    expect(browser_page.get_by_role("dialog", name="Ask the book")).to_be_visible()
    expect(browser_page.locator(".bkc-msg-user .bkc-p")).to_have_text(["Where does the robot charge its battery?"])

    browser_page.reload()
    expect(browser_page.get_by_role("dialog", name="Ask the book")).to_be_visible()
    expect(browser_page.locator(".bkc-msg-user .bkc-p")).to_have_text(["Where does the robot charge its battery?"])
    restored = browser_page.locator(".bkc-msg-assistant").last
    expect(restored.locator(".bkc-body")).to_contain_text("forty minutes")
    expect(restored.locator("a.bkc-cite")).to_have_attribute("href", section)
    assert len(fake.requests) == 1  # the history came from the server, not from asking again
    assert watch.dialogs == []


def test_ask_about_a_selection_sends_only_the_selection(
    site: Site, fake: FakeLLMServer, page: tuple[Page, Watch]
) -> None:
    browser_page, _ = page
    fake.script(Text("Press the red button: it cuts power to every motor [1]."))
    safety_url = site.guide + "/robot/safety"
    browser_page.goto(safety_url)
    select_sentence(browser_page, SELECTED)
    browser_page.get_by_role("button", name="Ask about this").click()
    expect(browser_page.get_by_role("dialog", name="Ask the book")).to_be_visible()
    ask(browser_page, "What does this button do?")
    answer = browser_page.locator(".bkc-msg-assistant").last
    expect(answer.locator(".bkc-body")).to_contain_text("cuts power to every motor")
    expect(answer.locator("a.bkc-cite")).to_have_attribute("href", safety_url)
    expect(browser_page.locator(".bkc-msg-user .bkc-selection-quote")).to_have_text(SELECTED)

    sent = request_text(fake.last_request)
    assert SELECTED in sent
    assert "What does this button do?" in sent
    for elsewhere in ("Keep children away", "forty minutes", "handbook explains"):
        assert elsewhere not in sent  # nothing of the book but the selection reached the model


def test_markup_in_passages_and_answers_stays_text(site: Site, fake: FakeLLMServer, page: tuple[Page, Watch]) -> None:
    browser_page, watch = page
    hostile = (
        "The page quotes <img src=x onerror=\"window.__pwned='answer'\"> and "
        "<script>window.__pwned='answer'</script> [1]."
    )
    fake.script(citing("never run", hostile.replace("[1]", "[{n}]")))
    browser_page.goto(site.url + "/")
    open_chat(browser_page)
    ask(browser_page, "What markup do pages quote that must never run?")
    answer = browser_page.locator(".bkc-msg-assistant").last
    expect(answer.locator(".bkc-body")).to_contain_text("<script>window.__pwned='answer'</script>")
    expect(answer.locator(".bkc-body")).to_contain_text('<img src=x onerror="window.__pwned=')
    expect(answer.locator(".bkc-sources")).to_contain_text("Quoting markup › Markup in passages")
    expect(answer.locator(".bkc-sources a")).to_have_attribute("href", site.guide + "/robot/quoting#markup-in-passages")
    widget = browser_page.locator(".bkc-root")
    assert widget.locator("img, script, iframe, object, embed").count() == 0
    assert browser_page.evaluate("() => window.__pwned") is None
    assert watch.dialogs == []
    assert all(url.startswith(site.url) for url in watch.requests), watch.requests


def test_off_topic_question_shows_the_not_covered_note(
    site: Site, fake: FakeLLMServer, page: tuple[Page, Watch]
) -> None:
    browser_page, _ = page
    browser_page.goto(site.url + "/")
    open_chat(browser_page)
    ask(browser_page, "What is a good recipe for chocolate cake?")
    answer = browser_page.locator(".bkc-msg-assistant").last
    expect(answer.locator(".bkc-uncovered-note")).to_have_text("Not covered by the book.")
    expect(answer.locator(".bkc-sources")).to_be_hidden()
    links = answer.get_by_role("list", name="Closest pages:").get_by_role("link")
    expect(links).not_to_have_count(0)
    for href in links.evaluate_all("(nodes) => nodes.map((node) => node.href)"):
        assert href.startswith(site.guide), href
    assert fake.requests == []  # the coverage gate answered: the model was not called
