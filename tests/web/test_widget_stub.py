"""The widget in a real browser against a scripted API: streaming, citations, errors, tokens, keyboard, safety."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Dialog, Page, expect

from tests.web.live_server import LiveServer
from tests.web.page_actions import select_sentence
from tests.web.stub_api import NOT_COVERED, Reply, StubApi, citation

GUIDE = """---
title: Getting started
---

# Getting started

bookchat answers questions about a book. The quick brown fox jumps over the lazy dog.

## Install

Run `make serve` and open the browser.
"""


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StubApi, LiveServer]]:
    docs = tmp_path_factory.mktemp("docs")
    (docs / "index.md").write_text(GUIDE, encoding="utf-8")
    api = StubApi(docs)
    with LiveServer(api.app, lifespan="off") as server:
        yield api, server


@pytest.fixture
def api(stub: tuple[StubApi, LiveServer]) -> StubApi:
    api = stub[0]
    api.replies.clear()
    api.chat_requests.clear()
    api.chat_tokens.clear()
    api.guest_requests.clear()
    api.feedback.clear()
    api.rejected_tokens.clear()
    return api


@pytest.fixture
def base_url(stub: tuple[StubApi, LiveServer]) -> str:
    return stub[1].url


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    page = context.new_page()
    page.on("pageerror", lambda error: pytest.fail(f"page error: {error}"))
    return page


def record_dialog(seen: list[str], dialog: Dialog) -> None:
    """Note an alert/confirm/prompt (only injected script would open one) and close it."""
    seen.append(dialog.message)
    dialog.dismiss()


def open_panel(page: Page, base_url: str) -> None:
    page.goto(base_url + "/")
    page.get_by_role("button", name="Ask the book").click()
    expect(page.get_by_role("dialog", name="Ask the book")).to_be_visible()


def ask(page: Page, question: str) -> None:
    box = page.get_by_role("textbox", name="Your question")
    box.fill(question)
    box.press("Enter")


def test_streamed_answer_with_citation_links(api: StubApi, page: Page, base_url: str) -> None:
    url = base_url + "/#install"
    api.replies.append(Reply("Run **make serve** [1] then open the *browser*.", [citation(1, url)]))
    open_panel(page, base_url)
    ask(page, "How do I install it?")
    answer = page.locator(".bkc-msg-assistant").last
    expect(answer.locator(".bkc-body strong")).to_have_text("make serve")
    cite = answer.locator(".bkc-body a.bkc-cite")
    expect(cite).to_have_text("[1]")
    assert cite.get_attribute("href") == url
    expect(answer.locator(".bkc-sources a")).to_have_attribute("href", url)
    expect(answer.locator(".bkc-sources")).to_contain_text("Getting started › Install")
    assert api.chat_requests[-1] == {"message": "How do I install it?", "stream": True}


def test_unanswered_reply_offers_closest_pages_not_sources(api: StubApi, page: Page, base_url: str) -> None:
    open_panel(page, base_url)
    ask(page, "What is a good recipe for chocolate cake?")
    answer = page.locator(".bkc-msg-assistant").last
    expect(answer.locator(".bkc-uncovered-note")).to_have_text("Not covered by the book.")
    expect(answer.locator(".bkc-body")).to_have_text(NOT_COVERED)
    closest = answer.get_by_role("list", name="Closest pages:")
    links = closest.get_by_role("link")
    expect(links).to_have_count(2)
    expect(links.nth(0)).to_have_text("Getting started")
    expect(links.nth(0)).to_have_attribute("href", base_url + "/#install")
    expect(links.nth(0)).to_have_attribute("title", "Getting started › Install")
    expect(links.nth(1)).to_have_text("Operations")
    expect(links.nth(1)).to_have_attribute("href", base_url + "/operations#backups")
    expect(answer.locator(".bkc-sources")).to_be_hidden()
    expect(answer.locator(".bkc-sources a, .bkc-cite")).to_have_count(0)
    expect(answer).to_have_class(re.compile(r"\bbkc-msg-unanswered\b"))

    # The next, answered reply renders as before: sources, no note.
    url = base_url + "/#install"
    api.replies.append(Reply("Run `make serve` [1].", [citation(1, url)]))
    ask(page, "How do I install it?")
    answered = page.locator(".bkc-msg-assistant").last
    expect(answered.locator(".bkc-sources a")).to_have_attribute("href", url)
    expect(answered.locator(".bkc-uncovered")).to_be_hidden()
    expect(answered).not_to_have_class(re.compile(r"\bbkc-msg-unanswered\b"))

    # From the stored history (which keeps `answered`, not the closest pages) the note comes back, sources do not.
    page.reload()
    expect(page.locator(".bkc-msg-assistant")).to_have_count(2)
    restored = page.locator(".bkc-msg-assistant").first
    expect(restored.locator(".bkc-uncovered-note")).to_have_text("Not covered by the book.")
    expect(restored.locator(".bkc-sources")).to_be_hidden()
    expect(page.locator(".bkc-msg-assistant").last.locator(".bkc-sources a")).to_have_attribute("href", url)


def test_unanswered_reply_in_dark_theme_is_styled(api: StubApi, page: Page, base_url: str) -> None:
    open_panel(page, base_url)
    colours = {}
    for theme in ("light", "dark"):
        page.evaluate("(theme) => document.documentElement.setAttribute('data-theme', theme)", theme)
        if theme == "light":
            ask(page, "Any cake in here?")
        box = page.locator(".bkc-msg-assistant .bkc-uncovered").last
        expect(box).to_be_visible()
        colours[theme] = box.evaluate("(node) => getComputedStyle(node).backgroundColor")
    assert colours["light"] != colours["dark"], colours
    assert colours["light"] not in {"rgba(0, 0, 0, 0)", "transparent"}


def test_rate_limit_says_when_to_retry(api: StubApi, page: Page, base_url: str) -> None:
    api.replies.append(Reply(status=429, headers={"Retry-After": "42"}))
    api.replies.append(Reply(status=503, headers={"Retry-After": "120"}))
    open_panel(page, base_url)
    ask(page, "First?")
    alert = page.locator(".bkc-msg-assistant .bkc-error").last
    expect(alert).to_have_text(re.compile(r"try again in 42 seconds\."))
    expect(alert).to_have_attribute("role", "alert")
    ask(page, "Second?")
    expect(page.locator(".bkc-msg-assistant .bkc-error").last).to_have_text(
        re.compile(r"busy right now\. Please try again in 2 minutes\.")
    )


def test_error_event_mid_stream_is_shown(api: StubApi, page: Page, base_url: str) -> None:
    api.replies.append(Reply("Partial answer", stream_error="The language model failed; try again."))
    open_panel(page, base_url)
    ask(page, "Will this fail?")
    answer = page.locator(".bkc-msg-assistant").last
    expect(answer.locator(".bkc-error")).to_have_text("The language model failed; try again.")
    expect(answer.locator(".bkc-body")).to_contain_text("Partial answer")


def test_expired_guest_token_is_renewed_once(api: StubApi, page: Page, base_url: str) -> None:
    open_panel(page, base_url)
    ask(page, "Hello?")
    expect(page.locator(".bkc-msg-assistant .bkc-body").last).to_contain_text("Install with")
    assert api.guest_requests == [{}]
    api.rejected_tokens.add("guest-token-1")  # as if it had expired on the server
    ask(page, "Still there?")
    expect(page.locator(".bkc-msg-assistant .bkc-body")).to_have_count(2)
    expect(page.locator(".bkc-msg-assistant .bkc-body").last).to_contain_text("Install with")
    # Renewed with the old token, so the same guest keeps its conversations.
    assert api.guest_requests == [{}, {"guest_token": "guest-token-1"}]
    assert api.chat_tokens == ["guest-token-1", "guest-token-2"]
    assert api.chat_requests[1]["conversation_id"]  # the conversation went on under the renewed token


def test_conversation_survives_reload_and_new_conversation_clears_it(api: StubApi, page: Page, base_url: str) -> None:
    url = base_url + "/#install"
    api.replies.append(Reply("It is `make serve` [1].", [citation(1, url)]))
    open_panel(page, base_url)
    ask(page, "How do I start it?")
    expect(page.locator(".bkc-msg-assistant .bkc-cite")).to_have_count(1)
    ask(page, "And then?")
    expect(page.locator(".bkc-msg-assistant .bkc-footer .bkc-feedback")).to_have_count(2)
    conversation_id = api.chat_requests[1]["conversation_id"]
    assert "conversation_id" not in api.chat_requests[0]

    page.reload()
    dialog = page.get_by_role("dialog", name="Ask the book")
    expect(dialog).to_be_visible()  # it was open before the reload
    expect(page.locator(".bkc-msg-user")).to_have_count(2)
    expect(page.locator(".bkc-msg-user").first).to_contain_text("How do I start it?")
    expect(page.locator(".bkc-msg-assistant a.bkc-cite")).to_have_attribute("href", url)
    ask(page, "Third?")
    expect(page.locator(".bkc-msg-assistant")).to_have_count(3)
    assert api.chat_requests[-1]["conversation_id"] == conversation_id

    page.get_by_role("button", name="New conversation").click()
    expect(page.locator(".bkc-msg")).to_have_count(0)
    expect(page.locator(".bkc-empty")).to_be_visible()
    ask(page, "Fresh start?")
    expect(page.locator(".bkc-msg-assistant .bkc-footer .bkc-feedback")).to_have_count(1)
    assert "conversation_id" not in api.chat_requests[-1]


def test_unknown_stored_conversation_is_dropped(api: StubApi, page: Page, base_url: str) -> None:
    page.goto(base_url + "/")
    page.evaluate(
        """(api) => localStorage.setItem("bookchat:" + api + ":conversation", JSON.stringify("gone-id"))""",
        base_url,
    )
    page.reload()
    page.get_by_role("button", name="Ask the book").click()
    ask(page, "Anything?")
    expect(page.locator(".bkc-msg-assistant .bkc-body").last).to_contain_text("Install with")
    assert "conversation_id" not in api.chat_requests[-1]


def test_feedback_buttons(api: StubApi, page: Page, base_url: str) -> None:
    open_panel(page, base_url)
    ask(page, "Rate me")
    helpful = page.get_by_role("button", name="Helpful", exact=True)
    helpful.click()
    expect(helpful).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("button", name="Not helpful")).to_have_attribute("aria-pressed", "false")
    assert len(api.feedback) == 1
    assert api.feedback[0][1] == {"rating": "up"}


def test_stop_button_ends_a_stream(api: StubApi, page: Page, base_url: str) -> None:
    api.replies.append(Reply(" ".join(["word"] * 200), delay=0.05))
    open_panel(page, base_url)
    ask(page, "Talk a lot")
    expect(page.locator(".bkc-msg-assistant .bkc-body")).to_contain_text("word")
    page.get_by_role("button", name="Stop the answer").click()
    expect(page.locator(".bkc-msg-assistant .bkc-note")).to_have_text("Stopped.")
    expect(page.get_by_role("button", name="Send")).to_be_visible()


def test_ask_about_this_sends_the_selection(api: StubApi, page: Page, base_url: str) -> None:
    page.goto(base_url + "/")
    sentence = "The quick brown fox jumps over the lazy dog."
    select_sentence(page, sentence)
    button = page.get_by_role("button", name="Ask about this")
    expect(button).to_be_visible()
    button.click()
    expect(page.get_by_role("dialog", name="Ask the book")).to_be_visible()
    expect(page.locator(".bkc-chip-text")).to_contain_text("quick brown fox")
    ask(page, "What does the fox do?")
    expect(page.locator(".bkc-msg-user .bkc-selection-quote")).to_have_text(sentence)
    expect(page.locator(".bkc-msg-assistant .bkc-body").last).to_contain_text("Install with")
    sent = api.chat_requests[-1]
    assert sent["selected_text"] == sentence
    assert sent["page_url"] == base_url + "/"
    assert sent["message"] == "What does the fox do?"
    expect(page.locator(".bkc-chip")).to_be_hidden()


def test_page_url_is_sent_without_query_or_fragment(api: StubApi, page: Page, base_url: str) -> None:
    # Query strings and fragments carry tokens, e-mail addresses and campaign ids: never sent to the API.
    page.goto(base_url + "/?token=s3cret&email=reader%40example.org#install")
    select_sentence(page, "The quick brown fox jumps over the lazy dog.")
    page.get_by_role("button", name="Ask about this").click()
    ask(page, "What does the fox do?")
    expect(page.locator(".bkc-msg-assistant .bkc-body").last).to_contain_text("Install with")
    page.evaluate("() => window.BookchatWidget.ask('And the dog?', { selectedText: 'the lazy dog' })")
    expect(page.locator(".bkc-msg-assistant .bkc-body")).to_have_count(2)
    sent = [request["page_url"] for request in api.chat_requests[-2:]]
    assert sent == [base_url + "/", base_url + "/"]
    assert not any("?" in url or "#" in url for url in sent)


def test_keyboard_focus_trap_and_escape(page: Page, base_url: str) -> None:
    page.goto(base_url + "/")
    launcher = page.get_by_role("button", name="Ask the book")
    launcher.focus()
    page.keyboard.press("Enter")
    expect(launcher).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_role("textbox", name="Your question")).to_be_focused()
    inside = "() => document.querySelector('.bkc-panel').contains(document.activeElement)"
    for key in ["Tab"] * 7 + ["Shift+Tab"] * 7:
        page.keyboard.press(key)
        assert page.evaluate(inside), f"focus left the panel after {key}"
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(launcher).to_be_focused()
    expect(launcher).to_have_attribute("aria-expanded", "false")
    log = page.locator(".bkc-log")
    assert log.get_attribute("role") == "log"
    assert log.get_attribute("aria-live") == "polite"


def test_phone_layout_fills_the_screen(browser: Browser, base_url: str) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        open_panel(page, base_url)
        box = page.get_by_role("dialog", name="Ask the book").bounding_box()
        assert box is not None
        assert (box["x"], box["y"], box["width"]) == (0, 0, 390)
        assert box["height"] >= 800
        expect(page.get_by_role("button", name="Close chat")).to_be_visible()
        page.get_by_role("button", name="Close chat").click()
        expect(page.get_by_role("button", name="Ask the book")).to_be_visible()
    finally:
        context.close()


HOSTILE = (
    'Look: <script>window.__pwned = "script"</script> and <img src=x onerror="window.__pwned=\'img\'"> '
    "[click me](javascript:window.__pwned='link') and [ok](https://example.invalid/page) [1]"
)


def test_hostile_text_is_inert(api: StubApi, page: Page, base_url: str) -> None:
    host = base_url + "/host.html"
    # A host page without the demo's CSP, so only the widget's own escaping stands between text and script.
    page.route(
        host,
        lambda route: route.fulfill(
            content_type="text/html",
            body=f'<!doctype html><p>Host page</p><script src="{base_url}/widget.js" defer></script>',
        ),
    )
    hostile_citation = citation(1, "javascript:window.__pwned='cite'", title='<img src=y onerror="window.__pwned=1">')
    api.replies.append(Reply(HOSTILE, [hostile_citation]))
    dialogs: list[str] = []
    requests: list[str] = []
    page.on("dialog", lambda dialog: record_dialog(dialogs, dialog))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(host)
    page.get_by_role("button", name="Ask the book").click()
    ask(page, "<img src=z onerror=\"window.__pwned='question'\">")
    body = page.locator(".bkc-msg-assistant .bkc-body").last
    expect(body).to_contain_text('<script>window.__pwned = "script"</script>')
    expect(body).to_contain_text("<img src=x onerror=")
    expect(page.locator(".bkc-msg-user .bkc-p")).to_contain_text("<img src=z")
    expect(page.locator(".bkc-sources")).to_contain_text("<img src=y")
    panel = page.locator(".bkc-root")
    assert panel.locator("script, img, iframe, object").count() == 0
    hrefs = panel.locator("a").evaluate_all("(links) => links.map((a) => a.getAttribute('href'))")
    assert hrefs == ["https://example.invalid/page"]  # javascript: links stay text, the bad citation unlinked
    assert page.evaluate("() => window.__pwned") is None
    assert dialogs == []
    assert all(url.startswith(base_url) for url in requests), requests


MARKDOWN_CASES = [
    ("plain <b>bold</b>", '<p class="bkc-p">plain &lt;b&gt;bold&lt;/b&gt;</p>'),
    ("- one\n- **two**", '<ul class="bkc-list"><li>one</li><li><strong>two</strong></li></ul>'),
    ("1. a\n2. b", '<ol class="bkc-list"><li>a</li><li>b</li></ol>'),
    ("```py\nx = '<i>'\n```", '<pre class="bkc-pre"><code data-lang="py">x = \'&lt;i&gt;\'</code></pre>'),
    (
        "use `a<b>` and _it_ or snake_case_name",
        '<p class="bkc-p">use <code class="bkc-code">a&lt;b&gt;</code> and <em>it</em> or snake_case_name</p>',
    ),
    (
        "[x](data:text/html,hi) [y](http://ok.test/a?b=1&c=2)",
        '<p class="bkc-p">[x](data:text/html,hi) <a class='
        '"bkc-link" href="http://ok.test/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer nofollow">y</a></p>',
    ),
    (
        "line one\nline two\n\n> quoted",
        '<p class="bkc-p">line one<br>line two</p><blockquote class="bkc-quote">quoted</blockquote>',
    ),
    ("# Title", '<p class="bkc-p bkc-heading"><strong>Title</strong></p>'),
    ("see [2] and [9]", '<p class="bkc-p">see <span class="bkc-cite" title="Two">[2]</span> and [9]</p>'),
]


def test_markdown_whitelist(page: Page, base_url: str) -> None:
    page.goto(base_url + "/")
    page.wait_for_function("() => window.BookchatWidget !== undefined")
    for source, expected in MARKDOWN_CASES:
        rendered = page.evaluate(
            """(source) => {
                const box = document.createElement("div");
                box.appendChild(BookchatWidget.renderMarkdown(source, {2: {index: 2, title: "Two", url: null}}));
                return box.innerHTML;
            }""",
            source,
        )
        assert rendered == expected, json.dumps(source)


def test_panel_screenshot(api: StubApi, page: Page, base_url: str, tmp_path: Path) -> None:
    api.replies.append(Reply("Run `make serve` [1].", [citation(1, base_url + "/#install")]))
    open_panel(page, base_url)
    ask(page, "How do I install it?")
    expect(page.locator(".bkc-sources")).to_be_visible()
    shot = tmp_path / "panel.png"
    page.get_by_role("dialog", name="Ask the book").screenshot(path=str(shot))
    assert shot.stat().st_size > 1000
    page.screenshot(path=str(tmp_path / "page.png"))
