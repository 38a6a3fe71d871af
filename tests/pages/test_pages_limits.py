"""The per-reader limit on cache misses, guests with a background (when allowed), and a cache that cannot be
written: the reader still gets the chapter."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from bookchat.config import Settings
from tests.fakes.llm_server import FakeLLMServer
from tests.pages.conftest import CHAPTER, Book, book_app

BEGINNER = {"software": "beginner", "hardware": "none"}


async def test_cache_misses_are_rate_limited_and_cached_chapters_are_free(
    pages_settings: Callable[..., Settings], model: FakeLLMServer
) -> None:
    settings = pages_settings(rate_limit_enabled=True, rate_limit_pages="2/hour", rate_limit_auth="100/minute")
    async with book_app(settings, model) as book:
        token = await book.reader()
        async with book.client(token) as http:
            for language in ("ur", "ar"):
                assert (
                    await http.post("/api/pages/translate", json={"page": book.document_id, "language": language})
                ).status_code == 200
            refused = await http.post("/api/pages/translate", json={"page": book.document_id, "language": "fa"})
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) > 0
            calls = len(model.requests)
            # Already translated: served from the cache, not charged, no model call.
            for _ in range(3):
                cached = await http.post("/api/pages/translate", json={"page": book.document_id, "language": "ur"})
                assert cached.status_code == 200
                assert cached.json()["cached"] is True
            assert len(model.requests) == calls
            streamed = await http.post(
                "/api/pages/translate", json={"page": book.document_id, "language": "fa", "stream": True}
            )
            assert streamed.status_code == 429  # refused before the stream starts
        # Another reader has a budget of their own.
        async with book.client(await book.reader()) as other:
            assert (
                await other.post("/api/pages/translate", json={"page": book.document_id, "language": "fa"})
            ).status_code == 200


async def test_guests_personalise_with_a_background_when_allowed(
    pages_settings: Callable[..., Settings], model: FakeLLMServer
) -> None:
    async with book_app(pages_settings(pages_allow_guests=True), model) as book, book.client(book.guest()) as http:
        without = await http.post("/api/pages/personalize", json={"page": book.document_id})
        assert without.status_code == 401
        assert "give their background" in without.json()["detail"]
        given = await http.post("/api/pages/personalize", json={"page": book.document_id, "background": BEGINNER})
        assert given.status_code == 200
        assert (await http.post("/api/pages/translate", json={"page": book.document_id})).status_code == 200
        features = (await http.get("/api/features")).json()
    assert features["pages"]["guests"] is True


async def test_a_cache_write_that_fails_still_answers(book: Book, model: FakeLLMServer, monkeypatch: Any) -> None:
    path = f"fresh/{uuid.uuid4().hex[:10]}.md"
    await book.ingest(CHAPTER, path)

    async def broken(*args: Any, **kwargs: Any) -> bool:
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")

    monkeypatch.setattr("bookchat.pages.service.store_section", broken)
    async with book.client(await book.reader()) as http:
        first = await http.post("/api/pages/translate", json={"page": path, "language": "ur"})
        assert first.status_code == 200
        assert all(section["status"] == "rewritten" for section in first.json()["sections"])
        monkeypatch.undo()
        # Nothing was cached, so the next request asks the model again (and caches this time).
        second = await http.post("/api/pages/translate", json={"page": path, "language": "ur"})
        assert second.json()["cached"] is False
        third = await http.post("/api/pages/translate", json={"page": path, "language": "ur"})
    assert third.json()["cached"] is True
    assert len(model.requests) == 8


async def test_a_chapter_being_ingested_is_409(book: Book, model: FakeLLMServer) -> None:
    pool = book.app.state.resources.database.pool
    document_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO documents (id, collection, source_path, title, content_hash, chunk_count, embedding_model)"
        " VALUES ($1, $2, $3, 'Pending', 'pending', 0, 'm')",
        document_id,
        book.app.state.settings.collection,
        f"pending/{document_id}.md",
    )
    async with book.client(await book.reader()) as http:
        reply = await http.post("/api/pages/translate", json={"page": str(document_id)})
    assert reply.status_code == 409
    assert reply.json()["code"] == "page-not-ready"
    assert model.requests == []


async def test_a_reader_who_leaves_mid_stream_stops_every_model_call(book: Book, model: FakeLLMServer) -> None:
    import dataclasses

    import httpx

    from tests.chat.fixtures import live_server, wait_for
    from tests.pages.fakes import page_reply

    path = f"fresh/{uuid.uuid4().hex[:10]}.md"
    await book.ingest(CHAPTER, path)

    def slow(body: dict[str, Any]) -> Any:
        reply = page_reply(body)
        return dataclasses.replace(reply, chunk_delay=0.2)

    model.default = slow
    try:
        token = await book.reader()
        async with live_server(book.app) as url:
            headers = {"Authorization": f"Bearer {token}"}
            async with (
                httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http,
                http.stream("POST", "/api/pages/translate", json={"page": path, "stream": True}) as response,
            ):
                assert response.status_code == 200
                raw = ""
                async for chunk in response.aiter_text():
                    raw += chunk
                    if "event: delta" in raw:
                        break
            # Four sections were being written at once; leaving cancels all four model streams.
            await wait_for(lambda: model.streams_cancelled == 4)
    finally:
        model.default = page_reply
    assert model.streams_completed == 0
    pool = book.app.state.resources.database.pool
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM page_sections WHERE document_id = $1",
            uuid.UUID(await pool.fetchval("SELECT id::text FROM documents WHERE source_path = $1", path)),
        )
        == 0
    )
