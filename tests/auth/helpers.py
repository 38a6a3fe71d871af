"""Helpers shared by the auth and security tests: an app with the auth router, users, tokens."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from bookchat.auth.router import router as auth_router
from bookchat.config import Settings
from bookchat.edge.middleware import SecurityHeadersMiddleware, install_edge
from bookchat.main import create_app

PASSWORD = "plum-ferry-quartz-lantern"


# API routers main.py is expected to mount; mounted here too while it does not (yet), so these tests run.
API_ROUTERS = (
    "bookchat.chat.router",
    "bookchat.conversations.router",
    "bookchat.documents.router",
    "bookchat.search.router",
    "bookchat.openai_compat.router",
)


def build_app(settings: Settings) -> FastAPI:
    """`create_app`, plus the auth router, the other API routers and the edge if main.py does not wire them."""
    app = create_app(settings)
    mounted = {getattr(route, "path", "") for route in app.routes}
    if "/api/auth/login" not in mounted:
        app.include_router(auth_router)
    for module_name in API_ROUTERS:
        try:
            router = importlib.import_module(module_name).router
        except ImportError:  # a router not written yet must not break the auth tests
            continue
        if not {getattr(route, "path", "") for route in router.routes} & mounted:
            app.include_router(router)
    classes: list[object] = [middleware.cls for middleware in app.user_middleware]
    if SecurityHeadersMiddleware not in classes:
        install_edge(app, settings)
    return app


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[FastAPI]:
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def client(app: FastAPI, *, ip: str = "127.0.0.1", **headers: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers, timeout=30)


def unique_email(tag: str = "reader") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.org"


async def register(http: httpx.AsyncClient, email: str | None = None, **extra: Any) -> dict[str, Any]:
    body = {"email": email or unique_email(), "password": PASSWORD, **extra}
    response = await http.post("/api/auth/register", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def login(http: httpx.AsyncClient, email: str, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
    response = await http.post("/api/auth/login", json={"email": email, "password": password, **extra})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
