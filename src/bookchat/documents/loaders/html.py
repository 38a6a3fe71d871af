"""The HTML loader: the page's main content as Markdown-like blocks (headings, code, tables, lists), chrome dropped."""

from __future__ import annotations

import re
from typing import Any

from bs4 import BeautifulSoup
from bs4.element import NavigableString, Tag

from bookchat.documents.loaders.document import LoadedDocument, Page
from bookchat.documents.loaders.naming import title_from_path

_DROP_TAGS = ("script", "style", "noscript", "template", "svg", "iframe", "canvas", "object", "button", "form")
_CHROME_TAGS = ("nav", "footer", "aside", "header")
_BLOCK_TAGS = frozenset(
    {
        "p", "div", "section", "article", "main", "blockquote", "ul", "ol", "dl", "dt", "dd", "figure",
        "figcaption", "details", "summary", "address", "hr", "body", "html",
    }
)  # fmt: skip


def load_html(source_path: str, data: bytes) -> LoadedDocument:
    soup = BeautifulSoup(data, "html.parser")
    title_tag = soup.find("title")
    page_title = title_tag.get_text(" ", strip=True) if title_tag is not None else ""
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    root: Tag = soup.find("main") or soup.find("article") or soup.find("body") or soup
    if root.name in ("body", "[document]"):
        # Without <main>/<article>, site chrome (menus, footers) would be indexed as content.
        for tag in root.find_all(_CHROME_TAGS):
            tag.decompose()
    blocks: list[str] = []
    _render_html(root, blocks)
    markdown = "\n\n".join(block for block in blocks if block.strip())
    h1 = root.find("h1")
    title = page_title or (h1.get_text(" ", strip=True) if h1 is not None else "") or title_from_path(source_path)
    return LoadedDocument(source_path=source_path, format="html", title=title, pages=(Page(markdown),))


def _inline_text(node: Tag | NavigableString) -> str:
    """A node's text as inline Markdown: `<br>` a line break, `<code>` a code span."""
    if isinstance(node, NavigableString):
        return str(node)
    if node.name == "br":
        return "\n"
    if node.name == "code":
        return f"`{node.get_text()}`"
    return "".join(_inline_text(child) for child in node.children if isinstance(child, Tag | NavigableString))


def _squash(text: str) -> str:
    return "\n".join(re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in text.split("\n")).strip()


def _render_html(node: Tag, blocks: list[str]) -> None:
    """Depth-first walk that appends Markdown-like blocks: headings, code, tables, list items, paragraphs."""
    inline: list[str] = []

    def flush() -> None:
        text = _squash("".join(inline))
        if text:
            blocks.append(text)
        inline.clear()

    for child in node.children:
        if isinstance(child, NavigableString):
            if type(child) is NavigableString:  # not a Comment, CData or Doctype
                inline.append(str(child))
            continue
        if not isinstance(child, Tag):
            continue
        name = child.name
        if re.fullmatch(r"h[1-6]", name):
            flush()
            text = _squash(child.get_text(" ")).replace("\n", " ")
            if text:
                anchor = child.get("id")
                suffix = f" {{#{anchor}}}" if isinstance(anchor, str) and re.fullmatch(r"[\w-]+", anchor) else ""
                blocks.append(f"{'#' * int(name[1])} {text}{suffix}")
        elif name == "pre":
            flush()
            code = child.get_text().strip("\n")
            classes: Any = child.get("class") or (child.code.get("class") if child.code else None) or []
            language = next(
                (c.removeprefix("language-") for c in classes if isinstance(c, str) and c.startswith("language-")),
                "",
            )
            if code.strip():
                blocks.append(f"```{language}\n{code}\n```")
        elif name == "table":
            flush()
            table = _html_table(child)
            if table:
                blocks.append(table)
        elif name == "li":
            flush()
            text = _squash(_inline_text(child))
            if text:
                blocks.append("- " + text.replace("\n", " "))
        elif name in _BLOCK_TAGS or child.find(["p", "div", "pre", "table", "li", "h1", "h2", "h3", "h4"]):
            flush()
            _render_html(child, blocks)
        else:
            inline.append(_inline_text(child))
    flush()


def _html_table(table: Tag) -> str:
    rows: list[list[str]] = []
    for tr in table.find_all("tr"):
        cells = [
            _squash(cell.get_text(" ")).replace("|", "\\|").replace("\n", " ") for cell in tr.find_all(["th", "td"])
        ]
        if any(cells):
            rows.append(cells)
    if not rows:
        return ""
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * width]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)
