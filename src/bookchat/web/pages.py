"""The demo site: the bundled user guide (`docs/`) rendered to HTML pages that carry the chat widget."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from string import Template
from typing import Any
from urllib.parse import urlsplit

import yaml
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

from bookchat.documents.chunking import Slugger, docusaurus_slug
from bookchat.documents.markdown import heading_text, split_heading_id

GUIDE_PREFIX = "/guide"
PAGE_SUFFIXES = (".md", ".mdx")
ASSET_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                  ".svg": "image/svg+xml", ".webp": "image/webp"}  # fmt: skip
TEMPLATE_PATH = Path(__file__).with_name("templates") / "demo.html"

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_MDX_LINE = re.compile(r"^\s*(import\s.+\sfrom\s|import\s+['\"]|export\s|<[A-Z][\w.]*[\s/>]|</[A-Z])")
_ADMONITION = re.compile(r"^\s*:::\s*(\w+)?\s*(.*)$")


@dataclass(frozen=True)
class DocPage:
    """One page of the guide: where it lives on disk and where it is served."""

    path: Path
    relative: PurePosixPath
    slug: str  # "" for the home page, else e.g. "getting-started" or "module-1/intro"
    title: str

    @property
    def url(self) -> str:
        return "/" if not self.slug else f"{GUIDE_PREFIX}/{self.slug}"


@dataclass(frozen=True)
class RenderedPage:
    title: str
    html: str


def find_docs_dir(candidates: Sequence[Path] | None = None) -> Path | None:
    """The user guide: `./docs` of the working directory, else the source checkout's `docs/`."""
    options = (
        list(candidates)
        if candidates is not None
        else [Path.cwd() / "docs", Path(__file__).resolve().parents[3] / "docs"]
    )
    for folder in options:
        if folder.is_dir() and any(folder.glob("*.md")):
            return folder
    return None


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """YAML front matter (a dict, empty when absent or malformed) and the body after it."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        meta = None
    return (meta if isinstance(meta, dict) else {}), text[match.end() :]


def _doc_slug(relative: PurePosixPath, meta: dict[str, Any]) -> str:
    # The URL path the ingestion gives citations (Docusaurus' rules), so a citation link lands on this page.
    return docusaurus_slug(str(relative), meta).strip("/")


def _first_heading(body: str) -> str | None:
    match = re.search(r"^\s{0,3}#\s+(.+?)\s*#*\s*$", body, re.M)
    return split_heading_id(match.group(1))[0].strip() if match else None


@lru_cache(maxsize=8)
def _scan(root: Path, stamp: tuple[tuple[str, int], ...]) -> tuple[DocPage, ...]:
    del stamp  # only part of the cache key: any file change rescans
    pages: list[tuple[float, DocPage]] = []
    for path in sorted(root.rglob("*")):
        if path.suffix not in PAGE_SUFFIXES or not path.is_file():
            continue
        relative = PurePosixPath(path.relative_to(root).as_posix())
        if any(part.startswith((".", "_")) for part in relative.parts):
            continue
        meta, body = split_front_matter(path.read_text(encoding="utf-8", errors="replace"))
        title = meta.get("title") or meta.get("sidebar_label") or _first_heading(body) or relative.stem
        position = meta.get("sidebar_position")
        order = float(position) if isinstance(position, int | float) else float("inf")
        pages.append((order, DocPage(path, relative, _doc_slug(relative, meta), str(title))))
    # Home first, then folder by folder in sidebar order; a duplicate slug keeps its first page.
    pages.sort(key=lambda item: (item[1].slug != "", str(item[1].relative.parent), item[0], str(item[1].relative)))
    seen: set[str] = set()
    unique = []
    for _, page in pages:
        if page.slug not in seen:
            seen.add(page.slug)
            unique.append(page)
    return tuple(unique)


def list_pages(root: Path) -> tuple[DocPage, ...]:
    """Every page of the guide, home page first."""
    stamp = tuple(
        (str(path), path.stat().st_mtime_ns) for path in sorted(root.rglob("*")) if path.suffix in PAGE_SUFFIXES
    )
    return _scan(root, stamp)


def find_page(root: Path, slug: str) -> DocPage | None:
    """The page served at `slug`; the home page ("") falls back to the first page when there is no index."""
    wanted = slug.strip("/")
    pages = list_pages(root)
    found = next((page for page in pages if page.slug == wanted), None)
    if found is None and wanted == "" and pages:
        return pages[0]
    return found


def find_asset(root: Path, relative: str) -> Path | None:
    """An image inside the docs folder (never outside it, never anything but an image)."""
    candidate = (root / relative).resolve()
    base = root.resolve()
    if candidate.suffix.lower() not in ASSET_SUFFIXES or not candidate.is_file():
        return None
    if base != candidate and base not in candidate.parents:
        return None
    return candidate


def clean_mdx(body: str) -> str:
    """Plain Markdown from MDX: drop import/export and JSX component lines, turn admonitions into quotes."""
    lines: list[str] = []
    fence: str | None = None
    in_admonition = False
    for line in body.splitlines():
        opener = _FENCE.match(line)
        if fence is not None:
            if opener and opener.group(1)[0] == fence[0] and len(opener.group(1)) >= len(fence):
                fence = None
            lines.append(("> " if in_admonition else "") + line)
            continue
        if opener:
            fence = opener.group(1)
            lines.append(("> " if in_admonition else "") + line)
            continue
        if _MDX_LINE.match(line):
            continue
        admonition = _ADMONITION.match(line)
        if admonition:
            if in_admonition and not admonition.group(1):
                in_admonition = False
                lines.append("")
                continue
            kind = (admonition.group(1) or "note").capitalize()
            label = admonition.group(2).strip() or kind
            lines.extend(["", f"> **{label}**", ">"])
            in_admonition = True
            continue
        lines.append(("> " if in_admonition else "") + line)
    return "\n".join(lines)


RenderRule = Callable[[RendererHTML, Sequence[Token], int, OptionsDict, EnvType], str]


def _as_rule(method: RenderRule) -> Callable[..., str]:
    def rule(renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        return method(renderer, tokens, idx, options, env)

    return rule


class _Renderer:
    """markdown-it with raw HTML off (docs text is shown, never executed) plus anchors and site links."""

    def __init__(self, pages: Sequence[DocPage], current: DocPage) -> None:
        self.by_file = {str(page.relative): page for page in pages}
        self.current = current
        self.md = MarkdownIt("commonmark", {"html": False, "typographer": False}).enable("table")
        # markdown-it binds a rule to its renderer like a method, so register plain functions, not bound methods.
        for name, method in (
            ("heading_open", self._heading_open),
            ("link_open", self._link_open),
            ("image", self._image),
        ):
            self.md.add_render_rule(name, _as_rule(method))
        self.slugger = Slugger()

    def render(self, body: str) -> str:
        return str(self.md.render(body))

    def _heading_open(
        self, renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
    ) -> str:
        inline = tokens[idx + 1]
        # The same text and slugger as the ingestion's chunker, so `#anchor` of a citation exists here.
        text, custom_id = heading_text(inline.content)
        children = inline.children or []
        if custom_id is not None and children and children[-1].type == "text":
            # An explicit id ("## Title {#my-id}", "## Title { #my-id .wide }") ends the last piece of text and
            # is not part of the title.
            children[-1].content = split_heading_id(children[-1].content)[0]
        anchor = custom_id or self.slugger.slug(text)
        tokens[idx].attrSet("id", anchor)
        return renderer.renderToken(tokens, idx, options, env)

    def _resolve(self, target: str) -> str | None:
        # A link or image path relative to the current page, as a path inside the docs folder.
        resolved: list[str] = list(self.current.relative.parent.parts)
        for part in PurePosixPath(target).parts:
            if part == "..":
                if not resolved:
                    return None
                resolved.pop()
            elif part not in {".", "/"}:
                resolved.append(part)
        return "/".join(resolved)

    def _link_open(
        self, renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
    ) -> str:
        token = tokens[idx]
        href = str(token.attrGet("href") or "")
        parts = urlsplit(href)
        if not parts.scheme and not parts.netloc and parts.path.endswith(PAGE_SUFFIXES):
            target = self._resolve(parts.path)
            page = self.by_file.get(target) if target else None
            if page is not None:
                token.attrSet("href", page.url + (f"#{parts.fragment}" if parts.fragment else ""))
        elif parts.scheme in {"http", "https"}:
            token.attrSet("rel", "noopener noreferrer")
        return renderer.renderToken(tokens, idx, options, env)

    def _image(
        self, renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
    ) -> str:
        token = tokens[idx]
        src = str(token.attrGet("src") or "")
        parts = urlsplit(src)
        if not parts.scheme and not parts.netloc and not src.startswith("/"):
            target = self._resolve(parts.path)
            if target:
                token.attrSet("src", f"{GUIDE_PREFIX}/_assets/{target}")
        token.attrSet("loading", "lazy")
        return renderer.image(tokens, idx, options, env)


@lru_cache(maxsize=64)
def _render_body(page: DocPage, mtime_ns: int, pages: tuple[DocPage, ...]) -> str:
    del mtime_ns  # part of the cache key only
    _, body = split_front_matter(page.path.read_text(encoding="utf-8", errors="replace"))
    return _Renderer(pages, page).render(clean_mdx(body))


def _nav(pages: Sequence[DocPage], current: DocPage | None) -> str:
    items = []
    for page in pages:
        depth = page.slug.count("/") if page.slug else 0
        attrs = ' aria-current="page"' if current is not None and page.slug == current.slug else ""
        items.append(
            f'<li class="demo-depth-{min(depth, 3)}"><a href="{html.escape(page.url)}"{attrs}>'
            f"{html.escape(page.title)}</a></li>"
        )
    return "\n".join(items)


@lru_cache(maxsize=1)
def _template() -> Template:
    return Template(TEMPLATE_PATH.read_text(encoding="utf-8"))


def render_page(root: Path | None, slug: str, *, widget_title: str) -> RenderedPage | None:
    """The HTML of one guide page with the widget on it; None when there is no such page."""
    if root is None:
        if slug.strip("/"):
            return None
        body = (
            "<h1>bookchat</h1><p>No user guide was found (a <code>docs/</code> folder of Markdown files in the "
            "working directory). The chat below still answers from whatever has been ingested.</p>"
        )
        return RenderedPage("bookchat", _fill("bookchat", body, "", widget_title))
    pages = list_pages(root)
    page = find_page(root, slug)
    if page is None:
        return None
    body = _render_body(page, page.path.stat().st_mtime_ns, pages)
    return RenderedPage(page.title, _fill(page.title, body, _nav(pages, page), widget_title))


def _fill(title: str, body: str, nav: str, widget_title: str) -> str:
    return _template().substitute(
        title=html.escape(title),
        content=body,
        nav=nav,
        widget_title=html.escape(widget_title, quote=True),
    )
