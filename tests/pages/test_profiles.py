"""Reader profiles: the background given at sign-up or with PATCH /api/auth/me, validated and returned by GET."""

from __future__ import annotations

from typing import Any

import pytest

from tests.pages.conftest import Book


async def _me(book: Book, token: str) -> dict[str, Any]:
    async with book.client(token) as http:
        reply = await http.get("/api/auth/me")
    assert reply.status_code == 200
    body: dict[str, Any] = reply.json()
    return body


async def test_background_given_at_sign_up_is_returned(book: Book) -> None:
    token = await book.reader({"software": "advanced", "hardware": "none", "interests": "humanoids", "language": "UR"})
    me = await _me(book, token)
    assert me["background"] == {"software": "advanced", "hardware": "none", "interests": "humanoids", "language": "ur"}
    assert me["user"]["email"].startswith("reader-")


async def test_patch_merges_replaces_and_clears(book: Book) -> None:
    token = await book.reader()
    assert (await _me(book, token))["background"] is None
    async with book.client(token) as http:
        incomplete = await http.patch("/api/auth/me", json={"background": {"software": "beginner"}})
        assert incomplete.status_code == 422
        assert incomplete.json()["code"] == "incomplete-background"
        first = await http.patch("/api/auth/me", json={"background": {"software": "beginner", "hardware": "hobbyist"}})
        assert first.status_code == 200
        assert first.json()["background"]["software"] == "beginner"
        merged = await http.patch("/api/auth/me", json={"background": {"interests": "  drones  ", "language": "ur-PK"}})
        assert merged.json()["background"] == {
            "software": "beginner", "hardware": "hobbyist", "interests": "drones", "language": "ur-pk",
        }  # fmt: skip
        assert (await _me(book, token))["background"] == merged.json()["background"]
        cleared = await http.patch("/api/auth/me", json={"background": None})
        assert cleared.json()["background"] is None
    assert (await _me(book, token))["background"] is None


@pytest.mark.parametrize(
    "background",
    [
        {"software": "guru", "hardware": "none"},
        {"software": "none", "hardware": "wizard"},
        {"software": "none", "hardware": "none", "interests": "x" * 301},
        {"software": "none", "hardware": "none", "language": "english please"},
        {"software": "none", "hardware": "none", "language": "u"},
        {"software": "none", "hardware": "none", "shoe_size": 44},
        {"software": "none", "hardware": "none", "interests": "nul\x00byte"},
    ],
)
async def test_invalid_backgrounds_are_422_everywhere(book: Book, background: dict[str, Any]) -> None:
    token = await book.reader()
    async with book.client(token) as http:
        patched = await http.patch("/api/auth/me", json={"background": background})
        assert patched.status_code == 422, patched.text
        assert patched.headers["content-type"].startswith("application/problem+json")
        registered = await http.post(
            "/api/auth/register",
            json={
                "email": "someone-new@example.org",
                "password": "plum-ferry-quartz-lantern",
                "background": background,
            },
        )
        assert registered.status_code == 422
        personalize = await http.post("/api/pages/personalize", json={"page": "x.md", "background": background})
        assert personalize.status_code == 422
    assert (await _me(book, token))["background"] is None


async def test_guests_and_the_service_token_have_no_profile(book: Book) -> None:
    async with book.client(book.guest()) as http:
        assert (await http.patch("/api/auth/me", json={"background": None})).status_code == 403
        assert (await http.get("/api/auth/me")).json()["background"] is None
    async with book.client() as http:
        assert (await http.patch("/api/auth/me", json={"background": None})).status_code == 401
