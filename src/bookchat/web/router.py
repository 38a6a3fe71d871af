"""Routes of the reader's side: the widget's script and stylesheet, and the demo site that carries it."""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from bookchat.errors import NotFound
from bookchat.web import pages

STATIC_DIR = Path(__file__).with_name("static")
WIDGET_TITLE = "Ask the book"

# Revalidated with the ETag after five minutes, so a new release reaches readers quickly without a version query.
ASSET_CACHE_CONTROL = "public, max-age=300, stale-while-revalidate=86400"
PAGE_CACHE_CONTROL = "no-cache"
# The demo page runs only our own script and style; nothing inline, nothing third-party.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}

router = APIRouter(include_in_schema=False, tags=["web"])


@dataclass(frozen=True)
class StaticAsset:
    body: bytes
    media_type: str
    etag: str


@lru_cache(maxsize=8)
def load_asset(name: str) -> StaticAsset:
    """A file of `static/`, read once per process, with a strong ETag of its content."""
    path = STATIC_DIR / name
    body = path.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return StaticAsset(body, MEDIA_TYPES[path.suffix], etag)


def _etag_matches(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match", "")
    candidates = {value.strip().removeprefix("W/") for value in header.split(",")}
    return etag in candidates or "*" in candidates


def asset_response(request: Request, name: str) -> Response:
    asset = load_asset(name)
    headers = {
        "ETag": asset.etag,
        "Cache-Control": ASSET_CACHE_CONTROL,
        "X-Content-Type-Options": "nosniff",
        # The widget is loaded by other sites (the book): a same-origin resource policy would block it.
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    if _etag_matches(request, asset.etag):
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else asset.body
    response = Response(body, media_type=asset.media_type, headers=headers)
    if request.method == "HEAD":
        response.headers["Content-Length"] = str(len(asset.body))
    return response


def get_docs_dir(request: Request) -> Path | None:
    """The guide the demo site shows: `app.state.docs_dir` when set, else the sample book `serve` ingests
    (BOOKCHAT_SAMPLE_BOOK), else `./docs`."""
    state = request.app.state
    if hasattr(state, "docs_dir"):  # set to None: deliberately no guide
        return Path(state.docs_dir) if state.docs_dir is not None else None
    sample_book: Path | None = getattr(getattr(state, "settings", None), "sample_book", None)
    if sample_book is not None and Path(sample_book).is_dir():
        return Path(sample_book)
    return pages.find_docs_dir()


DocsDirDep = Annotated[Path | None, Depends(get_docs_dir)]


async def require_demo(request: Request) -> None:
    """404 problem+json for the demo site's routes when BOOKCHAT_DEMO_ENABLED=false (an API-only deployment)."""
    settings = getattr(request.app.state, "settings", None)
    if not getattr(settings, "demo_enabled", True):
        raise NotFound("The demo site is turned off on this server.", code="demo-disabled")


# On every route of the demo site; the widget's own assets are served whatever the setting.
DEMO = [Depends(require_demo)]


def _page_headers() -> dict[str, str]:
    return {
        "Cache-Control": PAGE_CACHE_CONTROL,
        "Content-Security-Policy": PAGE_CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "strict-origin-when-cross-origin",
    }


def _page_response(docs_dir: Path | None, slug: str) -> HTMLResponse:
    rendered = pages.render_page(docs_dir, slug, widget_title=WIDGET_TITLE)
    if rendered is None:
        body = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Not found · bookchat</title>'
            '<link rel="stylesheet" href="/demo.css"></head><body><main class="demo-main"><h1>Page not found</h1>'
            f"<p>No page of the guide is called <code>{html.escape(slug)}</code>. "
            '<a href="/">Back to the start</a>.</p></main></body></html>'
        )
        return HTMLResponse(body, status_code=404, headers=_page_headers())
    return HTMLResponse(rendered.html, headers=_page_headers())


@router.api_route("/widget.js", methods=["GET", "HEAD"])
def widget_script(request: Request) -> Response:
    """The embeddable chat widget."""
    return asset_response(request, "widget.js")


@router.api_route("/widget.css", methods=["GET", "HEAD"])
def widget_stylesheet(request: Request) -> Response:
    """The widget's stylesheet (the script loads it from next to itself)."""
    return asset_response(request, "widget.css")


@router.api_route("/demo.css", methods=["GET", "HEAD"], dependencies=DEMO)
def demo_stylesheet(request: Request) -> Response:
    return asset_response(request, "demo.css")


# Sync handlers: reading and rendering Markdown is blocking work, so FastAPI runs them in its thread pool.
@router.get("/", response_class=HTMLResponse, dependencies=DEMO)
def demo_home(docs_dir: DocsDirDep) -> HTMLResponse:
    """The guide's first page with the chat widget on it."""
    return _page_response(docs_dir, "")


@router.get(pages.GUIDE_PREFIX, response_class=RedirectResponse, dependencies=DEMO)
@router.get(pages.GUIDE_PREFIX + "/", response_class=RedirectResponse, dependencies=DEMO)
def guide_home() -> RedirectResponse:
    return RedirectResponse("/", status_code=308)


@router.get(pages.GUIDE_PREFIX + "/_assets/{path:path}", response_model=None, dependencies=DEMO)
def guide_asset(path: str, docs_dir: DocsDirDep) -> Response:
    """Images the guide's pages show."""
    found = pages.find_asset(docs_dir, path) if docs_dir is not None else None
    if found is None:
        return Response("Not found", status_code=404, media_type="text/plain; charset=utf-8")
    return FileResponse(
        found,
        media_type=pages.ASSET_SUFFIXES[found.suffix.lower()],
        headers={
            "Cache-Control": ASSET_CACHE_CONTROL,
            "X-Content-Type-Options": "nosniff",
            # An SVG opened on its own is a document: it must not run script on this origin.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
        },
    )


@router.get(pages.GUIDE_PREFIX + "/{slug:path}", response_class=HTMLResponse, dependencies=DEMO)
def guide_page(slug: str, docs_dir: DocsDirDep) -> HTMLResponse:
    """Any other page of the guide, so that citation links of the demo land on a real section."""
    return _page_response(docs_dir, slug)
