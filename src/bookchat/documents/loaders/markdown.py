"""The Markdown and MDX loader: YAML front matter split off, ESM lines, JSX/HTML tags and comments stripped."""

from __future__ import annotations

import logging
import re
from typing import Any

import yaml

from bookchat.documents.loaders.decoding import decode_text
from bookchat.documents.loaders.document import LoadedDocument, Page, front_matter_str
from bookchat.documents.loaders.naming import title_from_path
from bookchat.documents.markdown import fence_closes, heading_text, open_fence

# The package's logger, as before the loaders were split up, so the `logger` field of its log lines stays put.
log = logging.getLogger("bookchat.documents.loaders")

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
        front_matter_str(front_matter, "title")
        or _first_h1(markdown)
        or front_matter_str(front_matter, "sidebar_label")
        or title_from_path(source_path)
    )
    return LoadedDocument(
        source_path=source_path,
        format="mdx" if mdx else "markdown",
        title=title,
        pages=(Page(markdown),),
        front_matter=front_matter,
    )
