"""POST /api/pages/personalize and /translate over HTTP, with the fake model behind the Agents SDK."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN, client_for
from tests.fakes.llm_server import Error, FakeLLMServer, request_text
from tests.pages.conftest import CHAPTER, Book
from tests.pages.fakes import URDU_PREFIX, adding_heading, dropping_tokens, page_reply

BEGINNER = {"software": "beginner", "hardware": "hobbyist"}
FENCE = re.compile(r"^```python\n.*?^```$", re.M | re.S)
MATH = "$$\nT = \\frac{1}{f}\n$$"


def _fresh_path() -> str:
    return f"fresh/{uuid.uuid4().hex[:10]}.md"


def _code_blocks(text: str) -> list[str]:
    return FENCE.findall(text)


def _heading_lines(markdown: str) -> list[str]:
    lines, fence = [], False
    for line in markdown.split("\n"):
        if line.startswith("```"):
            fence = not fence
        elif not fence and re.match(r"^#{1,6} ", line):
            lines.append(line)
    return lines


def _events(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.strip().split("\n\n"):
        name = re.search(r"^event: (.+)$", block, re.M)
        data = re.search(r"^data: (.+)$", block, re.M)
        assert name, block
        assert data, block
        events.append((name.group(1), json.loads(data.group(1))))
    return events


async def test_translation_keeps_code_math_links_and_anchors_and_is_rtl(book: Book, model: FakeLLMServer) -> None:
    path = _fresh_path()
    await book.ingest(CHAPTER, path)
    token = await book.reader()
    async with book.client(token) as http:
        reply = await http.post("/api/pages/translate", json={"page": path})
    assert reply.status_code == 200, reply.text
    page = reply.json()
    assert page["language"] == "ur"
    assert page["direction"] == "rtl"
    assert page["kind"] == "translate"
    markdown = page["markdown"]
    # Code, math, links, images, inline code and admonition markers are byte for byte the original's.
    assert _code_blocks(markdown) == _code_blocks(CHAPTER)
    assert len(_code_blocks(markdown)) == 1
    for piece in (MATH, "$f = 1/T$", "[the ROS docs](https://docs.ros.org/en/rolling/)", "![graph](./img/graph.png)",
                  "`rclpy.create_node()`", ":::tip Quality of service", "\n:::\n"):  # fmt: skip
        assert piece in markdown, piece
    # Headings translated, in order, with the original anchors (h1 has none, an explicit id is kept).
    assert _heading_lines(markdown) == [
        f"# {URDU_PREFIX} Nodes and topics",
        f"## {URDU_PREFIX} Writing a publisher {{#writing-a-publisher}}",
        f"## {URDU_PREFIX} Timing {{#timing-rules}}",
        f"## {URDU_PREFIX} Wiring it up {{#wiring-it-up}}",
    ]
    assert [s["anchor"] for s in page["sections"]] == [None, "writing-a-publisher", "timing-rules", "wiring-it-up"]
    assert page["sections"][1]["html"].startswith('<h2 id="writing-a-publisher">')
    assert URDU_PREFIX + " A publisher sends messages" in markdown
    # The model saw prose and tokens, never the code, the math or the link targets.
    sent = "\n".join(request_text(body) for body in model.requests)
    assert "⟦" in sent
    assert "Urdu" in sent
    for secret in ('create_node("talker")', "frac{1}{f}", "docs.ros.org", "graph.png", ":::tip"):
        assert secret not in sent, secret
    assert page["usage"]["model_calls"] == len(model.requests) == 4
    assert page["cached"] is False
    assert page["content_hash"]


async def test_personalisation_keeps_headings_and_uses_the_background(book: Book, model: FakeLLMServer) -> None:
    path = _fresh_path()
    await book.ingest(CHAPTER, path)
    token = await book.reader({"software": "none", "hardware": "hobbyist", "interests": "rovers"})
    async with book.client(token) as http:
        reply = await http.post("/api/pages/personalize", json={"page": path})
    assert reply.status_code == 200, reply.text
    page = reply.json()
    assert page["direction"] == "ltr"
    assert page["language"] is None
    assert _heading_lines(page["markdown"]) == _heading_lines(CHAPTER)
    assert _code_blocks(page["markdown"]) == _code_blocks(CHAPTER)
    assert "[has never programmed] A publisher sends messages" in page["markdown"]
    instructions = request_text(model.requests[0])
    assert "has never programmed" in instructions
    assert "builds electronics" in instructions
    assert "rovers" in instructions


async def test_second_identical_request_and_same_background_make_no_model_call(
    book: Book, model: FakeLLMServer
) -> None:
    path = _fresh_path()
    await book.ingest(CHAPTER, path)
    first_reader, second_reader = await book.reader(BEGINNER), await book.reader(BEGINNER)
    async with book.client(first_reader) as http:
        first = (await http.post("/api/pages/personalize", json={"page": path})).json()
    calls = len(model.requests)
    assert calls == 4
    async with book.client(first_reader) as http:
        again = (await http.post("/api/pages/personalize", json={"page": path})).json()
    async with book.client(second_reader) as http:
        other = (await http.post("/api/pages/personalize", json={"page": path})).json()
    assert len(model.requests) == calls
    for cached in (again, other):
        assert cached["cached"] is True
        assert cached["usage"]["model_calls"] == 0
        assert cached["markdown"] == first["markdown"]
        assert all(section["cached"] for section in cached["sections"])
    # Another background is another bucket: the model is asked again.
    advanced = await book.reader({"software": "advanced", "hardware": "professional"})
    async with book.client(advanced) as http:
        assert (await http.post("/api/pages/personalize", json={"page": path})).json()["cached"] is False
    assert len(model.requests) == calls * 2


async def test_a_changed_chapter_is_never_served_an_old_result_and_deleted_rows_go(
    book: Book, model: FakeLLMServer
) -> None:
    path = _fresh_path()
    document_id = await book.ingest(CHAPTER, path)
    token = await book.reader()
    async with book.client(token) as http:
        old = (await http.post("/api/pages/translate", json={"page": path, "language": "ur"})).json()
        await book.ingest(CHAPTER.replace("Raspberry Pi", "Arduino"), path)
        new = (await http.post("/api/pages/translate", json={"page": path, "language": "ur"})).json()
    assert new["content_hash"] != old["content_hash"]
    assert "Arduino" in new["markdown"]
    assert "Raspberry Pi" not in new["markdown"]
    assert new["cached"] is False
    assert len(model.requests) == 8
    pool = book.app.state.resources.database.pool
    rows = await pool.fetch(
        "SELECT DISTINCT content_hash FROM page_sections WHERE document_id = $1", uuid.UUID(document_id)
    )
    assert [row["content_hash"] for row in rows] == [new["content_hash"]]  # the old text's rows are gone
    async with book.client(ADMIN_TOKEN) as admin:
        assert (await admin.delete(f"/api/documents/{document_id}")).status_code == 204
    assert await pool.fetchval("SELECT count(*) FROM page_sections WHERE document_id = $1", uuid.UUID(document_id)) == 0


async def test_a_lost_placeholder_is_retried_once(book: Book, model: FakeLLMServer) -> None:
    path = _fresh_path()
    await book.ingest("## Only section\n\nUse `ros2 run` and [the guide](https://x.org/guide).\n", path)
    model.script(dropping_tokens, page_reply)
    async with book.client(await book.reader()) as http:
        page = (await http.post("/api/pages/translate", json={"page": path, "language": "fa"})).json()
    section = page["sections"][0]
    assert section["status"] == "rewritten"
    assert page["usage"]["model_calls"] == 2
    assert "`ros2 run`" in page["markdown"]
    assert "[the guide](https://x.org/guide)" in page["markdown"]


@pytest.mark.parametrize("broken", [dropping_tokens, adding_heading])
async def test_twice_broken_section_falls_back_to_the_original_with_a_note(
    book: Book, model: FakeLLMServer, broken: Any
) -> None:
    path = _fresh_path()
    source = "## Only section\n\nUse `ros2 run` and [the guide](https://x.org/guide).\n"
    await book.ingest(source, path)
    model.script(broken, broken)
    async with book.client(await book.reader()) as http:
        page = (await http.post("/api/pages/translate", json={"page": path, "language": "ar"})).json()
        section = page["sections"][0]
        assert section["status"] == "original"
        assert section["note"]
        assert section["markdown"] == source.strip("\n")
        assert page["usage"]["model_calls"] == 2
        # A fallback is not cached: the next request tries the model again.
        again = (await http.post("/api/pages/translate", json={"page": path, "language": "ar"})).json()
    assert again["sections"][0]["status"] == "rewritten"
    assert again["usage"]["model_calls"] == 1


async def test_guests_and_anonymous_callers_are_refused_with_a_reason(book: Book, model: FakeLLMServer) -> None:
    for token in (None, book.guest()):
        async with book.client(token) as http:
            for path in ("/api/pages/personalize", "/api/pages/translate"):
                reply = await http.post(path, json={"page": book.document_id})
                assert reply.status_code == 401, reply.text
                assert reply.headers["content-type"].startswith("application/problem+json")
                assert "signed-in readers" in reply.json()["detail"]
    async with book.client(ADMIN_TOKEN) as http:
        assert (await http.post("/api/pages/translate", json={"page": book.document_id})).status_code == 403
    assert model.requests == []


async def test_personalising_without_a_background_says_how_to_give_one(book: Book, model: FakeLLMServer) -> None:
    async with book.client(await book.reader()) as http:
        reply = await http.post("/api/pages/personalize", json={"page": book.document_id})
        assert reply.status_code == 409
        assert "PATCH /api/auth/me" in reply.json()["detail"]
        given = await http.post("/api/pages/personalize", json={"page": book.document_id, "background": BEGINNER})
    assert given.status_code == 200


async def test_pages_are_found_by_id_path_and_url_and_unknown_ones_are_404(book: Book, model: FakeLLMServer) -> None:
    token = await book.reader()
    hashes = set()
    async with book.client(token) as http:
        for page in (
            book.document_id,
            "module-1/nodes.md",
            "https://book.example.org/docs/module-1/nodes#writing-a-publisher",
            "http://localhost:3000/docs/module-1/nodes/?x=1",
            "/docs/module-1/nodes",
        ):
            reply = await http.post("/api/pages/translate", json={"page": page, "language": "de"})
            assert reply.status_code == 200, (page, reply.text)
            assert reply.json()["document_id"] == book.document_id
            assert reply.json()["direction"] == "ltr"
            hashes.add(reply.json()["content_hash"])
        for page in ("nope.md", str(uuid.uuid4()), "https://book.example.org/docs/nope"):
            missing = await http.post("/api/pages/translate", json={"page": page})
            assert missing.status_code == 404
            assert missing.json()["code"] == "page-not-found"
        for bad in ({"page": ""}, {"page": "x" * 2001}, {"page": "a", "language": "not a tag"}, {"page": "a", "x": 1}):
            assert (await http.post("/api/pages/translate", json=bad)).status_code == 422
    assert len(hashes) == 1


async def test_stream_sends_meta_sections_in_order_and_done(book: Book, model: FakeLLMServer) -> None:
    path = _fresh_path()
    await book.ingest(CHAPTER, path)
    async with book.client(await book.reader()) as http:
        reply = await http.post("/api/pages/translate", json={"page": path, "language": "ur", "stream": True})
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = _events(reply.text)
        names = [name for name, _ in events]
        assert names[0] == "meta"
        assert names[-1] == "done"
        assert "delta" in names
        meta, done = events[0][1], events[-1][1]
        assert meta["direction"] == "rtl"
        assert meta["section_count"] == 4
        assert meta["content_hash"] == done["content_hash"]
        sections = [data for name, data in events if name == "section"]
        assert [s["index"] for s in sections] == [0, 1, 2, 3]
        # Deltas of a section come before its final text, never after.
        order = [(name, data["index"]) for name, data in events if name in ("delta", "section")]
        for position, (name, index) in enumerate(order):
            if name == "delta":
                assert ("section", index) in order[position:]
        # The same chapter again, from the cache: no deltas, `cached` everywhere.
        cached = _events((await http.post("/api/pages/translate", json={"page": path, "stream": True})).text)
    assert [name for name, _ in cached] == ["meta", "section", "section", "section", "section", "done"]
    assert cached[0][1]["cached_sections"] == 4
    assert cached[-1][1]["cached"] is True


async def test_model_failure_is_a_problem_or_an_error_event(book: Book, model: FakeLLMServer) -> None:
    path = _fresh_path()
    await book.ingest("## One\n\nText one.\n", path)
    async with book.client(await book.reader()) as http:
        model.script(Error(500))
        failed = await http.post("/api/pages/translate", json={"page": path, "language": "ur"})
        assert failed.status_code == 502
        assert failed.json()["code"] == "llm-error"
        model.script(Error(429, retry_after=7))
        busy = await http.post("/api/pages/translate", json={"page": path, "language": "ur"})
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "7"
        model.script(Error(500))
        streamed = _events((await http.post("/api/pages/translate", json={"page": path, "stream": True})).text)
        assert [name for name, _ in streamed] == ["meta", "error"]
        assert streamed[1][1]["code"] == "llm-error"
        # Nothing broken was cached: the next request gets the translation.
        ok = await http.post("/api/pages/translate", json={"page": path})
    assert ok.status_code == 200
    assert ok.json()["sections"][0]["status"] == "rewritten"


async def test_long_chapters_are_split_and_processed_in_order(
    pages_settings: Any, model: FakeLLMServer, book: Book
) -> None:
    from tests.pages.conftest import book_app

    async with book_app(pages_settings(pages_section_chars=500, pages_concurrency=2), model) as small:
        path = _fresh_path()
        long_chapter = "# Long\n\n" + "\n\n".join(
            f"## Part {n}\n\n" + "\n\n".join(f"Paragraph {n}.{k} " + "word " * 40 for k in range(4)) for n in range(5)
        )
        long_chapter += "\n\n```python\nprint('kept')\n```\n"
        await small.ingest(long_chapter, path)
        async with small.client(await small.reader()) as http:
            page = (await http.post("/api/pages/translate", json={"page": path})).json()
    sections = page["sections"]
    assert len(sections) > 10
    assert [s["index"] for s in sections] == list(range(len(sections)))
    assert all(len(s["markdown"]) < 700 for s in sections[:-1])
    assert "```python\nprint('kept')\n```" in page["markdown"]
    assert [n for n in range(5) if f"Part {n} {{#part-{n}}}" in page["markdown"]] == list(range(5))
    assert sum(s["heading"] is None and s["index"] > 0 for s in sections) > 0  # continuation parts


async def test_no_model_means_503_and_hidden_buttons(book: Book, make_app: Any, model: FakeLLMServer) -> None:
    async with make_app() as plain:
        token = await Book(plain, model, "").reader()
        async with client_for(plain) as http:
            features = (await http.get("/api/features")).json()
            assert features["llm"] is False
            assert features["pages"]["personalize"] is False
            for path in ("/api/pages/personalize", "/api/pages/translate"):
                assert (await http.post(path, json={"page": "x.md"})).status_code == 401
                reply = await http.post(path, json={"page": "x.md"}, headers={"Authorization": f"Bearer {token}"})
                assert reply.status_code == 503
                assert reply.headers["content-type"].startswith("application/problem+json")
                assert reply.json()["code"] == "llm-required"
                assert "language model" in reply.json()["detail"]
                assert "BOOKCHAT_LLM" in reply.json()["detail"]
    async with book.client() as http:
        features = (await http.get("/api/features")).json()
    assert features["pages"] == {
        "personalize": True, "translate": True, "default_language": "ur", "direction": "rtl", "guests": False,
    }  # fmt: skip
