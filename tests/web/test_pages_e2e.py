"""The chapter's buttons in Debian's Chromium: a guest sees them disabled, a reader signs up in the widget,
translates a chapter of the demo site into Urdu (right to left, code untouched), toggles back and personalises it;
without a model there are no buttons at all."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, expect

from bookchat.config import Settings
from bookchat.documents.ingest import IngestPipeline
from bookchat.main import create_app
from tests.chat.fixtures import llm_settings
from tests.fakes.llm_server import FakeLLMServer, Reply, Text
from tests.pages.fakes import instructions_of, page_reply, section_of
from tests.web.live_server import LiveServer

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO_ROOT / "docs" / "images" / "translated-chapter.png"
CODE = 'import rclpy\nnode = rclpy.create_node("talker")\nnode.get_logger().info("ready")'

CHAPTER = f"""---
title: Nodes and topics
---

# Nodes and topics

A ROS 2 system is a graph of **nodes** that exchange messages over named topics.

## Writing a publisher

A publisher sends messages on a topic. The node below greets the world once it is ready.

```python
{CODE}
```

## Quality of service

Reliable delivery retries lost messages; best effort drops them, which suits fast sensor streams.
"""

HOME = """---
title: Robot handbook
---

# Robot handbook

Start with [Nodes and topics](ros/nodes.md).
"""


# The fake model's Urdu, written by hand for this chapter (technical terms kept in English, as the prompt asks).
URDU = {
    "Nodes and topics": "نوڈز اور ٹاپکس",
    "A ROS 2 system is a graph of **nodes** that exchange messages over named topics.":
        "ROS 2 کا نظام **nodes** کا ایک گراف ہے جو نام والے topics کے ذریعے آپس میں پیغامات کا تبادلہ کرتے ہیں۔",
    "Writing a publisher": "پبلشر لکھنا",
    "A publisher sends messages on a topic. The node below greets the world once it is ready.":
        "پبلشر کسی topic پر پیغامات بھیجتا ہے۔ نیچے دیا گیا node تیار ہوتے ہی دنیا کو سلام کرتا ہے۔",
    "Quality of service": "سروس کا معیار",
    "Reliable delivery retries lost messages; best effort drops them, which suits fast sensor streams.":
        "قابلِ اعتماد ترسیل گم شدہ پیغامات دوبارہ بھیجتی ہے؛ best effort انہیں چھوڑ دیتی ہے، جو تیز رفتار سینسر"
        " اسٹریمز کے لیے موزوں ہے۔",
}  # fmt: skip


def urdu_reply(body: dict[str, Any]) -> Reply:
    """Translations line by line from `URDU` (tokens and heading marks kept); anything else as `page_reply`."""
    if "You translate" not in instructions_of(body):
        return page_reply(body)
    lines = []
    for line in section_of(body).split("\n"):
        marks, _, text = line.partition(" ") if line.startswith("#") else ("", "", line)
        translated = URDU.get(text.strip(), text)
        lines.append(f"{marks} {translated}" if marks else translated)
    return Text("\n".join(lines))


@dataclass
class Site:
    url: str

    def chapter(self) -> str:
        return self.url + "/guide/ros/nodes"


def _site(app: FastAPI, settings: Settings, book: Path) -> LiveServer:
    app.state.docs_dir = book
    server = LiveServer(app)
    app_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(running: FastAPI) -> AsyncIterator[Any]:
        async with app_lifespan(running) as state:
            resources = running.state.resources
            pipeline = IngestPipeline(resources.database.pool, resources.retriever, resources.embedder, settings)
            await pipeline.ingest_paths([book], base_url=server.url + "/guide")
            yield state

    app.router.lifespan_context = lifespan
    return server


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pages-book") / "docs"
    (root / "ros").mkdir(parents=True)
    (root / "index.md").write_text(HOME, encoding="utf-8")
    (root / "ros" / "nodes.md").write_text(CHAPTER, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def site(chromium_path: Path, make_settings: Callable[..., Settings], book: Path) -> Iterator[Site]:
    with FakeLLMServer(default=urdu_reply) as llm:
        settings = llm_settings(make_settings, llm, llm_timeout=10.0)
        with _site(create_app(settings), settings, book) as server:
            yield Site(server.url)


@pytest.fixture(scope="module")
def plain_site(chromium_path: Path, make_settings: Callable[..., Settings], book: Path) -> Iterator[Site]:
    settings = make_settings(rate_limit_enabled=False)
    with _site(create_app(settings), settings, book) as server:
        yield Site(server.url)


@pytest.fixture
def page(site: Site, plain_site: Site, browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1180, "height": 900}, device_scale_factor=1)
    context.set_default_timeout(15_000)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == []


def _pagebar(page: Page) -> Any:
    return page.get_by_role("toolbar", name="Chapter tools")


def test_a_guest_sees_the_buttons_disabled_with_the_reason(site: Site, page: Page) -> None:
    page.goto(site.chapter())
    bar = _pagebar(page)
    expect(bar).to_be_visible()
    for name in ("Personalise for me", "اردو"):
        button = bar.get_by_role("button", name=name)
        expect(button).to_be_disabled()
        expect(button).to_have_attribute("title", "Sign in to personalise or translate this chapter.")
    expect(bar.get_by_role("status")).to_have_text("Sign in to personalise or translate this chapter.")


def test_a_book_with_its_own_login_hands_the_tokens_over(site: Site, page: Page) -> None:
    email = f"own-login-{uuid.uuid4().hex[:8]}@example.org"
    password = "plum-ferry-quartz-lantern"
    assert page.request.post(site.url + "/api/auth/register", data={"email": email, "password": password}).ok
    tokens = page.request.post(site.url + "/api/auth/login", data={"email": email, "password": password}).json()
    page.goto(site.chapter())
    bar = _pagebar(page)
    expect(bar.get_by_role("button", name="اردو")).to_be_disabled()
    page.wait_for_function("() => window.BookchatWidget && window.BookchatWidget.pageTools")
    page.evaluate("([tokens, email]) => window.BookchatWidget.signIn(tokens, email)", [tokens, email])
    expect(bar.get_by_role("button", name="اردو")).to_be_enabled()
    expect(bar.get_by_role("button", name=f"Profile · {email}")).to_be_visible()
    page.evaluate("() => window.BookchatWidget.signIn(null)")
    expect(bar.get_by_role("button", name="اردو")).to_be_disabled()


def test_a_reader_translates_to_urdu_toggles_back_and_personalises(site: Site, page: Page, tmp_path: Path) -> None:
    page.goto(site.chapter())
    bar = _pagebar(page)
    bar.get_by_role("button", name="Sign in").click()
    bar.get_by_label("Email").fill(f"reader-{uuid.uuid4().hex[:8]}@example.org")
    bar.get_by_label("Password").fill("plum-ferry-quartz-lantern")
    bar.get_by_label("Software experience").select_option("beginner")
    bar.get_by_label("Hardware experience").select_option("hobbyist")
    bar.get_by_role("button", name="Create account").click()
    expect(bar.get_by_role("status")).to_have_text("Account created; you are signed in.")
    urdu = bar.get_by_role("button", name="اردو")
    expect(urdu).to_be_enabled()

    urdu.click()
    article = page.locator("article.demo-article")
    rewritten = article.locator(".bkc-rewritten")
    expect(rewritten).to_have_attribute("dir", "rtl")
    expect(rewritten).to_have_attribute("lang", "ur")
    expect(bar.get_by_role("status")).to_have_text("Translated.")
    # Headings translated, anchors as on the original page; the code block as written.
    expect(rewritten.locator("h1")).to_have_text(URDU["Nodes and topics"])
    expect(rewritten.locator("h2#writing-a-publisher")).to_have_text(URDU["Writing a publisher"])
    expect(rewritten.locator("h2#quality-of-service")).to_have_text(URDU["Quality of service"])
    expect(rewritten.locator("p").first).to_contain_text("ROS 2 کا نظام")
    expect(rewritten.locator("p strong").first).to_have_text("nodes")
    code = rewritten.locator("pre code")
    assert code.text_content() == CODE + "\n"  # byte for byte, and left to right inside the RTL chapter
    expect(rewritten.locator("pre")).to_have_attribute("dir", "ltr")
    assert page.evaluate("() => getComputedStyle(document.querySelector('.bkc-rewritten')).direction") == "rtl"
    shot = tmp_path / "translated-chapter.png"
    page.locator(".demo-main").screenshot(path=str(shot))
    assert 0 < shot.stat().st_size < 300_000
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.write_bytes(shot.read_bytes())

    bar.get_by_role("button", name="Show original").click()
    expect(article.locator(".bkc-rewritten")).to_have_count(0)
    expect(article.locator("h2#writing-a-publisher")).to_have_text("Writing a publisher")
    assert article.evaluate("(node) => getComputedStyle(node).direction") == "ltr"
    bar.get_by_role("button", name="Show اردو").click()
    expect(article.locator(".bkc-rewritten[dir=rtl]")).to_be_visible()

    bar.get_by_role("button", name="Personalise for me").click()
    expect(bar.get_by_role("status")).to_have_text("Personalised.")
    personalised = article.locator(".bkc-rewritten[data-bookchat-kind=personalize]")
    expect(personalised).not_to_have_attribute("dir", "rtl")
    expect(personalised).to_contain_text("[is a beginner programmer] A publisher sends messages")
    expect(personalised.locator("h2#writing-a-publisher")).to_have_text("Writing a publisher")
    assert personalised.locator("pre code").text_content() == CODE + "\n"

    # Again after a reload: the reader stays signed in and the translation comes from the cache.
    page.reload()
    _pagebar(page).get_by_role("button", name="اردو").click()
    expect(_pagebar(page).get_by_role("status")).to_have_text("Translated (from the saved copy).")


def test_without_a_model_there_are_no_buttons(plain_site: Site, page: Page) -> None:
    features = page.request.get(plain_site.url + "/api/features").json()
    assert features["pages"]["translate"] is False
    page.goto(plain_site.chapter())
    expect(page.locator("article.demo-article h1")).to_have_text("Nodes and topics")
    page.wait_for_load_state("networkidle")
    expect(_pagebar(page)).to_have_count(0)
