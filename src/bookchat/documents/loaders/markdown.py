"""Loaders: turn Markdown, MDX, HTML, plain-text and PDF bytes into clean, Markdown-like text and metadata."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any, Literal

import yaml
from bs4 import BeautifulSoup
from bs4.element import NavigableString, Tag

from bookchat.documents.markdown import fence_closes, heading_text, open_fence

log = logging.getLogger(__name__)

DocumentFormat = Literal["markdown", "mdx", "html", "text", "pdf"]

SUFFIX_FORMATS: Mapping[str, DocumentFormat] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "mdx",
    ".html": "html",
    ".htm": "html",
    ".txt": "text",
    ".text": "text",
    ".pdf": "pdf",
}
CONTENT_TYPE_FORMATS: Mapping[str, DocumentFormat] = {
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/mdx": "mdx",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/plain": "text",
    "application/pdf": "pdf",
}
MAX_TITLE_CHARS = 500  # the documents.title column's limit
# Formats whose text carries Markdown headings (plain text and PDF pages are prose only).
STRUCTURED_FORMATS: frozenset[DocumentFormat] = frozenset({"markdown", "mdx", "html"})


class UnsupportedDocument(ValueError):
    """A file the loaders cannot read: `reason` is "unsupported-type", "binary" or "invalid"."""

    def __init__(self, message: str, *, reason: Literal["unsupported-type", "binary", "invalid"]) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Page:
    """A stretch of a document's text; `number` is the 1-based PDF page, None for other formats."""

    text: str
    number: int | None = None


@dataclass(frozen=True)
class LoadedDocument:
    """One source file, cleaned: Markdown-like `pages` text plus the metadata citations need.

    `source_path` identifies the document in the collection; `doc_path` is the path inside the docs
    root that Docusaurus sees (it decides the page URL); both are POSIX and relative.
    """

    source_path: str
    format: DocumentFormat
    title: str
    pages: tuple[Page, ...]
    front_matter: Mapping[str, Any] = field(default_factory=dict)
    doc_path: str = ""

    def __post_init__(self) -> None:
        if not self.doc_path:
            object.__setattr__(self, "doc_path", self.source_path)

    @property
    def structured(self) -> bool:
        """Whether the text has Markdown headings worth following."""
        return self.format in STRUCTURED_FORMATS

    @property
    def text(self) -> str:
        return "\n\n".join(page.text for page in self.pages)

    @property
    def slug(self) -> str | None:
        return _front_matter_str(self.front_matter, "slug")

    @property
    def sidebar_label(self) -> str | None:
        return _front_matter_str(self.front_matter, "sidebar_label")

    @property
    def description(self) -> str | None:
        return _front_matter_str(self.front_matter, "description")


def _front_matter_str(front_matter: Mapping[str, Any], key: str) -> str | None:
    value = front_matter.get(key)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | float):
        text = str(value).strip()
        return text or None
    return None


def detect_format(path: str, content_type: str | None = None) -> DocumentFormat | None:
    """The format of a file from its name, else from a MIME type; None when bookchat cannot read it."""
    fmt = SUFFIX_FORMATS.get(PurePosixPath(path).suffix.lower())
    if fmt is None and content_type:
        fmt = CONTENT_TYPE_FORMATS.get(content_type.split(";", 1)[0].strip().lower())
    return fmt


def humanize(stem: str) -> str:
    """A readable title from a file name: `01-getting_started` → `Getting started`."""
    words = re.sub(r"[-_]+", " ", strip_number_prefix(stem)).strip()
    return words[:1].upper() + words[1:] if words else stem


# --- Docusaurus number prefixes (`01-intro.md` is the doc `intro`), as its DefaultNumberPrefixParser ----------

_IGNORED_PREFIX = re.compile(r"^((\d{2}|\d{4})[-_.]\d{2}([-_.](\d{2}|\d{4}))?)(.*)$|^(\d+[-_.]\d+)(.*)$")
_NUMBER_PREFIX = re.compile(r"^(?P<number>\d+)(?P<sep>\s*[-_.]+\s*)(?P<suffix>.*)$")


def strip_number_prefix(name: str) -> str:
    """`01-intro` → `intro`; date-like (`2021-01-31-x`) and version-like (`8.0-x`) names stay as they are."""
    if _IGNORED_PREFIX.match(name):
        return name
    match = _NUMBER_PREFIX.match(name)
    return match.group("suffix") if match else name


