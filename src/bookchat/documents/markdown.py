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


# An attribute list closing a heading: `{#id}` (Docusaurus; `\{#id\}` in MDX), `{ #id }`, `{: #id .class k=v }`
# (MkDocs' attr_list). Its words: `#id`, `.class`, `key`, `key=value`, `key="quoted value"`.
_ATTR_LIST = re.compile(r"\\?\{:?(?P<body>[^{}\\\n]*)\\?\}[ \t]*$")
_ATTR_WORD = re.compile(r"""[ \t]*(?P<word>[^\s='"]+(?:=(?:"[^"]*"|'[^']*'|[^\s='"]+))?)[ \t]*""")
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


def split_heading_id(raw: str) -> tuple[str, str | None]:
    """A heading's source without its explicit id, and the id; `(raw, None)` when it has none.

    The id is the `#id` of an attribute list that ends the heading: Docusaurus' `{#id}` (escaped `\\{#id\\}` in
    MDX) or MkDocs' attr_list `{ #id }`, `{: #id }`, `{ #id .class key=value }` (the last `#id` if several).
    Braces without an `#id` word (`{placeholder}`, `{{ var }}`, `{a: 1}`) are heading text. The text before the
    list loses its trailing spaces, nothing else.
    """
    match = _ATTR_LIST.search(raw)
    if match is None:
        return raw, None
    body = match.group("body")
    heading_id = None
    position = 0
    while position < len(body):
        found = _ATTR_WORD.match(body, position)
        if found is None:  # not an attribute list, e.g. `{x = "y"}`
            return raw, None
        word = found.group("word")
        if word.startswith("#") and len(word) > 1 and "=" not in word:
            heading_id = word[1:]
        position = found.end()
    if heading_id is None:
        return raw, None
    return raw[: match.start()].rstrip(), heading_id


def heading_text(raw: str) -> tuple[str, str | None]:
    """A heading's plain text and its explicit id (see `split_heading_id`), which is removed from the text."""
    text, heading_id = split_heading_id(raw.strip())
    return markdown_inline_text(text), heading_id


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
