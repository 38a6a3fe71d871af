"""What a reader does on a page, for the browser tests."""

from __future__ import annotations

from playwright.sync_api import Page

SELECT_SENTENCE_JS = """(sentence) => {
    const paragraph = [...document.querySelectorAll("article p")].find((p) => p.textContent.includes(sentence));
    const text = paragraph.firstChild;
    const start = text.textContent.indexOf(sentence);
    const range = document.createRange();
    range.setStart(text, start);
    range.setEnd(text, start + sentence.length);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
}"""


def select_sentence(page: Page, sentence: str) -> None:
    """Select `sentence` inside the page's article, as a reader dragging over it would."""
    page.evaluate(SELECT_SENTENCE_JS, sentence)
