"""Markdown helpers shared by the loaders, the chunker and the pages: code fences, inline text, heading ids, slugs."""

from __future__ import annotations

import html
import re
import unicodedata

FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


def fence_closes(line: str, fence: str) -> bool:
    """Whether `line` closes a code block opened by `fence` (same character, at least as long)."""
    stripped = line.strip()
    return len(stripped) >= len(fence) and stripped[0] == fence[0] and stripped == fence[0] * len(stripped)


def open_fence(line: str) -> str | None:
    """The fence string if `line` opens a fenced code block, else None."""
    match = FENCE_OPEN.match(line)
    if match is None:
        return None
    fence = match.group("fence")
    # A backtick fence's info string may not contain backticks (CommonMark), else it is inline code.
    if fence[0] == "`" and "`" in match.group("info"):
        return None
    return fence


_CUSTOM_ID = re.compile(r"^(?P<text>.*?)\s*\{#(?P<id>[\w-]+)\}$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)


def _inline_plain(text: str) -> str:
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"\[([^\]]*)\]\[[^\]]*\]", r"\1", text)
    text = re.sub(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1", r"\2", text)
    text = re.sub(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])", r"\1", text)
    text = re.sub(r"(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])", r"\1", text)
    text = re.sub(r"~~(.+?)~~", r"\1", text)
    text = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)
    return html.unescape(text)


def markdown_inline_text(text: str) -> str:
    """Inline Markdown to its plain text (what mdast's toString gives): code, emphasis and links unwrapped."""
    parts: list[str] = []
    last = 0
    for match in _CODE_SPAN.finditer(text):
        parts.append(_inline_plain(text[last : match.start()]))
        code = match.group(2)
        # CommonMark strips one space from each side of a code span padded on both sides.
        if len(code) > 2 and code.startswith(" ") and code.endswith(" ") and code.strip():
            code = code[1:-1]
        parts.append(code)
        last = match.end()
    parts.append(_inline_plain(text[last:]))
    return re.sub(r"\s+", " ", "".join(parts)).strip()


def heading_text(raw: str) -> tuple[str, str | None]:
    """A heading's plain text and its explicit `{#custom-id}`, which is removed from the text."""
    raw = raw.strip()
    match = _CUSTOM_ID.match(raw)
    if match is not None:
        return markdown_inline_text(match.group("text")), match.group("id")
    return markdown_inline_text(raw), None


# --- heading anchors, as Docusaurus makes them (github-slugger) ---------------------------------------------


def _keep_in_slug(char: str) -> bool:
    if char in " -":
        return True
    category = unicodedata.category(char)
    # github-slugger removes punctuation (but `_`), symbols, separators and controls; letters, marks,
    # decimal and letter numbers stay. Circled letters are symbols that Unicode also calls alphabetic.
    return category[0] in "LM" or category in ("Nd", "Nl", "Pc") or "\u24b6" <= char <= "\u24e9"


def github_slug(text: str) -> str:
    """github-slugger's `slug()`: lower-case, drop punctuation and symbols, each space becomes `-`."""
    return "".join(char for char in text.lower() if _keep_in_slug(char)).replace(" ", "-")


class Slugger:
    """github-slugger's stateful `Slugger`: repeated slugs on one page get `-1`, `-2`, ... suffixes."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def slug(self, text: str) -> str:
        slug = original = github_slug(text)
        while slug in self._seen:
            self._seen[original] += 1
            slug = f"{original}-{self._seen[original]}"
        self._seen[slug] = 0
        return slug
