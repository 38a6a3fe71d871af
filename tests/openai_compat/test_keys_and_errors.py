"""API-key digests and OpenAI-format errors for what the client library never sends (bad JSON, crashes)."""

from __future__ import annotations

import hashlib
import logging

import httpx2
import pytest
from fastapi import FastAPI

from bookchat.openai_compat.keys import hash_api_key, key_digests, match_api_key
from bookchat.openai_compat.service import CompletionService
from tests.openai_compat.conftest import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def test_key_digests(caplog: pytest.LogCaptureFixture) -> None:
    key_digests.cache_clear()
    with caplog.at_level(logging.ERROR):
        digests = key_digests(("plain-key", " ", hash_api_key("hashed-key"), "sha256:nothex", "sha256:abcd"))
    assert digests == (hashlib.sha256(b"plain-key").digest(), hashlib.sha256(b"hashed-key").digest())
    assert "entry 4" in caplog.text
    assert "entry 5" in caplog.text
    assert "nothex" not in caplog.text  # a configured value is never logged


def test_match_api_key() -> None:
    configured = ["first-key", hash_api_key("second-key")]
    first = match_api_key("first-key", configured)
    second = match_api_key("second-key", configured)
    assert first is not None
    assert second is not None
    assert first.id == "apikey:" + hashlib.sha256(b"first-key").hexdigest()[:16]
    assert first.role == "user"
    assert not first.is_service  # rate limited like any reader
    assert first.id != second.id
    assert match_api_key("first-key ", configured) is None
    assert match_api_key(hash_api_key("second-key"), configured) is None  # the digest is not a key
    assert match_api_key("anything", []) is None


async def post(app: FastAPI, body: bytes | str, path: str = "/v1/chat/completions") -> httpx2.Response:
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://testserver") as http:
        return await http.post(path, content=body, headers={**AUTH, "Content-Type": "application/json"})


async def test_invalid_json_and_missing_fields(compat: FastAPI) -> None:
    broken = await post(compat, b'{"model": "bookchat", "messages": [')
    assert broken.status_code == 400
    assert broken.json()["error"]["code"] == "invalid_json"
    missing = await post(compat, '{"messages": [{"role": "user", "content": "Hi"}]}')
    assert missing.status_code == 400
    assert missing.json()["error"] == {
        "message": "Missing required parameter: 'model'.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "missing_required_parameter",
    }


async def test_failed_stream_starts_release_their_slot(compat: FastAPI) -> None:
    # More refused streams than MAX_CONCURRENT_STREAMS (3) and within the chat limit (4/minute): a leaked
    # slot would turn the fourth into a 429 "too-many-streams".
    body = '{"model": "nope", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}'
    statuses = [(await post(compat, body)).status_code for _ in range(4)]
    assert statuses == [404, 404, 404, 404]


async def test_an_unexpected_failure_is_a_500_in_openai_format(
    compat: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: CompletionService) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(CompletionService, "models", broken)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=compat), base_url="http://testserver") as http:
        response = await http.get("/v1/models", headers=AUTH)
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert "secret" not in response.text
