"""Chapters that are not Markdown, a pinned glossary, and a chapter too long to rewrite at once."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from bookchat.config import Settings
from tests.fakes.llm_server import FakeLLMServer, request_text
from tests.pages.conftest import Book, book_app

HTML = b"""<!doctype html><html><head><title>Wiring</title></head><body>
<h1>Wiring</h1><p>Connect the motor driver to the board.</p>
<h2 id="power">Power</h2><p>Use a separate supply for the motors.</p>
<pre><code>gpio.write(17, HIGH)</code></pre></body></html>"""


async def test_an_html_chapter_is_translated_from_its_loaded_text(book: Book, model: FakeLLMServer) -> None:
    path = f"fresh/{uuid.uuid4().hex[:10]}.html"
    resources = book.app.state.resources
    from bookchat.documents.ingest import IngestPipeline

    pipeline = IngestPipeline(resources.database.pool, resources.retriever, resources.embedder, resources.settings)
    await pipeline.ingest_document(path, HTML)
    async with book.client(await book.reader()) as http:
        reply = await http.post("/api/pages/translate", json={"page": path, "language": "ur"})
    assert reply.status_code == 200, reply.text
    page = reply.json()
    assert "gpio.write(17, HIGH)" in page["markdown"]
    assert "separate supply" in page["markdown"]
    assert "gpio.write" not in "\n".join(request_text(body) for body in model.requests)


async def test_glossary_terms_are_pinned_and_part_of_the_cache_key(
    pages_settings: Callable[..., Settings], model: FakeLLMServer
) -> None:
    async with book_app(pages_settings(pages_glossary="ROS 2,URDF"), model) as book:
        async with book.client(await book.reader()) as http:
            assert (await http.post("/api/pages/translate", json={"page": book.document_id})).status_code == 200
        assert "Always keep these terms exactly as written: ROS 2, URDF." in request_text(model.requests[0])
        pool = book.app.state.resources.database.pool
        variants = await pool.fetch(
            "SELECT DISTINCT variant FROM page_sections WHERE document_id = $1", uuid.UUID(book.document_id)
        )
    assert [row["variant"] for row in variants] == [variants[0]["variant"]]
    assert variants[0]["variant"].startswith("ur;glossary=")


async def test_a_chapter_of_too_many_sections_is_413_before_any_model_call(book: Book, model: FakeLLMServer) -> None:
    path = f"fresh/{uuid.uuid4().hex[:10]}.md"
    await book.ingest("\n\n".join(f"## Part {n}\n\nText {n}." for n in range(401)), path)
    async with book.client(await book.reader()) as http:
        reply = await http.post("/api/pages/translate", json={"page": path})
    assert reply.status_code == 413
    assert reply.json()["code"] == "page-too-long"
    assert model.requests == []
