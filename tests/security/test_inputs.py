"""Hostile input on the auth routes: injection, huge, binary and odd strings give 4xx or a normal answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import quote_from_bytes

import httpx
import pytest

from bookchat.auth import passwords
from bookchat.config import Settings
from tests.auth.helpers import PASSWORD, bearer, client, register, running, unique_email

NASTY = [
    "' OR '1'='1",
    "admin@example.org'; DROP TABLE users; --",
    "\x00",
    "a\x00b@example.org",
    "\ud800",
    "é" * 5000,
    "x" * 100_000,
    "${jndi:ldap://x}",
    "<script>alert(1)</script>@example.org",
    "%00%27",
    "\u202e\u0000\uffff",
]


@pytest.mark.parametrize("value", NASTY)
async def test_nasty_strings_in_every_auth_field(http: httpx.AsyncClient, value: str) -> None:
    # Lone surrogates cannot be encoded by httpx's JSON encoder; send the escaped JSON ourselves.
    def post(path: str, body: dict[str, object]) -> httpx.Request:
        return http.build_request(
            "POST", path, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )

    requests = [
        post("/api/auth/register", {"email": value, "password": PASSWORD}),
        post("/api/auth/register", {"email": unique_email(), "password": value}),
        post("/api/auth/register", {"email": unique_email(), "password": PASSWORD + "!", "display_name": value}),
        post("/api/auth/login", {"email": value, "password": value}),
        post("/api/auth/login", {"email": "a@b.org", "password": PASSWORD, "guest_token": value}),
        post("/api/auth/refresh", {"refresh_token": value}),
        post("/api/auth/logout", {"refresh_token": value}),
        post("/api/auth/guest", {"guest_token": value}),
    ]
    for request in requests:
        response = await http.send(request)
        assert response.status_code < 500, (request.url, response.text)
        assert response.status_code != 201 or "\x00" not in value
    raw = quote_from_bytes(value.encode("utf-8", "surrogatepass"))
    form = await http.post(
        "/api/auth/token",
        content=f"username={raw}&password={raw}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code in (400, 401, 413, 422), form.text
    header_value = value.encode("utf-8", "surrogatepass").replace(b"\x00", b"")[:4000]
    me = await http.get("/api/auth/me", headers={b"Authorization": b"Bearer " + header_value})
    assert me.status_code in (400, 401), me.text


async def test_binary_and_malformed_bodies(http: httpx.AsyncClient) -> None:
    for content, content_type in [
        (bytes(range(256)), "application/json"),
        (b"\xff\xfe\x00", "application/json"),
        (b"[]", "application/json"),
        (b'{"email": 1, "password": []}', "application/json"),
        (b"email=a&password=b", "application/x-www-form-urlencoded"),
        (b"{}", "text/plain"),
    ]:
        response = await http.post("/api/auth/login", content=content, headers={"Content-Type": content_type})
        assert 400 <= response.status_code < 500, (content, response.text)


async def test_oversized_auth_body_is_413(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/auth/login", json={"email": "a@b.org", "password": "p" * (2 * 1_048_576)})
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_unknown_fields_are_refused(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/auth/register", json={"email": unique_email(), "password": PASSWORD, "role": "admin"}
    )
    assert response.status_code == 422


async def test_error_bodies_do_not_echo_secrets(http: httpx.AsyncClient) -> None:
    secret = "my-very-secret-password-123"
    response = await http.post("/api/auth/register", json={"email": "nope", "password": secret})
    assert response.status_code == 422
    assert secret not in response.text
    refresh = "rt_" + "S" * 43
    assert refresh not in (await http.post("/api/auth/refresh", json={"refresh_token": refresh})).text


async def test_login_does_the_same_work_for_unknown_emails(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = unique_email()
    await register(http, email)
    calls: list[str] = []
    real = passwords._verify

    def counting(password: str, password_hash: str) -> tuple[bool, str | None]:
        calls.append(password_hash[:9])
        return real(password, password_hash)

    monkeypatch.setattr(passwords, "_verify", counting)
    await http.post("/api/auth/login", json={"email": unique_email(), "password": PASSWORD})
    await http.post("/api/auth/login", json={"email": email, "password": "wrong-password-here"})
    # The form route has no schema in front of the service: garbage reaches it and still costs a hash.
    await http.post("/api/auth/token", data={"username": "\x00not-an-email", "password": "x"})
    assert calls == ["$argon2id"] * 3


async def test_brute_force_is_throttled(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(rate_limit_enabled=True, rate_limit_auth="8/minute", rate_limit_login_account="3/minute")
    async with running(settings) as app:
        async with client(app, ip="198.51.100.20") as http:
            email = unique_email()
            await register(http, email)
            for _ in range(3):
                wrong = await http.post("/api/auth/login", json={"email": email, "password": "wrong-password!!"})
                assert wrong.status_code == 401
            # This address has failed and the account's failure budget is spent: even the right password waits
            # here (and says how long); tests/security/test_login_throttle.py shows the owner elsewhere is not.
            locked = await http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
            assert locked.status_code == 429
            assert int(locked.headers["retry-after"]) >= 1
            # The IP budget (8/minute on every auth route) runs out too.
            statuses = [(await http.post("/api/auth/guest")).status_code for _ in range(4)]
            assert statuses[-1] == 429
            assert statuses.count(200) == 3
        async with client(app, ip="198.51.100.21") as other:
            # Other accounts are not locked by someone else's failures.
            other_email = unique_email()
            await register(other, other_email)
            ok = await other.post("/api/auth/login", json={"email": other_email, "password": PASSWORD})
            assert ok.status_code == 200
            assert ok.headers["ratelimit-limit"] == "8"
            assert bearer(ok.json()["access_token"])


async def test_nul_and_lone_surrogates_in_chat_fields_are_422(make_settings: Callable[..., Settings]) -> None:
    async with running(make_settings()) as app, client(app, ip="198.51.100.77") as http:
        guest = (await http.post("/api/auth/guest")).json()["access_token"]
        headers = {"Authorization": f"Bearer {guest}", "content-type": "application/json"}
        for body in (
            b'{"message": "nul \\u0000 here"}',
            b'{"message": "lone \\ud800 surrogate"}',
            b'{"message": "fine", "selected_text": "nul \\u0000"}',
        ):
            response = await http.post("/api/chat", content=body, headers=headers)
            assert response.status_code == 422, response.text
