"""The edge: CORS, security headers, HSTS behind TLS, trusted proxies and per-route body limits."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.requests import Request

from bookchat.config import Settings
from bookchat.edge.middleware import EdgeConfigError, body_limit_for, client_ip, cors_origins, install_edge
from bookchat.edge.problems import install_problem_handlers

BOOK = "https://book.example.org"


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"data_dir": tmp_path, "_env_file": None}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def edge_app(settings: Settings) -> FastAPI:
    app = FastAPI()
    app.state.settings = settings
    install_problem_handlers(app)

    @app.get("/api/ip")
    async def ip(request: Request) -> dict[str, str]:
        return {"ip": client_ip(request), "scheme": request.url.scheme}

    @app.post("/api/echo")
    async def echo(body: dict[str, str]) -> dict[str, str]:
        return body

    @app.get("/page")
    async def page() -> HTMLResponse:
        return HTMLResponse("<p>hi</p>")

    install_edge(app, settings)
    return app


def http(app: FastAPI, peer: str = "203.0.113.7") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(peer, 5555)), base_url="http://test")


async def test_preflight_allowed_for_a_listed_origin(tmp_path: Path) -> None:
    app = edge_app(make_settings(tmp_path, cors_origins=[BOOK]))
    async with http(app) as client:
        response = await client.options(
            "/api/echo",
            headers={
                "Origin": BOOK,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == BOOK
    assert "authorization" in response.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in response.headers


async def test_preflight_refused_for_another_origin(tmp_path: Path) -> None:
    app = edge_app(make_settings(tmp_path, cors_origins=[BOOK]))
    async with http(app) as client:
        response = await client.options(
            "/api/echo", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        simple = await client.get("/api/ip", headers={"Origin": "https://evil.example"})
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-origin" not in simple.headers


async def test_cors_headers_are_on_errors_too(tmp_path: Path) -> None:
    app = edge_app(make_settings(tmp_path, cors_origins=[BOOK]))
    async with http(app) as client:
        response = await client.post(
            "/api/echo", content=b"{", headers={"Origin": BOOK, "Content-Type": "application/json"}
        )
    assert response.status_code == 400
    assert response.headers["access-control-allow-origin"] == BOOK
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


def test_wildcard_with_credentials_is_a_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(EdgeConfigError, match="CORS"):
        install_edge(FastAPI(), make_settings(tmp_path, cors_origins=["*"], cors_allow_credentials=True))
    assert cors_origins(make_settings(tmp_path, cors_origins=["*"])) == ["*"]


@pytest.mark.parametrize("origin", ["book.example.org", "https://book.example.org/docs", "ftp://x.org", "*.x.org"])
def test_malformed_origins_are_refused(tmp_path: Path, origin: str) -> None:
    with pytest.raises(EdgeConfigError):
        cors_origins(make_settings(tmp_path, cors_origins=[origin]))


def test_bad_trusted_proxy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EdgeConfigError, match="TRUSTED_PROXIES"):
        install_edge(FastAPI(), make_settings(tmp_path, trusted_proxies=["not-an-ip"]))


async def test_security_headers(tmp_path: Path) -> None:
    app = edge_app(make_settings(tmp_path))
    async with http(app) as client:
        api = await client.get("/api/ip")
        page = await client.get("/page")
    assert api.headers["x-content-type-options"] == "nosniff"
    assert api.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert api.headers["content-security-policy"].startswith("default-src 'none'")
    assert "strict-transport-security" not in api.headers
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "unsafe-inline" not in page.headers["content-security-policy"].split("script-src")[1].split(";")[0]
    assert page.headers["x-frame-options"] == "DENY"


async def test_forwarded_headers_ignored_from_untrusted_peers(tmp_path: Path) -> None:
    app = edge_app(make_settings(tmp_path, trusted_proxies=["10.0.0.0/8"]))
    async with http(app, peer="203.0.113.7") as client:
        response = await client.get("/api/ip", headers={"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https"})
    assert response.json() == {"ip": "203.0.113.7", "scheme": "http"}
    assert "strict-transport-security" not in response.headers


async def test_forwarded_headers_believed_from_trusted_proxies(tmp_path: Path) -> None:
    app = edge_app(make_settings(tmp_path, trusted_proxies=["10.0.0.0/8", "192.168.1.1"]))
    async with http(app, peer="10.1.2.3") as client:
        # A client-sent X-Forwarded-For ("6.6.6.6") is left of the real client: it must be ignored.
        response = await client.get(
            "/api/ip",
            headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.9, 192.168.1.1", "X-Forwarded-Proto": "https"},
        )
        garbage = await client.get("/api/ip", headers={"X-Forwarded-For": "nonsense"})
    assert response.json() == {"ip": "198.51.100.9", "scheme": "https"}
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert garbage.json()["ip"] == "10.1.2.3"


def test_body_limits_per_route(tmp_path: Path) -> None:
    limit = body_limit_for(make_settings(tmp_path, max_body_bytes=100_000, max_upload_bytes=5_000_000))
    assert limit("/api/documents") == 5_000_000
    assert limit("/api/auth/login") == 16 * 1024
    assert limit("/api/chat") == 100_000
