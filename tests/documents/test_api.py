"""The admin documents API over HTTP: uploads, listing, reads, deletes, rebuilds and every bad input."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bookchat.auth.tokens import TokenCodec
from bookchat.config import Settings
from bookchat.documents import ingest as ingest_module
from bookchat.edge.pagination import encode_cursor
from bookchat.main import create_app
from bookchat.retrieval.embeddings import EmbeddingError
from bookchat.retrieval.store import VectorStoreError

from ..conftest import ADMIN_TOKEN, client_for
from .test_loaders import make_pdf

MAX_UPLOAD = 4096


@pytest.fixture(scope="module")
async def api_app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    """The app (main.py mounts the documents router) with a small upload limit."""
    app = create_app(make_settings(max_upload_bytes=MAX_UPLOAD, chunk_tokens=64, chunk_overlap_tokens=8))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def admin(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(api_app, Authorization=f"Bearer {ADMIN_TOKEN}") as http:
        yield http


def token_for(app: FastAPI, role: Any) -> str:
    codec = getattr(app.state, "token_codec", None) or TokenCodec.from_settings(app.state.settings)
    return str(codec.issue_access(f"user:{uuid.uuid4()}" if role != "guest" else f"guest:{uuid.uuid4()}", role).token)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def upload(http: httpx.AsyncClient, *files: tuple[str, bytes, str]) -> httpx.Response:
    return await http.post("/api/documents", files=[("files", file) for file in files])


async def test_upload_list_get_delete_cycle(admin: httpx.AsyncClient) -> None:
    prefix = f"cycle-{uuid.uuid4().hex[:6]}"
    response = await upload(
        admin,
        (f"{prefix}/a.md", b"# Alpha\n\n## Part\n\nAlpha text about lidar.", "text/markdown"),
        (f"{prefix}/b.txt", b"Beta notes about cameras.", "text/plain"),
        (f"{prefix}/c.pdf", make_pdf(["Gamma page about IMUs"]), "application/pdf"),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["added"], body["updated"], body["unchanged"]) == (3, 0, 0)
    assert {d["source_path"]: d["outcome"] for d in body["documents"]} == {
        f"{prefix}/a.md": "added",
        f"{prefix}/b.txt": "added",
        f"{prefix}/c.pdf": "added",
    }
    assert body["run_id"]

    again = await upload(admin, (f"{prefix}/a.md", b"# Alpha\n\n## Part\n\nAlpha text about lidar.", "text/markdown"))
    assert again.status_code == 200
    assert again.json()["unchanged"] == 1

    changed = await admin.post(
        "/api/documents",
        json={"source_path": f"{prefix}/a.md", "content": "# Alpha\n\nRewritten.", "title": "Alpha!"},
    )
    assert changed.status_code == 201
    assert changed.json()["updated"] == 1

    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1, "prefix": prefix}
        if cursor:
            params["cursor"] = cursor
        page = await admin.get("/api/documents", params=params)
        assert page.status_code == 200, page.text
        seen += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert [d["source_path"] for d in seen] == [f"{prefix}/a.md", f"{prefix}/b.txt", f"{prefix}/c.pdf"]
    alpha = seen[0]
    assert alpha["title"] == "Alpha!"
    assert alpha["status"] == "ready"
    assert alpha["chunk_count"] == 1

    got = await admin.get(f"/api/documents/{alpha['id']}")
    assert got.status_code == 200
    assert got.json()["id"] == alpha["id"]

    deleted = await admin.delete(f"/api/documents/{alpha['id']}")
    assert deleted.status_code == 204
    problem(await admin.get(f"/api/documents/{alpha['id']}"), 404)
    problem(await admin.delete(f"/api/documents/{alpha['id']}"), 404)


async def test_reindex_endpoint(admin: httpx.AsyncClient) -> None:
    await admin.post("/api/documents", json={"source_path": "re/x.md", "content": "# X\n\nReindex me."})
    response = await admin.post("/api/documents/reindex")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["updated"] >= 1
    assert body["chunks"] >= 1


async def test_oversized_uploads_are_413(admin: httpx.AsyncClient) -> None:
    big = b"# Big\n\n" + b"word " * MAX_UPLOAD
    problem(await upload(admin, ("big.md", big, "text/markdown")), 413)
    problem(await admin.post("/api/documents", json={"source_path": "big.md", "content": "x" * (MAX_UPLOAD + 10)}), 413)
    listing = await admin.get("/api/documents", params={"prefix": "big"})
    assert listing.json()["items"] == []


@pytest.mark.parametrize(
    ("name", "data", "content_type"),
    [
        ("image.png", b"\x89PNG\r\n\x1a\n", "image/png"),
        ("data.csv", b"a,b\n1,2", "text/csv"),
        ("noext", b"hello", "application/octet-stream"),
        ("binary.md", b"# x\x00\x00\x01", "text/markdown"),
    ],
)
async def test_unsupported_types_are_415(admin: httpx.AsyncClient, name: str, data: bytes, content_type: str) -> None:
    problem(await upload(admin, (name, data, content_type)), 415)
    assert (await admin.get("/api/documents", params={"prefix": name})).json()["items"] == []


async def test_other_unsupported_bodies_are_415(admin: httpx.AsyncClient) -> None:
    problem(await admin.post("/api/documents", content=b"# x", headers={"content-type": "text/markdown"}), 415)
    problem(await admin.post("/api/documents", json={"source_path": "x.pdf", "content": "%PDF-1.4"}), 415)
    problem(await admin.post("/api/documents", json={"source_path": "x.docx", "content": "hello"}), 415)


async def test_nothing_half_written_when_one_file_is_bad(admin: httpx.AsyncClient) -> None:
    response = await upload(
        admin, ("half/good.md", b"# Good\n\nFine.", "text/markdown"), ("half/bad.png", b"\x89PNG", "image/png")
    )
    problem(response, 415)
    broken = await upload(
        admin,
        ("half/good.md", b"# Good\n\nFine.", "text/markdown"),
        ("half/bad.pdf", b"%PDF-1.4 junk", "application/pdf"),
    )
    problem(broken, 422)
    assert (await admin.get("/api/documents", params={"prefix": "half"})).json()["items"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"source_path": "a.md"},
        {"source_path": "a.md", "content": ""},
        {"source_path": "", "content": "x"},
        {"source_path": "../etc/passwd.md", "content": "x"},
        {"source_path": "/abs/a.md", "content": "x"},
        {"source_path": "a.md", "content": "x", "extra": 1},
        {"source_path": "a.md", "content": "x", "url": "javascript:alert(1)"},
        {"source_path": "a.md", "content": "x", "title": "t" * 501},
        {"source_path": "a.md", "content": "   "},
    ],
)
async def test_invalid_json_is_422(admin: httpx.AsyncClient, body: dict[str, Any]) -> None:
    problem(await admin.post("/api/documents", json=body), 422)


async def test_malformed_requests_are_rejected(admin: httpx.AsyncClient) -> None:
    # Broken JSON is a 400 app-wide (the app's validation handler); schema violations are 422.
    problem(await admin.post("/api/documents", content=b"{not json", headers={"content-type": "application/json"}), 400)
    problem(
        await admin.post("/api/documents", data={"other": "field"}, files=[("files", ("a.md", b"x", "text/markdown"))]),
        422,
    )
    problem(await admin.post("/api/documents", files={"files": (None, b"not a file")}), 422)
    problem(await admin.post("/api/documents", files={"other": (None, b"x")}), 422)
    problem(await admin.post("/api/documents", data={"files": "urlencoded"}), 415)
    problem(await upload(admin, ("empty.md", b"   ", "text/markdown")), 422)
    problem(await upload(admin, ("../up.md", b"# x", "text/markdown")), 422)
    problem(await upload(admin, ("dup.md", b"# x", "text/markdown"), ("dup.md", b"# y", "text/markdown")), 422)


async def test_bad_list_and_id_parameters(admin: httpx.AsyncClient) -> None:
    for params in ({"limit": 0}, {"limit": 101}, {"prefix": "docs\x00"}):
        problem(await admin.get("/api/documents", params=params), 422)
    for cursor in ("!!!", "bm90LWpzb24", encode_cursor("a", "not-a-uuid")):
        assert problem(await admin.get("/api/documents", params={"cursor": cursor}), 400)["code"] == "invalid-cursor"
    problem(await admin.get("/api/documents/not-a-uuid"), 422)
    problem(await admin.get(f"/api/documents/{uuid.uuid4()}"), 404)
    problem(await admin.delete(f"/api/documents/{uuid.uuid4()}"), 404)


async def test_admin_only(api_app: FastAPI) -> None:
    async with client_for(api_app) as anonymous:
        problem(await anonymous.get("/api/documents"), 401)
        problem(await anonymous.post("/api/documents", json={"source_path": "a.md", "content": "x"}), 401)
        problem(await anonymous.post("/api/documents/reindex"), 401)
    async with client_for(api_app, Authorization="Bearer wrong") as wrong:
        problem(await wrong.get("/api/documents"), 401)
    for role in ("user", "guest"):
        async with client_for(api_app, Authorization=f"Bearer {token_for(api_app, role)}") as http:
            problem(await http.get("/api/documents"), 403)
            problem(await http.delete(f"/api/documents/{uuid.uuid4()}"), 403)
            problem(await upload(http, ("a.md", b"# x", "text/markdown")), 403)
    async with client_for(api_app, Authorization=f"Bearer {token_for(api_app, 'admin')}") as admin_user:
        assert (await admin_user.get("/api/documents")).status_code == 200


def test_openapi_documents_both_bodies(api_app: FastAPI) -> None:
    operation = api_app.openapi()["paths"]["/api/documents"]["post"]
    assert set(operation["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert json.dumps(operation).count("source_path") >= 1


async def test_index_failure_is_503_and_keeps_the_previous_version(
    api_app: FastAPI, admin: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(passages: Any) -> None:
        raise VectorStoreError("Qdrant request failed: connection refused")

    assert (await upload(admin, ("down/b.md", b"# B\n\nThe first version.", "text/markdown"))).status_code == 201
    before = (await admin.get("/api/documents", params={"prefix": "down"})).json()["items"]
    monkeypatch.setattr(api_app.state.resources.retriever, "index_passages", broken)
    body = problem(await upload(admin, ("down/a.md", b"# A\n\nText.", "text/markdown")), 503)
    assert body["code"] == "index-unavailable"
    body = problem(await upload(admin, ("down/b.md", b"# B\n\nThe second version.", "text/markdown")), 503)
    assert "previous version" in body["detail"]
    monkeypatch.undo()
    # The new document left nothing; the re-uploaded one is as it was, and still found.
    assert (await admin.get("/api/documents", params={"prefix": "down"})).json()["items"] == before
    hits = (await admin.post("/api/search", json={"query": "first version", "filters": {"path_prefix": "down"}})).json()
    assert any("first version" in hit["text"] for hit in hits["hits"])


async def test_a_running_ingestion_is_409(
    api_app: FastAPI, admin: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "API_LOCK_SECONDS", 0.2)
    resources = api_app.state.resources
    key = ingest_module.ingest_lock_key(resources.settings.collection)
    async with resources.database.pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT pg_advisory_xact_lock($1)", key)
        response = await upload(admin, ("busy.md", b"# Busy", "text/markdown"))
        assert problem(response, 409)["code"] == "ingestion-running"
        assert response.headers["retry-after"] == "10"
        problem(await admin.post("/api/documents/reindex"), 409)


async def test_a_failed_rebuild_is_503_and_the_live_index_answers(
    api_app: FastAPI, admin: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        await upload(admin, ("rebuild/a.md", b"# A\n\nKept through a failed rebuild.", "text/markdown"))
    ).status_code == 201
    retriever = api_app.state.resources.retriever
    original = retriever.on_collection

    def quota_exhausted(name: str) -> Any:
        target = original(name)

        async def broken(passages: Any) -> None:
            raise EmbeddingError("the embedding API answered 429: quota exhausted")

        target.index_passages = broken
        return target

    monkeypatch.setattr(retriever, "on_collection", quota_exhausted)
    body = problem(await admin.post("/api/documents/reindex"), 503)
    assert "live index is unchanged" in body["detail"]
    monkeypatch.undo()
    hits = (await admin.post("/api/search", json={"query": "kept through a failed rebuild"})).json()["hits"]
    assert hits[0]["source_path"] == "rebuild/a.md"
