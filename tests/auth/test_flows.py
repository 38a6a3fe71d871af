"""Register, login (JSON and form), refresh rotation and reuse, logout, me, guests and claims."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from bookchat.auth.tokens import TokenCodec
from bookchat.config import Settings
from tests.auth.helpers import PASSWORD, bearer, client, login, register, running, unique_email
from tests.conftest import JWT_SECRET


async def test_register_login_me(http: httpx.AsyncClient) -> None:
    email = unique_email()
    user = await register(http, email.upper(), display_name="Ada")
    assert user["email"] == email.lower()
    assert user["role"] == "user"
    assert "password" not in str(user)

    tokens = await login(http, email)
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900
    assert tokens["refresh_token"].startswith("rt_")

    me = await http.get("/api/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json()["principal_id"] == f"user:{user['id']}"
    assert me.json()["user"]["display_name"] == "Ada"


async def test_duplicate_email_is_409_case_insensitive(http: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(http, email)
    again = await http.post("/api/auth/register", json={"email": email.upper(), "password": PASSWORD})
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "password",
    ["short", "Password1234!", "123456789012", "aaaaaaaaaaaaaaaa", "x" * 129, "qwertyuiop123"],
)
async def test_weak_passwords_are_refused(http: httpx.AsyncClient, password: str) -> None:
    response = await http.post("/api/auth/register", json={"email": unique_email(), "password": password})
    assert response.status_code == 422, response.text


async def test_password_containing_the_email_is_refused(http: httpx.AsyncClient) -> None:
    email = unique_email("lovelace")
    response = await http.post("/api/auth/register", json={"email": email, "password": email.split("@")[0] + "!x"})
    assert response.status_code == 422


async def test_wrong_password_and_unknown_email_look_alike(http: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(http, email)
    wrong = await http.post("/api/auth/login", json={"email": email, "password": "not-the-password-at-all"})
    unknown = await http.post("/api/auth/login", json={"email": unique_email(), "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]
    assert wrong.json()["code"] == unknown.json()["code"] == "invalid-credentials"


async def test_oauth2_form_token(http: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(http, email)
    response = await http.post("/api/auth/token", data={"username": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    me = await http.get("/api/auth/me", headers=bearer(response.json()["access_token"]))
    assert me.status_code == 200


async def test_refresh_rotates_and_reuse_revokes_the_family(http: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(http, email)
    first = await login(http, email)

    rotated = await http.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]

    # The first token was spent: presenting it again is theft, and the whole family dies with it.
    reused = await http.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    assert reused.json()["code"] == "refresh-token-reused"
    after = await http.post("/api/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert after.status_code == 401

    # Another login (another family) is unaffected.
    other = await login(http, email)
    ok = await http.post("/api/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert ok.status_code == 200


async def test_unknown_refresh_token_is_401(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/auth/refresh", json={"refresh_token": "rt_" + "A" * 43})
    assert response.status_code == 401


async def test_logout_revokes_the_session(http: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(http, email)
    session = await login(http, email)
    other = await login(http, email)
    response = await http.post("/api/auth/logout", json={"refresh_token": session["refresh_token"]})
    assert response.status_code == 204
    assert (await http.post("/api/auth/refresh", json={"refresh_token": session["refresh_token"]})).status_code == 401
    assert (await http.post("/api/auth/refresh", json={"refresh_token": other["refresh_token"]})).status_code == 200
    # Idempotent: logging out twice is fine.
    again = await http.post("/api/auth/logout", json={"refresh_token": session["refresh_token"]})
    assert again.status_code == 204


async def test_logout_all_sessions(http: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(http, email)
    one, two = await login(http, email), await login(http, email)
    response = await http.post("/api/auth/logout", json={"refresh_token": one["refresh_token"], "all_sessions": True})
    assert response.status_code == 204
    assert (await http.post("/api/auth/refresh", json={"refresh_token": two["refresh_token"]})).status_code == 401


async def test_expired_refresh_token_is_401(http: httpx.AsyncClient, database_url: str) -> None:
    email = unique_email()
    await register(http, email)
    session = await login(http, email)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE refresh_tokens SET expires_at = now() - interval '1 minute'"
            " WHERE user_id = (SELECT id FROM users WHERE email = $1)",
            email,
        )
    finally:
        await conn.close()
    response = await http.post("/api/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert response.status_code == 401


async def test_me_without_token_is_401_problem(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/auth/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_guest_token_and_renewal(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/auth/guest")
    assert response.status_code == 200, response.text
    guest = response.json()
    assert guest["principal_id"].startswith("guest:")
    me = await http.get("/api/auth/me", headers=bearer(guest["access_token"]))
    assert me.json() == {"principal_id": guest["principal_id"], "role": "guest", "user": None, "background": None}

    renewed = await http.post("/api/auth/guest", json={"guest_token": guest["access_token"]})
    assert renewed.json()["principal_id"] == guest["principal_id"]
    bad = await http.post("/api/auth/guest", json={"guest_token": "x" * 40})
    assert bad.status_code == 400


async def _conversation_for(database_url: str, owner: str) -> uuid.UUID:
    conn = await asyncpg.connect(database_url)
    try:
        conversation_id: uuid.UUID = await conn.fetchval(
            "INSERT INTO conversations (owner_id, title) VALUES ($1, 'q') RETURNING id", owner
        )
        return conversation_id
    finally:
        await conn.close()


async def _owner_of(database_url: str, conversation_id: uuid.UUID) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        owner: str = await conn.fetchval("SELECT owner_id FROM conversations WHERE id = $1", conversation_id)
        return owner
    finally:
        await conn.close()


async def test_guest_who_registers_keeps_conversations(http: httpx.AsyncClient, database_url: str) -> None:
    guest = (await http.post("/api/auth/guest")).json()
    conversation = await _conversation_for(database_url, guest["principal_id"])
    user = await register(http, guest_token=guest["access_token"])
    assert await _owner_of(database_url, conversation) == f"user:{user['id']}"


async def test_guest_who_logs_in_or_claims_keeps_conversations(http: httpx.AsyncClient, database_url: str) -> None:
    email = unique_email()
    user = await register(http, email)
    guest = (await http.post("/api/auth/guest")).json()
    first = await _conversation_for(database_url, guest["principal_id"])
    tokens = await login(http, email, guest_token=guest["access_token"])
    assert await _owner_of(database_url, first) == f"user:{user['id']}"

    second = await _conversation_for(database_url, guest["principal_id"])
    claim = await http.post(
        "/api/auth/claim", json={"guest_token": guest["access_token"]}, headers=bearer(tokens["access_token"])
    )
    assert claim.status_code == 200
    assert claim.json() == {"claimed": 1}
    assert await _owner_of(database_url, second) == f"user:{user['id']}"

    # A guest cannot claim (it has no account to move things to).
    refused = await http.post(
        "/api/auth/claim", json={"guest_token": guest["access_token"]}, headers=bearer(guest["access_token"])
    )
    assert refused.status_code == 403


async def test_registration_and_anonymous_can_be_turned_off(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(allow_registration=False, allow_anonymous=False, rate_limit_enabled=False)
    async with running(settings) as app, client(app) as http:
        response = await http.post("/api/auth/register", json={"email": unique_email(), "password": PASSWORD})
        assert response.status_code == 403
        assert response.json()["code"] == "registration-disabled"
        guest = await http.post("/api/auth/guest")
        assert guest.status_code == 403


async def _refresh_status(http: httpx.AsyncClient, refresh_token: str) -> int:
    return (await http.post("/api/auth/refresh", json={"refresh_token": refresh_token})).status_code


async def _expire_token_rows(database_url: str, email: str, ago: timedelta) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE refresh_tokens SET expires_at = now() - $2::interval"
            " WHERE user_id = (SELECT id FROM users WHERE email = $1)",
            email,
            ago,
        )
    finally:
        await conn.close()


async def test_logout_with_a_revoked_token_revokes_nothing(http: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(http, email)
    ended, live = await login(http, email), await login(http, email)
    assert (await http.post("/api/auth/logout", json={"refresh_token": ended["refresh_token"]})).status_code == 204
    again = await http.post("/api/auth/logout", json={"refresh_token": ended["refresh_token"], "all_sessions": True})
    assert again.status_code == 204
    assert await _refresh_status(http, live["refresh_token"]) == 200, "another session survives a stale logout"


async def test_logout_with_an_expired_token_revokes_nothing(http: httpx.AsyncClient, database_url: str) -> None:
    email = unique_email()
    await register(http, email)
    old = await login(http, email)
    await _expire_token_rows(database_url, email, timedelta(minutes=1))
    live = await login(http, email)
    response = await http.post("/api/auth/logout", json={"refresh_token": old["refresh_token"], "all_sessions": True})
    assert response.status_code == 204
    assert await _refresh_status(http, live["refresh_token"]) == 200


async def test_logout_with_a_rotated_token_revokes_its_family_only(http: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(http, email)
    first, other = await login(http, email), await login(http, email)
    rotated = (await http.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
    # The spent token shows up again: reuse, so its family ends (as on /refresh), but not the other sessions.
    response = await http.post("/api/auth/logout", json={"refresh_token": first["refresh_token"], "all_sessions": True})
    assert response.status_code == 204
    assert await _refresh_status(http, rotated["refresh_token"]) == 401
    assert await _refresh_status(http, other["refresh_token"]) == 200


async def test_logout_with_a_current_token_and_all_sessions_still_ends_every_session(http: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(http, email)
    one, two = await login(http, email), await login(http, email)
    current = (await http.post("/api/auth/refresh", json={"refresh_token": one["refresh_token"]})).json()
    response = await http.post(
        "/api/auth/logout", json={"refresh_token": current["refresh_token"], "all_sessions": True}
    )
    assert response.status_code == 204
    assert await _refresh_status(http, two["refresh_token"]) == 401


async def _token_rows(database_url: str, email: str) -> list[tuple[uuid.UUID, object]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT id, expires_at FROM refresh_tokens WHERE user_id = (SELECT id FROM users WHERE email = $1)",
            email,
        )
    finally:
        await conn.close()
    return [(row["id"], row["expires_at"]) for row in rows]


async def test_refresh_tokens_expired_long_ago_are_purged_at_login(http: httpx.AsyncClient, database_url: str) -> None:
    email = unique_email()
    await register(http, email)
    await login(http, email)
    await _expire_token_rows(database_url, email, timedelta(days=30))  # long gone
    stale = {row_id for row_id, _ in await _token_rows(database_url, email)}
    recent = await login(http, email)
    await _expire_token_rows(database_url, email, timedelta(hours=1))  # kept a while: a late replay is still recognised
    kept = {row_id for row_id, _ in await _token_rows(database_url, email)} - stale
    await login(http, email)
    left = {row_id for row_id, _ in await _token_rows(database_url, email)}
    assert not stale & left, "rows expired more than the retention ago are deleted"
    assert kept <= left
    assert await _refresh_status(http, recent["refresh_token"]) == 401


async def test_purging_expired_refresh_tokens_is_bounded(database_url: str) -> None:
    from bookchat.auth import repository

    conn = await asyncpg.connect(database_url)
    try:
        user_id = await conn.fetchval(
            "INSERT INTO users (email, password_hash) VALUES ($1, 'x') RETURNING id", unique_email("purge")
        )
        for _ in range(5):
            await conn.execute(
                "INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at)"
                " VALUES ($1, gen_random_uuid(), $2, now() - interval '400 days')",
                user_id,
                uuid.uuid4().hex,
            )
        cutoff = datetime.now(UTC) - timedelta(days=399)
        first = await repository.delete_expired_refresh_tokens(conn, expired_before=cutoff, limit=2)
        assert first == 2
        while await repository.delete_expired_refresh_tokens(conn, expired_before=cutoff, limit=1000):
            pass
        assert await conn.fetchval("SELECT count(*) FROM refresh_tokens WHERE user_id = $1", user_id) == 0
    finally:
        await conn.execute("DELETE FROM users WHERE email LIKE 'purge-%'")
        await conn.close()


def _past_codec(seconds_ago: float) -> TokenCodec:
    """Signs like the test app, but as if it were `seconds_ago` earlier."""
    return TokenCodec(
        algorithm="HS256",
        signing_key=JWT_SECRET,
        verifying_key=JWT_SECRET,
        guest_ttl=3600,
        clock=lambda: time.time() - seconds_ago,
    )


async def test_a_recently_expired_guest_token_renews_the_same_guest(http: httpx.AsyncClient) -> None:
    subject = f"guest:{uuid.uuid4()}"
    token = _past_codec(3 * 3600).issue_access(subject, "guest").token  # expired two hours ago
    renewed = await http.post("/api/auth/guest", json={"guest_token": token})
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["principal_id"] == subject


async def test_a_guest_token_expired_beyond_the_grace_gets_a_fresh_guest(http: httpx.AsyncClient) -> None:
    subject = f"guest:{uuid.uuid4()}"
    token = _past_codec(8 * 86_400).issue_access(subject, "guest").token  # expired eight days ago
    renewed = await http.post("/api/auth/guest", json={"guest_token": token})
    assert renewed.status_code == 200, renewed.text
    fresh = renewed.json()["principal_id"]
    assert fresh.startswith("guest:")
    assert fresh != subject
    # A forged token is still refused, not swapped for a fresh guest.
    forged = TokenCodec(algorithm="HS256", signing_key="x" * 40, verifying_key="x" * 40).issue_access(subject, "guest")
    assert (await http.post("/api/auth/guest", json={"guest_token": forged.token})).status_code == 400
