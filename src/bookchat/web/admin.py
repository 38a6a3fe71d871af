"""The author's dashboard at /admin: one static page and its script and stylesheet; the data comes from the
insights API with the admin's bearer token, so the page itself holds nothing private."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from bookchat.web.router import PAGE_CSP, asset_response

TEMPLATE = Path(__file__).with_name("templates") / "admin.html"

router = APIRouter(include_in_schema=False, tags=["web"])


@lru_cache(maxsize=1)
def admin_page() -> str:
    return TEMPLATE.read_text(encoding="utf-8")


@router.get("/admin", response_class=HTMLResponse)
def dashboard() -> HTMLResponse:
    """The insights dashboard: sign in with an admin account (or the admin token); charts, gaps, export."""
    return HTMLResponse(
        admin_page(),
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": PAGE_CSP,
            "X-Content-Type-Options": "nosniff",
            # Question text shown on this page must not leak to the book's pages through the Referer.
            "Referrer-Policy": "no-referrer",
        },
    )


@router.api_route("/admin.js", methods=["GET", "HEAD"])
def dashboard_script(request: Request) -> Response:
    return asset_response(request, "admin.js")


@router.api_route("/admin.css", methods=["GET", "HEAD"])
def dashboard_stylesheet(request: Request) -> Response:
    return asset_response(request, "admin.css")
