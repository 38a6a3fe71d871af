"""Ingestion against real PostgreSQL and Qdrant: idempotency, edits, prune, crashes, rebuilds, locking."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bookchat.documents import ingest as ingest_module
from bookchat.documents import repository as repo
from bookchat.documents.discovery import IngestError, discover
from bookchat.documents.ingest import IngestBusy, IngestPipeline
from bookchat.documents.ingest_summary import IngestProgress
from bookchat.documents.preparation import document_id_for
from bookchat.retrieval.search import SearchFilters

from .conftest import assert_consistent, hold_ingest_lock, section, stored_points, stored_rows, write


def make_book(root: Path) -> Path:
    book = root / "book"
    write(book, "index.md", "---\ntitle: Home\n---\n\n# Home\n\n" + section("Welcome", 6, "robot"))
    write(
        book,
        "module-1/01-sensors.mdx",
        "import Tabs from '@theme/Tabs';\n\n# Sensors\n\n"
        + section("Lidar", 12, "lidar")
        + section("Camera", 12, "camera")
        + "```python\nprint('imu')\n```\n",
    )
    write(book, "notes.txt", "Plain notes about gazebo worlds.\n\nSecond paragraph about physics.")
    write(book, "module-1/_partial.mdx", "Imported elsewhere.")
    (book / "img").mkdir()
    (book / "img" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (book / ".hidden").mkdir()
    write(book, ".hidden/secret.md", "# hidden")
    return book


async def count_runs(pipeline: IngestPipeline) -> list[tuple[str, int, int, int, int, int]]:
    async with pipeline.pool.acquire() as conn:
        records = await conn.fetch(
            "SELECT status, added, updated, unchanged, removed, chunks FROM ingest_runs "
            "WHERE collection = $1 ORDER BY started_at",
            pipeline.collection,
        )
    return [tuple(record) for record in records]


async def test_ingest_twice_second_run_touches_nothing(
    pipeline: IngestPipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = make_book(tmp_path)
    events: list[IngestProgress] = []
    first = await pipeline.ingest_paths([book], base_url="https://b.example.org/docs/", progress=events.append)
    assert (first.added, first.updated, first.unchanged, first.removed) == (3, 0, 0, 0)
    assert first.chunks > 3
    assert {(s.source_path, s.reason) for s in first.skipped} == {
        ("book/img/logo.png", "unsupported-type"),
        ("book/module-1/_partial.mdx", "partial"),
    }
    assert events[0].phase == "scan"
    assert events[0].total == 3
    assert events[-1].phase == "done"
    completed = [e.completed for e in events if e.phase == "document"]
    assert completed == [1, 2, 3]
    await assert_consistent(pipeline)
    points = await stored_points(pipeline)
    sensors = [p for p in points if p["source_path"] == "book/module-1/01-sensors.mdx"]
    assert sensors[0]["document_id"] == document_id_for(pipeline.collection, "book/module-1/01-sensors.mdx")
    assert sensors[0]["title"] == "Sensors"
    assert {p["url"] for p in sensors} >= {
        "https://b.example.org/docs/module-1/sensors#lidar",
        "https://b.example.org/docs/module-1/sensors#camera",
    }
    assert sensors[-1]["text"].endswith("```python\nprint('imu')\n```")
    assert next(p["url"] for p in points if p["source_path"] == "book/index.md") == (
        "https://b.example.org/docs/#welcome"
    )

    calls: list[Any] = []
    original = pipeline.retriever.index_passages

    async def spy(passages: Any) -> None:
        calls.append(passages)
        await original(passages)

    monkeypatch.setattr(pipeline.retriever, "index_passages", spy)
    second = await pipeline.ingest_paths([book], base_url="https://b.example.org/docs")
    assert (second.added, second.updated, second.unchanged, second.chunks) == (0, 0, 3, 0)
    assert calls == []
    assert await stored_points(pipeline) == points
    assert await count_runs(pipeline) == [("ok", 3, 0, 0, 0, first.chunks), ("ok", 0, 0, 3, 0, 0)]

    # Another base URL changes every payload, so every document is rewritten.
    third = await pipeline.ingest_paths([book], base_url="https://other.example.org")
    assert third.updated == 3


async def test_editing_one_file_rewrites_only_its_chunks(pipeline: IngestPipeline, tmp_path: Path) -> None:
    book = make_book(tmp_path)
    await pipeline.ingest_paths([book])
    before = await stored_points(pipeline)
    sensors_id = document_id_for(pipeline.collection, "book/module-1/01-sensors.mdx")
    old_count = len([p for p in before if p["document_id"] == sensors_id])
    write(book, "module-1/01-sensors.mdx", "# Sensors\n\n" + section("IMU", 3, "imu"))

    summary = await pipeline.ingest_paths([book])
    assert (summary.added, summary.updated, summary.unchanged) == (0, 1, 2)
    after = await stored_points(pipeline)
    new = [p for p in after if p["document_id"] == sensors_id]
    assert 0 < len(new) < old_count
    assert all("imu" in p["text"] for p in new)
    assert [p for p in after if p["document_id"] != sensors_id] == [p for p in before if p["document_id"] != sensors_id]
    rows = await stored_rows(pipeline)
    assert rows["book/module-1/01-sensors.mdx"].chunk_count == len(new)
    await assert_consistent(pipeline)
    hits = await pipeline.retriever.search("lidar fact", filters=SearchFilters(document_ids=(sensors_id,)))
    assert all("lidar" not in hit.text for hit in hits)


async def test_prune_only_within_the_ingested_roots(pipeline: IngestPipeline, tmp_path: Path) -> None:
    book = make_book(tmp_path)
    other = tmp_path / "other"
    write(other, "guide.md", "# Guide\n\nA separate corpus root.")
    await pipeline.ingest_paths([book, other])
    await pipeline.ingest_document("uploads/extra.md", "# Extra\n\nUploaded through the API.")
    # A single file of an ingested folder keeps the name the folder's ingestion gave it.
    single = await pipeline.ingest_paths([book / "module-1" / "01-sensors.mdx"], prune=True)
    assert [(d.source_path, d.outcome) for d in single.documents] == [("book/module-1/01-sensors.mdx", "unchanged")]
    (book / "notes.txt").unlink()
    (book / "module-1" / "01-sensors.mdx").unlink()

    kept = await pipeline.ingest_paths([book])
    assert (kept.removed, kept.unchanged) == (0, 1)
    assert "book/notes.txt" in await stored_rows(pipeline)

    # A sub-folder prunes only below itself.
    write(book, "module-1/02-new.md", "# New\n\nFresh page.")
    scoped = await pipeline.ingest_paths([book / "module-1"], prune=True)
    assert (scoped.added, scoped.removed) == (1, 1)
    assert [d.source_path for d in scoped.documents if d.outcome == "removed"] == ["book/module-1/01-sensors.mdx"]

    pruned = await pipeline.ingest_paths([book], prune=True)
    assert pruned.removed == 1
    assert pruned.unchanged == 2
    rows = await stored_rows(pipeline)
    assert sorted(rows) == ["book/index.md", "book/module-1/02-new.md", "other/guide.md", "uploads/extra.md"]
    await assert_consistent(pipeline)
    assert await count_runs(pipeline)


def failing_after(original: Any, failing_call: int) -> Any:
    """`index_passages` that writes half of its `failing_call`-th batch and then raises, like a dying embedder."""
    calls = 0

    async def failing(passages: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == failing_call:
            await original(passages[: len(passages) // 2])
            raise RuntimeError("embedder crashed")
        await original(passages)

    return failing


async def test_a_failed_batch_is_undone_and_the_rest_kept(
    pipeline: IngestPipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = make_book(tmp_path)
    for i in range(4):
        write(book, f"extra/page-{i}.md", f"# Page {i}\n\n" + section("Body", 8, f"topic{i}"))
    monkeypatch.setattr(ingest_module, "BATCH_CHUNKS", 3)
    original = pipeline.retriever.index_passages
    monkeypatch.setattr(pipeline.retriever, "index_passages", failing_after(original, 3))
    with pytest.raises(RuntimeError, match="embedder crashed"):
        await pipeline.ingest_paths([book])
    runs = await count_runs(pipeline)
    assert runs[-1][0] == "failed"
    # The batches before the failure are complete; the failed one left neither rows nor points.
    await assert_consistent(pipeline)
    assert 0 < len(await stored_rows(pipeline)) < 7

    monkeypatch.setattr(pipeline.retriever, "index_passages", original)
    await pipeline.ingest_paths([book])
    await assert_consistent(pipeline)
    assert len(await stored_rows(pipeline)) == 7


async def test_a_crash_half_way_is_repaired_by_the_next_run(
    pipeline: IngestPipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = make_book(tmp_path)
    for i in range(4):
        write(book, f"extra/page-{i}.md", f"# Page {i}\n\n" + section("Body", 8, f"topic{i}"))
    await pipeline.ingest_paths([book])
    before = {row.source_path: row for row in (await stored_rows(pipeline)).values()}
    for i in range(4):
        write(book, f"extra/page-{i}.md", f"# Page {i} again\n\n" + section("Changed", 9, f"other{i}"))
    monkeypatch.setattr(ingest_module, "BATCH_CHUNKS", 3)
    original = pipeline.retriever.index_passages
    monkeypatch.setattr(pipeline.retriever, "index_passages", failing_after(original, 2))

    async def process_died(conn: Any, batch: Any) -> None:  # a killed process undoes nothing
        return None

    monkeypatch.setattr(pipeline, "_discard", process_died)
    with pytest.raises(RuntimeError, match="embedder crashed"):
        await pipeline.ingest_paths([book])
    rows = await stored_rows(pipeline)
    # No row claims what the index lacks: the interrupted documents still serve their previous version.
    assert any(row.needs_cleanup for row in rows.values())
    for row in rows.values():
        if row.needs_cleanup:
            assert (row.content_hash, row.generation) == (
                before[row.source_path].content_hash,
                before[row.source_path].generation,
            )
    hits = await pipeline.retriever.search("topic0 topic1 topic2 topic3", limit=20)
    assert hits, "the previous version stays searchable"

    monkeypatch.undo()
    summary = await pipeline.ingest_paths([book])
    assert summary.added + summary.updated > 0
    await assert_consistent(pipeline)
    rows = await stored_rows(pipeline)
    assert len(rows) == 7
    assert len({p["id"] for p in await stored_points(pipeline)}) == sum(r.chunk_count for r in rows.values())


async def test_reindex_rebuilds_and_keeps_documents_without_files(pipeline: IngestPipeline, tmp_path: Path) -> None:
    book = make_book(tmp_path)
    await pipeline.ingest_paths([book])
    await pipeline.ingest_document("uploads/extra.md", "# Extra\n\nUploaded through the API.", title="Extra page")
    before = await stored_points(pipeline)

    summary = await pipeline.ingest_paths([book], reindex=True)
    assert summary.updated == 4  # the three files read again, and the upload rebuilt from its stored bytes
    assert await stored_points(pipeline) == before
    store = pipeline.retriever.store
    physical = await store.physical_name()
    assert physical is not None
    assert physical.startswith(f"{store.collection}--")
    await assert_consistent(pipeline)

    rebuilt = await pipeline.reindex()
    assert rebuilt.chunks == len(before)
    assert rebuilt.updated == 4
    assert await stored_points(pipeline) == before
    await assert_consistent(pipeline)
    hits = await pipeline.retriever.search("uploaded through the api", limit=1)
    assert hits[0].title == "Extra page"


async def test_a_wiped_collection_is_refilled(pipeline: IngestPipeline, tmp_path: Path) -> None:
    book = make_book(tmp_path)
    await pipeline.ingest_paths([book])
    store = pipeline.retriever.store
    await store.client.delete_collection(store.collection)
    await pipeline.retriever.ensure_collection()
    summary = await pipeline.ingest_paths([book])
    assert summary.updated == 3
    await assert_consistent(pipeline)


async def test_the_lock_keeps_two_ingestions_apart(
    pipeline: IngestPipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = make_book(tmp_path)
    monkeypatch.setattr(ingest_module, "API_LOCK_SECONDS", 0.2)
    async with hold_ingest_lock(pipeline):
        with pytest.raises(IngestBusy):
            await pipeline.ingest_document("a.md", "# A\n\ntext")
        events: list[IngestProgress] = []
        task = asyncio.create_task(pipeline.ingest_paths([book], progress=events.append))
        await asyncio.sleep(0.5)
        assert not task.done()
        assert [e.phase for e in events] == ["scan", "wait"]
    summary = await asyncio.wait_for(task, 60)
    assert summary.added == 3


async def test_delete_document_removes_points_then_row(pipeline: IngestPipeline, tmp_path: Path) -> None:
    outcome = await pipeline.ingest_document("a/b.md", "# B\n\nSome text.")
    assert outcome.outcome == "added"
    assert outcome.chunks == 1
    again = await pipeline.ingest_document("a/b.md", "# B\n\nSome text.")
    assert again.outcome == "unchanged"
    from uuid import UUID

    assert await pipeline.delete_document(UUID(outcome.document_id))
    assert not await pipeline.delete_document(UUID(outcome.document_id))
    assert await stored_points(pipeline) == []
    assert await stored_rows(pipeline) == {}


async def test_a_failed_reupload_keeps_the_previous_version(
    pipeline: IngestPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    await pipeline.ingest_document("a.md", "# A\n\nThe first version speaks of lighthouses.")
    before = await stored_rows(pipeline)
    original = pipeline.retriever.index_passages
    monkeypatch.setattr(pipeline.retriever, "index_passages", failing_after(original, 1))
    with pytest.raises(RuntimeError):
        await pipeline.ingest_document("a.md", "# A\n\nThe second version speaks of submarines.\n\n" * 3)
    assert await stored_rows(pipeline) == before
    await assert_consistent(pipeline)
    hits = await pipeline.retriever.search("lighthouses", limit=1)
    assert "lighthouses" in hits[0].text


async def test_a_database_failure_before_the_switch_keeps_the_previous_version(
    pipeline: IngestPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    await pipeline.ingest_document("a.md", "# A\n\nThe first version speaks of lighthouses.")
    before = await stored_rows(pipeline)

    async def database_gone(*args: Any) -> None:
        raise ConnectionResetError("PostgreSQL went away")

    monkeypatch.setattr(repo, "finish_writes", database_gone)
    with pytest.raises(ConnectionResetError):
        await pipeline.ingest_document("a.md", "# A\n\nThe second version speaks of submarines.")
    monkeypatch.undo()
    rows = await stored_rows(pipeline)
    assert {path: (row.content_hash, row.generation) for path, row in rows.items()} == {
        path: (row.content_hash, row.generation) for path, row in before.items()
    }
    await assert_consistent(pipeline)
    assert "lighthouses" in (await pipeline.retriever.search("lighthouses", limit=1))[0].text


async def test_old_chunks_left_by_a_failed_clean_up_go_on_the_next_run(
    pipeline: IngestPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    await pipeline.ingest_document("a.md", "# A\n\nThe first version speaks of lighthouses.")
    original = pipeline.retriever.delete_document

    async def qdrant_gone(document_id: str, **kwargs: Any) -> None:
        if kwargs.get("except_generation") is not None:
            raise RuntimeError("qdrant went away")
        await original(document_id, **kwargs)

    monkeypatch.setattr(pipeline.retriever, "delete_document", qdrant_gone)
    outcome = await pipeline.ingest_document("a.md", "# A\n\nThe second version speaks of submarines.")
    assert outcome.outcome == "updated"  # the new version is live; only the old chunks wait for deletion
    (row,) = (await stored_rows(pipeline)).values()
    assert row.needs_cleanup
    monkeypatch.undo()
    await pipeline.ingest_document("b.md", "# B\n\nAnother page.")
    await assert_consistent(pipeline)


def test_discover_uses_the_docusaurus_docs_folder_as_root(tmp_path: Path) -> None:
    site = tmp_path / "website"
    write(site, "docusaurus.config.ts", "export default {};")
    write(site, "docs/module-1/01-intro.md", "# Intro")
    write(site, "docs/index.md", "# Home")
    found = discover([site / "docs" / "module-1"])
    assert [(f.source_path, f.doc_path) for f in found.files] == [("docs/module-1/01-intro.md", "module-1/01-intro.md")]
    assert found.scopes == ["docs/module-1"]
    single = discover([site / "docs" / "index.md"])
    assert [(f.source_path, f.doc_path) for f in single.files] == [("docs/index.md", "index.md")]
    assert single.scopes == []
    with pytest.raises(IngestError):
        discover([tmp_path / "missing"])


def test_document_ids_are_stable() -> None:
    first = document_id_for("bookchat", "docs/intro.md")
    assert first == document_id_for("bookchat", "docs/intro.md")
    assert first != document_id_for("other", "docs/intro.md")
    assert ingest_module.ingest_lock_key("a") != ingest_module.ingest_lock_key("b")


async def test_the_index_is_rebuilt_from_the_database_alone(pipeline: IngestPipeline, tmp_path: Path) -> None:
    book = make_book(tmp_path)
    await pipeline.ingest_paths([book])
    await pipeline.ingest_document("uploads/extra.md", "# Extra\n\nUploaded lighthouse notes.", title="Extra page")
    before = await stored_points(pipeline)
    # Both the files and the index are gone: PostgreSQL alone holds the book.
    for path in sorted(book.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    store = pipeline.retriever.store
    await store.client.delete_collection(store.collection)
    await pipeline.retriever.ensure_collection()
    rebuilt = await pipeline.reindex()
    assert rebuilt.updated == 4
    assert await stored_points(pipeline) == before
    await assert_consistent(pipeline)
    assert (await pipeline.retriever.search("lighthouse notes", limit=1))[0].title == "Extra page"


async def test_a_failed_rebuild_leaves_the_live_index_serving(
    pipeline: IngestPipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = make_book(tmp_path)
    await pipeline.ingest_paths([book])
    before_points = await stored_points(pipeline)
    before_rows = await stored_rows(pipeline)
    store = pipeline.retriever.store
    live = await store.physical_name()
    searched_during_rebuild: list[int] = []
    original = pipeline.retriever.on_collection

    def on_collection(name: str) -> Any:
        target = original(name)
        index = target.index_passages

        async def failing(passages: Any) -> None:
            await index(passages[:2])
            # Readers keep their answers from the live index while the new one fills.
            searched_during_rebuild.append(len(await pipeline.retriever.search("lidar", limit=3)))
            raise RuntimeError("embedder quota exhausted")

        target.index_passages = failing  # type: ignore[method-assign]
        return target

    monkeypatch.setattr(pipeline.retriever, "on_collection", on_collection)
    with pytest.raises(RuntimeError, match="quota"):
        await pipeline.reindex()
    assert searched_during_rebuild == [3]
    assert await store.physical_name() == live
    names = {item.name for item in (await store.client.get_collections()).collections}
    assert not any(name.startswith(f"{store.collection}--") for name in names), "the half-built collection is dropped"
    assert await stored_points(pipeline) == before_points
    assert await stored_rows(pipeline) == before_rows
    monkeypatch.undo()
    await pipeline.reindex()
    await assert_consistent(pipeline)
