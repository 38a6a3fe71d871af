"""Who may call what: every route of the OpenAPI schema, as nobody, a guest, a user, an admin and the service token."""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI

from bookchat.auth.dependencies import app_token_codec
from bookchat.auth.tokens import TokenCodec
from tests.auth.helpers import bearer, client, login, register, unique_email
from tests.conftest import ADMIN_TOKEN

PUBLIC = {
    ("GET", "/api/health"),
    ("GET", "/api/ready"),
    ("POST", "/api/auth/register"),
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/token"),
    ("POST", "/api/auth/refresh"),
    ("POST", "/api/auth/logout"),
    ("POST", "/api/auth/guest"),
    ("GET", "/api/features"),
}
ADMIN_ONLY = re.compile(r"^/api/(documents|insights)")
ACCOUNT_ONLY = {("POST", "/api/auth/claim"), ("PATCH", "/api/auth/me")}
# Signed-in readers only (guests get 401 saying so); without a model they answer 503 `llm-required`.
READER_ONLY = {("POST", "/api/pages/personalize"), ("POST", "/api/pages/translate")}


def codec_of(app: FastAPI) -> TokenCodec:
    return app_token_codec(app)


def operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, methods in app.openapi()["paths"].items():
        for method, spec in methods.items():
            found.append((method.upper(), path, spec))
    return found


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)


@pytest.fixture(scope="module")
async def principals(auth_app: FastAPI, database_url: str) -> dict[str, dict[str, str]]:
    async with client(auth_app) as http:
        admin_email = unique_email("admin")
        await register(http, admin_email)
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE users SET role = 'admin' WHERE email = $1", admin_email)
        finally:
            await conn.close()
        user_email = unique_email()
        await register(http, user_email)
        guest = (await http.post("/api/auth/guest")).json()
        return {
            "nobody": {},
            "guest": bearer(guest["access_token"]),
            "user": bearer((await login(http, user_email))["access_token"]),
            "admin": bearer((await login(http, admin_email))["access_token"]),
            "service": bearer(ADMIN_TOKEN),
        }


async def test_every_route_enforces_its_roles(auth_app: FastAPI, principals: dict[str, dict[str, str]]) -> None:
    checked = 0
    async with client(auth_app) as http:
        for method, path, spec in operations(auth_app):
            url = concrete(path)
            json_body: dict[str, Any] | None = {} if "requestBody" in spec else None
            statuses = {}
            for who, headers in principals.items():
                response = await http.request(method, url, json=json_body, headers=headers)
                no_model = (method, path) in READER_ONLY and response.status_code == 503
                assert no_model or response.status_code < 500, (method, path, who, response.text)
                if no_model:
                    assert response.json()["code"] == "llm-required", (method, path, who, response.text)
                statuses[who] = response.status_code
            checked += 1
            if (method, path) in PUBLIC:
                continue
            assert statuses["nobody"] == 401, (method, path, statuses)
            if ADMIN_ONLY.match(path):
                assert statuses["guest"] == 403, (method, path, statuses)
                assert statuses["user"] == 403, (method, path, statuses)
                assert statuses["admin"] not in (401, 403), (method, path, statuses)
                assert statuses["service"] not in (401, 403), (method, path, statuses)
            elif (method, path) in READER_ONLY:
                assert statuses["guest"] == 401, (method, path, statuses)
                assert statuses["service"] == 403, (method, path, statuses)
                assert statuses["user"] not in (401, 403), (method, path, statuses)
            elif (method, path) in ACCOUNT_ONLY:
                assert statuses["guest"] == 403, (method, path, statuses)
                assert statuses["user"] not in (401, 403), (method, path, statuses)
            else:
                for who in ("guest", "user", "admin"):
                    assert statuses[who] not in (401, 403), (method, path, who, statuses)
    assert checked >= len(PUBLIC) + 2


async def test_expired_and_forged_tokens_are_401_everywhere(auth_app: FastAPI) -> None:
    codec = codec_of(auth_app)
    expired = codec.issue_access(f"user:{uuid.uuid4()}", "admin", ttl=-3600).token
    forged = expired[:-4] + ("AAAA" if not expired.endswith("AAAA") else "BBBB")
    async with client(auth_app) as http:
        for method, path, spec in operations(auth_app):
            if (method, path) in PUBLIC:
                continue
            for token in (expired, forged, "not-a-token"):
                json_body: dict[str, Any] | None = {} if "requestBody" in spec else None
                response = await http.request(method, concrete(path), json=json_body, headers=bearer(token))
                assert response.status_code == 401, (method, path, response.text)


async def _owned_conversation(database_url: str, owner: str) -> tuple[uuid.UUID, uuid.UUID]:
    conn = await asyncpg.connect(database_url)
    try:
        conversation_id: uuid.UUID = await conn.fetchval(
            "INSERT INTO conversations (owner_id, title) VALUES ($1, 'secret plans') RETURNING id", owner
        )
        message_id: uuid.UUID = await conn.fetchval(
            "INSERT INTO messages (conversation_id, role, content) VALUES ($1, 'assistant', 'the answer') RETURNING id",
            conversation_id,
        )
        return conversation_id, message_id
    finally:
        await conn.close()


async def test_another_owners_conversation_is_404(auth_app: FastAPI, database_url: str) -> None:
    paths = {path for _, path, _ in operations(auth_app)}
    if "/api/conversations/{conversation_id}" not in paths:
        pytest.skip("conversations router not mounted yet")
    async with client(auth_app) as http:
        owner = await register(http)
        owner_headers = bearer((await login(http, owner["email"]))["access_token"])
        intruder_email = unique_email("intruder")
        await register(http, intruder_email)
        intruder = bearer((await login(http, intruder_email))["access_token"])
        guest = bearer((await http.post("/api/auth/guest")).json()["access_token"])
        conversation_id, message_id = await _owned_conversation(database_url, f"user:{owner['id']}")

        assert (await http.get(f"/api/conversations/{conversation_id}", headers=owner_headers)).status_code == 200
        for headers in (intruder, guest):
            got = await http.get(f"/api/conversations/{conversation_id}", headers=headers)
            assert got.status_code == 404
            assert "secret plans" not in got.text
            listing = await http.get("/api/conversations", headers=headers)
            assert str(conversation_id) not in listing.text
            feedback = await http.post(f"/api/messages/{message_id}/feedback", json={"rating": "down"}, headers=headers)
            assert feedback.status_code == 404
            deleted = await http.delete(f"/api/conversations/{conversation_id}", headers=headers)
            assert deleted.status_code == 404
        # Still there for its owner after all those attempts.
        assert (await http.get(f"/api/conversations/{conversation_id}", headers=owner_headers)).status_code == 200


async def test_admin_service_token_is_compared_exactly(auth_app: FastAPI) -> None:
    async with client(auth_app) as http:
        for near_miss in (ADMIN_TOKEN[:-1], ADMIN_TOKEN + "x", ADMIN_TOKEN.upper(), ADMIN_TOKEN[1:]):
            response = await http.get("/api/auth/me", headers=bearer(near_miss))
            assert response.status_code == 401
        me = await http.get("/api/auth/me", headers=bearer(ADMIN_TOKEN))
        assert me.json() == {"principal_id": "service:admin-token", "role": "admin", "user": None, "background": None}