# --- text decoding --------------------------------------------------------------------------------------


def decode_text(data: bytes, source_path: str) -> str:
    """Bytes to text: UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252. NUL bytes mean binary."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16").replace("\r\n", "\n").replace("\r", "\n")
        except UnicodeDecodeError as exc:
            raise UnsupportedDocument(f"{source_path}: not valid UTF-16", reason="binary") from exc
    if b"\x00" in data[:8192]:
        raise UnsupportedDocument(f"{source_path}: binary content, not text", reason="binary")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Legacy files: cp1252 maps almost every byte; latin-1 maps the rest.
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
        log.warning("not UTF-8, read as Windows-1252", extra={"source_path": source_path})
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- Markdown and MDX -------------------------------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?---[ \t]*(?:\n|\Z)", re.DOTALL)
# ESM only (`import X from`, `import {`, `import * as`, `import 'x.css'`), not prose like "import the data".
_IMPORT = re.compile(r"""^import\s*(?:['"]|\{|\*\s*as\s|type\s|[\w$]+\s*(?:,|\bfrom\b))""")
_EXPORT = re.compile(r"^export\s+(?:const|let|var|function|async|default|class|type|interface|\{|\*)")
_ADMONITION_OPEN = re.compile(
    r"^\s*:{3,}\s*(?P<kind>[A-Za-z][\w-]*)(?:\[(?P<bracket>[^\]]*)\])?(?:[ \t]+(?P<title>.*?))?\s*(?:\{.*\})?\s*$"
)
_ADMONITION_CLOSE = re.compile(r"^\s*:{3,}\s*$")
_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*|[^\s<>@]+@[^\s<>@]+\.[A-Za-z]{2,})>")
_TAG_NAME = re.compile(r"[A-Za-z][\w.:-]*")


def split_front_matter(text: str, source_path: str = "") -> tuple[dict[str, Any], str]:
    """YAML front matter (a `---` block at the very top) and the body after it; bad YAML is warned about."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return {}, text
    body = text[match.end() :]
    try:
        data = yaml.safe_load(match.group(1) or "")
    except yaml.YAMLError as exc:
        log.warning("invalid YAML front matter ignored", extra={"source_path": source_path, "error": str(exc)})
        return {}, body
    if data is None:
        return {}, body
    if not isinstance(data, dict):
        log.warning("front matter is not a mapping, ignored", extra={"source_path": source_path})
        return {}, body
    return {str(key): value for key, value in data.items()}, body


def clean_mdx(body: str) -> str:
    """MDX/Markdown body → Markdown text: ESM lines, JSX/HTML tags and comments go, their text stays.

    Fenced code is copied verbatim (JSX-looking lines in it included); admonitions (`:::tip Title`) become a
    `Tip: Title` line; inline code spans are never touched.
    """
    lines = body.split("\n")
    out: list[str] = []
    prose: list[str] = []

    def flush() -> None:
        if prose:
            out.extend(strip_tags("\n".join(prose)).split("\n"))
            prose.clear()

    i = 0
    fence: str | None = None
    while i < len(lines):
        line = lines[i]
        if fence is not None:
            out.append(line)
            if fence_closes(line, fence):
                fence = None
            i += 1
            continue
        opened = open_fence(line)
        if opened is not None:
            flush()
            fence = opened
            out.append(line)
            i += 1
            continue
        if _IMPORT.match(line) or _EXPORT.match(line):
            i = _skip_esm(lines, i)
            prose.append("")
            continue
        admonition = _ADMONITION_OPEN.match(line)
        if admonition is not None:
            kind = admonition.group("kind").replace("-", " ").capitalize()
            title = (admonition.group("bracket") or admonition.group("title") or "").strip()
            prose.append(f"{kind}: {title}" if title else f"{kind}:")
            i += 1
            continue
        if _ADMONITION_CLOSE.match(line):
            prose.append("")
            i += 1
            continue
        prose.append(line)
        i += 1
    flush()
    return "\n".join(out)


def _skip_esm(lines: list[str], start: int) -> int:
    """Index of the first line after the `import`/`export` statement that starts at `start`."""
    line = lines[start]
    if line.startswith("import"):
        # `import x from 'y'`, `import 'y'`, or a `{ ... }` list spread over lines up to `from '...'`.
        i = start
        while i < len(lines):
            current = lines[i]
            if re.search(r"\bfrom\s*['\"]", current) or re.match(r"^import\s*['\"]", current):
                return i + 1
            if i > start and current.strip() == "":
                return i
            i += 1
        return i
    depth = 0
    i = start
    while i < len(lines):
        current = lines[i]
        depth += sum(current.count(c) for c in "([{") - sum(current.count(c) for c in ")]}")
        i += 1
        if depth <= 0 and not current.rstrip().endswith(("=", "=>", ",", "(")):
            return i
    return i


def strip_tags(text: str) -> str:
    """Remove JSX/HTML tags, HTML comments and MDX `{/* */}` comments from prose, keeping the text between.

    Inline code spans are kept verbatim; autolinks (`<https://...>`) keep their address; a `<` that does not
    start a well-formed tag stays as text.
    """
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        char = text[i]
        if char == "`":
            run = 0
            while i + run < n and text[i + run] == "`":
                run += 1
            close = _find_backtick_run(text, i + run, run)
            if close < 0:
                out.append(text[i : i + run])
                i += run
            else:
                out.append(text[i : close + run])
                i = close + run
            continue
        if char == "\\" and i + 1 < n:
            out.append(text[i : i + 2])
            i += 2
            continue
        if text.startswith("<!--", i):
            end = text.find("-->", i + 4)
            i = n if end < 0 else end + 3
            continue
        if text.startswith("{/*", i):
            end = text.find("*/}", i + 3)
            i = n if end < 0 else end + 3
            continue
        if char == "<":
            autolink = _AUTOLINK.match(text, i)
            if autolink is not None:
                out.append(autolink.group(1))
                i = autolink.end()
                continue
            end = _tag_end(text, i)
            if end > 0:
                # Keep words on either side of a tag apart (`a<br/>b` → `a b`).
                before = out[-1][-1:] if out and out[-1] else ""
                after = text[end : end + 1]
                if before.isalnum() and after.isalnum():
                    out.append(" ")
                i = end
                continue
        out.append(char)
        i += 1
    return "".join(out)


def _find_backtick_run(text: str, start: int, run: int) -> int:
    """Start of the next run of exactly `run` backticks at or after `start` (same paragraph), else -1."""
    i = start
    n = len(text)
    while i < n:
        if text.startswith("\n\n", i):
            return -1
        if text[i] == "`":
            j = i
            while j < n and text[j] == "`":
                j += 1
            if j - i == run:
                return i
            i = j
            continue
        i += 1
    return -1


def _tag_end(text: str, start: int) -> int:
    """End index (exclusive) of a JSX/HTML tag or fragment starting at `start`, or -1 when it is not one."""
    i = start + 1
    n = len(text)
    if i < n and text[i] == "/":
        i += 1
    if i < n and text[i] == ">":  # fragments <> and </>
        return i + 1
    name = _TAG_NAME.match(text, i)
    if name is None:
        return -1
    i = name.end()
    if i < n and text[i] not in " \t\n/>":
        return -1
    depth = 0
    quote = ""
    while i < n:
        char = text[i]
        if quote:
            if char == quote:
                quote = ""
        elif (char in "\"'" and depth == 0) or (char == "`" and depth > 0):
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == ">" and depth <= 0:
            return i + 1
        elif text.startswith("\n\n", i) and depth <= 0:
            return -1  # a blank line cannot be inside a tag: this `<` was prose
        i += 1
    return -1


_ATX = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+|$)")


def _first_h1(markdown: str) -> str | None:
    """The text of the first `# ` heading outside code, for documents without a front-matter title."""
    fence: str | None = None
    for line in markdown.split("\n"):
        if fence is not None:
            if fence_closes(line, fence):
                fence = None
            continue
        fence = open_fence(line)
        if fence is not None:
            continue
        match = re.match(r"^ {0,3}#[ \t]+(.+?)[ \t]*#*[ \t]*$", line)
        if match:
            return heading_text(match.group(1))[0] or None
    return None


def load_markdown(source_path: str, data: bytes, *, mdx: bool) -> LoadedDocument:
    text = decode_text(data, source_path)
    front_matter, body = split_front_matter(text, source_path)
    # Docusaurus compiles .md as MDX too, so the same cleaning applies to both.
    markdown = clean_mdx(body).strip("\n")
    title = (
        _front_matter_str(front_matter, "title")
        or _first_h1(markdown)
        or _front_matter_str(front_matter, "sidebar_label")
        or humanize(PurePosixPath(source_path).stem)
    )
    return LoadedDocument(
        source_path=source_path,
        format="mdx" if mdx else "markdown",
        title=title,
        pages=(Page(markdown),),
        front_matter=front_matter,
    )


# --- HTML -----------------------------------------------------------------------------------------------

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
    title = (
        page_title
        or (h1.get_text(" ", strip=True) if h1 is not None else "")
        or humanize(PurePosixPath(source_path).stem)
    )
    return LoadedDocument(source_path=source_path, format="html", title=title, pages=(Page(markdown),))


def _inline_text(node: Tag | NavigableString) -> str:
    if isinstance(node, NavigableString):
        return str(node)
    parts: list[str] = []
    for child in node.children:
        if isinstance(child, Tag) and child.name == "br":
            parts.append("\n")
        elif isinstance(child, Tag) and child.name == "code":
            parts.append(f"`{child.get_text()}`")
        elif isinstance(child, Tag | NavigableString):
            parts.append(_inline_text(child))
    return "".join(parts)


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
        elif name == "br":
            inline.append("\n")
        elif name == "code":
            inline.append(f"`{child.get_text()}`")
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


# --- plain text and PDF --------------------------------------------------------------------------------------


def load_text(source_path: str, data: bytes) -> LoadedDocument:
    text = decode_text(data, source_path).strip("\n")
    return LoadedDocument(
        source_path=source_path, format="text", title=humanize(PurePosixPath(source_path).stem), pages=(Page(text),)
    )


def load_pdf(source_path: str, data: bytes) -> LoadedDocument:
    # Imported here so that only PDF ingestion pays for pypdf.
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnsupportedDocument(f"{source_path}: the PDF is password-protected", reason="invalid")
        pages = []
        for number, page in enumerate(reader.pages, start=1):
            text = _tidy_pdf_text(page.extract_text() or "")
            if text:
                pages.append(Page(text, number))
        metadata_title = (reader.metadata.title if reader.metadata else None) or ""
    except UnsupportedDocument:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise UnsupportedDocument(f"{source_path}: not a readable PDF ({exc})", reason="invalid") from exc
    if not pages:
        log.warning("PDF has no extractable text (scanned?)", extra={"source_path": source_path})
    title = str(metadata_title).strip() or humanize(PurePosixPath(source_path).stem)
    return LoadedDocument(source_path=source_path, format="pdf", title=title, pages=tuple(pages))


def _tidy_pdf_text(text: str) -> str:
    # Join words hyphenated across line ends; keep the line structure otherwise.
    text = re.sub(r"(\w)-\n(\w)", r"\1\2", text)
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


# --- entry point --------------------------------------------------------------------------------------------


def load_document(
    source_path: str,
    data: bytes,
    *,
    fmt: DocumentFormat | None = None,
    content_type: str | None = None,
    doc_path: str | None = None,
) -> LoadedDocument:
    """Load one document from its bytes; raise `UnsupportedDocument` for unknown types, binary or broken files.

    `fmt` overrides detection by file name (then MIME type). `doc_path` is the path Docusaurus sees, for URLs.
    """
    fmt = fmt or detect_format(source_path, content_type)
    if fmt is None:
        raise UnsupportedDocument(f"{source_path}: unsupported file type", reason="unsupported-type")
    if fmt == "pdf":
        if not data.startswith(b"%PDF"):
            raise UnsupportedDocument(f"{source_path}: not a PDF file", reason="invalid")
        document = load_pdf(source_path, data)
    elif fmt == "html":
        if b"\x00" in data[:8192]:
            raise UnsupportedDocument(f"{source_path}: binary content, not HTML", reason="binary")
        document = load_html(source_path, data)
    elif fmt == "text":
        document = load_text(source_path, data)
    else:
        document = load_markdown(source_path, data, mdx=fmt == "mdx")
    if doc_path:
        document = replace(document, doc_path=doc_path)
    if len(document.title) > MAX_TITLE_CHARS:
        document = replace(document, title=document.title[: MAX_TITLE_CHARS - 1] + "…")
    return document
