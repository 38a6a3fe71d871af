"""HybridRetriever on Qdrant (local, in memory) with the real embedder: ranking, filters, ids, deletes, mismatch."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any
from uuid import UUID, uuid4, uuid5

import pytest
from qdrant_client import AsyncQdrantClient, models

from bookchat.retrieval.embeddings import OnnxEmbedder
from bookchat.retrieval.search import (
    SEARCH_MODES,
    HybridRetriever,
    Passage,
    SearchFilters,
    SearchMode,
    chunk_point_id,
    indexed_text,
    normalise_path,
    path_prefixes,
)
from bookchat.retrieval.sparse import Bm25Encoder
from bookchat.retrieval.store import EmbeddingModelMismatch, VectorStore, VectorStoreError
from tests.retrieval.helpers import passage

SENSORS = str(uuid5(UUID(int=1), "docs/module-2/gazebo/sensors.md"))
NAV = str(uuid5(UUID(int=1), "docs/module-3/navigation.md"))
INTRO = str(uuid5(UUID(int=1), "docs/intro.md"))


def corpus() -> list[Passage]:
    sensors: dict[str, Any] = {"source_path": "docs/module-2/gazebo/sensors.md", "title": "Simulating sensors"}
    nav: dict[str, Any] = {"source_path": "docs/module-3/navigation.md", "title": "Navigation"}
    intro: dict[str, Any] = {"source_path": "docs/intro.md", "title": "Welcome"}
    return [
        passage(
            SENSORS,
            0,
            "A depth camera measures how far away each pixel is, producing a point cloud.",
            **sensors,
            heading_path=("Module 2", "Depth cameras"),
            url="https://book.example.org/docs/sensors#depth-cameras",
        ),
        passage(
            SENSORS,
            1,
            "Attach the plugin libgazebo_ros_camera.so to the link in the SDF file.",
            **sensors,
            heading_path=("Module 2", "Plugins"),
        ),
        passage(
            SENSORS,
            2,
            "An IMU reports angular velocity and linear acceleration of the robot body.",
            **sensors,
            heading_path=("Module 2", "IMU"),
            page=7,
        ),
        passage(NAV, 0, "Nav2 plans a collision-free path from the robot's pose to a goal on the costmap.", **nav),
        passage(NAV, 1, "The global planner and the local controller cooperate to follow the path.", **nav),
        passage(INTRO, 0, "This book teaches physical AI and humanoid robotics with ROS 2.", **intro),
        passage(INTRO, 1, "Each module ends with exercises and a short quiz.", **intro),
    ]


@pytest.fixture
async def indexed(retriever: HybridRetriever) -> HybridRetriever:
    await retriever.index_passages(corpus())
    return retriever


def heads(hits: list[Passage]) -> list[tuple[str, int]]:
    return [(hit.source_path, hit.chunk_index) for hit in hits]


# ------------------------------------------------------------------------------------------- helpers


def test_chunk_point_ids_are_uuid5_of_the_document_and_index() -> None:
    document = str(uuid4())
    assert chunk_point_id(document, 3) == str(uuid5(UUID(document), "3"))
    assert chunk_point_id(document, 3) == chunk_point_id(document, 3) != chunk_point_id(document, 4)
    with pytest.raises(ValueError, match="badly formed"):
        chunk_point_id("not-a-uuid", 0)


def test_path_prefixes_hold_every_ancestor_and_the_path() -> None:
    assert path_prefixes("docs/a/b.md") == ["docs", "docs/a", "docs/a/b.md"]
    assert path_prefixes("./docs\\a//b.md") == ["docs", "docs/a", "docs/a/b.md"]
    assert path_prefixes("intro.md") == ["intro.md"]
    assert normalise_path("/docs/a/") == "docs/a"


def test_indexed_text_puts_title_and_headings_before_the_text() -> None:
    p = passage(NAV, 0, "Body.", title="Navigation", heading_path=("Navigation", "Planners", "Global"))
    assert indexed_text(p) == "Navigation › Planners › Global\n\nBody."
    assert indexed_text(passage(NAV, 0, "Body.", title="", heading_path=())) == "Body."


# ------------------------------------------------------------------------------------------- ranking


async def test_dense_finds_a_paraphrase_without_shared_words(indexed: HybridRetriever) -> None:
    hits = await indexed.search("How far away are things? Sensing distance per pixel", mode="dense", limit=3)
    assert heads(hits)[0] == ("docs/module-2/gazebo/sensors.md", 0)


async def test_bm25_finds_an_exact_identifier(indexed: HybridRetriever) -> None:
    hits = await indexed.search("libgazebo_ros_camera.so", mode="bm25", limit=3)
    assert heads(hits) == [("docs/module-2/gazebo/sensors.md", 1)]  # BM25 returns only matching chunks


async def test_hybrid_ranks_what_both_agree_on_first(indexed: HybridRetriever) -> None:
    assert indexed.fusion == "dbsf"
    hits = await indexed.search("robot path planning to a goal", limit=4)
    assert heads(hits)[0] == ("docs/module-3/navigation.md", 0)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    hybrid = await indexed.search("libgazebo_ros_camera.so plugin", limit=2)
    assert heads(hybrid)[0] == ("docs/module-2/gazebo/sensors.md", 1)


async def test_rrf_fusion_scores_by_rank(store: VectorStore, embedder: OnnxEmbedder) -> None:
    retriever = HybridRetriever(store, embedder, Bm25Encoder(), rrf_k=60, fusion="rrf")
    await retriever.index_passages(corpus())
    hits = await retriever.search("robot path planning to a goal", limit=4)
    assert heads(hits)[0] == ("docs/module-3/navigation.md", 0)
    # k=60: first in both lists scores 1/60 + 1/60 (Qdrant counts ranks from 0); nothing can score more.
    assert hits[0].score == pytest.approx(2 / 60)
    assert all(0 < hit.score <= 2 / 60 * (1 + 1e-6) for hit in hits)  # Qdrant's engine scores in float32


async def test_hits_carry_the_whole_payload(indexed: HybridRetriever) -> None:
    (hit,) = await indexed.search("depth camera point cloud", limit=1)
    assert hit == Passage(
        chunk_id=chunk_point_id(SENSORS, 0),
        document_id=SENSORS,
        chunk_index=0,
        source_path="docs/module-2/gazebo/sensors.md",
        title="Simulating sensors",
        url="https://book.example.org/docs/sensors#depth-cameras",
        heading_path=("Module 2", "Depth cameras"),
        text="A depth camera measures how far away each pixel is, producing a point cloud.",
        page=None,
        score=hit.score,
    )
    (imu,) = await indexed.search("IMU angular velocity", limit=1)
    assert imu.page == 7
    stored = await indexed.store.client.retrieve(indexed.store.collection, [chunk_point_id(SENSORS, 2)])
    assert set(stored[0].payload or {}) == {
        "document_id", "source_path", "path_prefixes", "title", "url", "heading_path", "chunk_index", "text", "page",
        "generation",
    }  # fmt: skip
    assert (stored[0].payload or {})["path_prefixes"] == [
        "docs", "docs/module-2", "docs/module-2/gazebo", "docs/module-2/gazebo/sensors.md",
    ]  # fmt: skip


async def test_limit_and_degenerate_queries(indexed: HybridRetriever) -> None:
    assert len(await indexed.search("robot", limit=2)) == 2
    assert await indexed.search("   ") == []
    assert await indexed.search("robot", limit=0) == []
    assert await indexed.search("the of and", mode="bm25") == []
    stop_words_only = await indexed.search("the of and", limit=3)  # hybrid falls back to dense
    assert len(stop_words_only) == 3
    with pytest.raises(ValueError, match="unknown search mode"):
        await indexed.search("robot", mode="fuzzy")  # type: ignore[arg-type]


async def test_a_limit_above_the_prefetch_still_fills_up(store: VectorStore, embedder: OnnxEmbedder) -> None:
    retriever = HybridRetriever(store, embedder, Bm25Encoder(), rrf_k=10, prefetch_limit=1)
    await retriever.index_passages(corpus())
    assert len(await retriever.search("robot", limit=5)) == 5


# ------------------------------------------------------------------------------------------- filters


@pytest.mark.parametrize("mode", SEARCH_MODES)
async def test_filters_by_document_and_by_path_prefix(indexed: HybridRetriever, mode: SearchMode) -> None:
    async def search(filters: SearchFilters) -> list[Passage]:
        return await indexed.search("robot path planning camera plugin", mode=mode, limit=10, filters=filters)

    by_document = await search(SearchFilters(document_ids=(NAV,)))
    assert by_document
    assert {hit.document_id for hit in by_document} == {NAV}
    by_folder = await search(SearchFilters(path_prefix="docs/module-2/"))
    assert by_folder
    assert {hit.source_path for hit in by_folder} == {"docs/module-2/gazebo/sensors.md"}
    by_file = await search(SearchFilters(path_prefix="docs/module-3/navigation.md"))
    assert by_file
    assert {hit.document_id for hit in by_file} == {NAV}
    assert await search(SearchFilters(document_ids=(NAV, INTRO), path_prefix="docs/module-2")) == []
    # A prefix matches whole folder names only: "docs/mod" is no folder.
    assert await search(SearchFilters(path_prefix="docs/mod")) == []


async def test_empty_filters_change_nothing(indexed: HybridRetriever) -> None:
    everything = await indexed.search("robot", limit=10)
    assert heads(await indexed.search("robot", limit=10, filters=SearchFilters())) == heads(everything)
    assert heads(await indexed.search("robot", limit=10, filters=SearchFilters(path_prefix="/"))) == heads(everything)


# ------------------------------------------------------------------------------------------- updates


async def test_reindexing_overwrites_in_place(indexed: HybridRetriever) -> None:
    assert await indexed.store.count() == 7
    edited = passage(NAV, 1, "Costmaps mark obstacles for the planner.", source_path="docs/module-3/navigation.md")
    await indexed.index_passages([edited])
    assert await indexed.store.count() == 7
    (hit,) = await indexed.search("obstacles on a costmap", limit=1, filters=SearchFilters(document_ids=(NAV,)))
    assert hit.text == "Costmaps mark obstacles for the planner."


async def test_delete_document_whole_or_by_generation(indexed: HybridRetriever) -> None:
    sensors = await indexed.search("camera plugin IMU", limit=10, filters=SearchFilters(document_ids=(SENSORS,)))
    # The next generation of a document beside the live one: both are stored, each under its own point ids.
    await indexed.index_passages([dataclasses.replace(sensors[0], generation=1, text="Generation one text.")])
    assert await indexed.store.count() == 8
    await indexed.delete_document(SENSORS, generation=1)
    assert await indexed.store.count() == 7
    await indexed.index_passages([dataclasses.replace(sensors[0], generation=1, text="Generation one text.")])
    # All but generation 1: the points written before generations existed (no `generation` field) go too.
    await indexed.delete_document(SENSORS, except_generation=1)
    left = await indexed.search("generation one", limit=10, filters=SearchFilters(document_ids=(SENSORS,)))
    assert [(hit.generation, hit.text) for hit in left] == [(1, "Generation one text.")]
    assert await indexed.store.count() == 5
    await indexed.delete_document(NAV)
    assert await indexed.store.count() == 3
    assert await indexed.search("navigation planner", mode="bm25", filters=SearchFilters(document_ids=(NAV,))) == []
    await indexed.delete_document(str(uuid4()))  # unknown documents are no error
    assert await indexed.store.count() == 3


async def test_index_nothing_is_a_no_op(retriever: HybridRetriever) -> None:
    await retriever.index_passages([])
    assert await retriever.store.count() == 0


async def test_stop_word_only_chunks_are_indexed_without_bm25(retriever: HybridRetriever) -> None:
    await retriever.index_passages([passage(INTRO, 0, "the of and", title="")])
    assert await retriever.store.count() == 1
    assert len(await retriever.search("something", mode="dense")) == 1


async def test_searching_an_empty_index_returns_nothing(retriever: HybridRetriever) -> None:
    assert await retriever.search("anything") == []


# ------------------------------------------------------------------------------------------- collection


async def test_the_collection_records_its_model_and_refuses_another(
    indexed: HybridRetriever, embedder: OnnxEmbedder
) -> None:
    store = indexed.store
    info = await store.client.get_collection(store.collection)
    metadata = dict(info.config.metadata or {})
    assert len(metadata.pop("index_id")) == 32  # the build's id, recorded in PostgreSQL by the app
    assert metadata == {
        "embedding_model": embedder.model_id,
        "embedding_dim": 384,
        "sparse_encoder": Bm25Encoder().signature,
    }
    assert isinstance(info.config.params.sparse_vectors, dict)
    assert info.config.params.sparse_vectors["bm25"].modifier == models.Modifier.IDF
    assert await store.ensure_collection(embedder.model_id, 384) is False
    with pytest.raises(EmbeddingModelMismatch, match=r"bookchat ingest PATH --reindex"):
        await store.ensure_collection("gemini:gemini-embedding-001", 768)
    with pytest.raises(EmbeddingModelMismatch, match="384"):
        await store.ensure_collection(embedder.model_id, 385)
    with pytest.raises(EmbeddingModelMismatch, match="BM25"):
        await store.ensure_collection(embedder.model_id, 384, sparse_id=Bm25Encoder(k1=2.0).signature)
    other = HybridRetriever(store, embedder, Bm25Encoder(b=0.1))
    with pytest.raises(EmbeddingModelMismatch):
        await other.search("robot")
    await store.recreate(embedder.model_id, 384, sparse_id=Bm25Encoder(b=0.1).signature)
    assert await store.count() == 0
    assert await other.search("robot") == []


def test_bad_retriever_parameters(store: VectorStore, embedder: OnnxEmbedder) -> None:
    with pytest.raises(ValueError, match="positive"):
        HybridRetriever(store, embedder, Bm25Encoder(), rrf_k=0)
    with pytest.raises(ValueError, match="unknown fusion"):
        HybridRetriever(store, embedder, Bm25Encoder(), fusion="max")  # type: ignore[arg-type]


async def test_an_unreachable_qdrant_server_is_a_vector_store_error(embedder: OnnxEmbedder) -> None:
    client = AsyncQdrantClient(url="http://127.0.0.1:9", timeout=2, check_compatibility=False)
    store = VectorStore(client, "nowhere", kind="server")
    retriever = HybridRetriever(store, embedder, Bm25Encoder())
    with pytest.raises(VectorStoreError, match="Qdrant server, collection 'nowhere'"):
        await retriever.search("robot")
    with pytest.raises(VectorStoreError):
        await store.count()
    await store.close()


async def test_local_hybrid_search_is_computed_on_the_engines_arrays(
    legacy_retriever: HybridRetriever, monkeypatch: pytest.MonkeyPatch
) -> None:
    await legacy_retriever.index_passages(corpus())
    expected = await legacy_retriever.search("depth camera point cloud", limit=3)

    async def public_api(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("hybrid search went through query_points")

    monkeypatch.setattr(legacy_retriever.store.client, "query_points", public_api)
    assert [hit.chunk_id for hit in await legacy_retriever.search("depth camera point cloud", limit=3)] == [
        hit.chunk_id for hit in expected
    ]
    assert expected[0].document_id == SENSORS
    with pytest.raises(AssertionError, match="query_points"):
        await legacy_retriever.search("depth camera", mode="dense")  # single-list modes keep the public API


async def test_local_hybrid_search_falls_back_when_the_engine_changes(
    legacy_retriever: HybridRetriever, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from bookchat.retrieval import qdrant_local

    await legacy_retriever.index_passages(corpus())
    expected = [hit.chunk_id for hit in await legacy_retriever.search("depth camera point cloud", limit=3)]

    def moved(*args: Any, **kwargs: Any) -> None:
        raise AttributeError("'LocalCollection' object has no attribute 'payload'")  # a newer qdrant-client's layout

    monkeypatch.setattr(qdrant_local, "_hybrid_query_works", True)  # restored after the test
    monkeypatch.setattr(qdrant_local, "_candidates", moved)
    assert [hit.chunk_id for hit in await legacy_retriever.search("depth camera point cloud", limit=3)] == expected
    assert "hybrid queries take its own, slower path" in caplog.text
    assert qdrant_local._hybrid_query_works is False  # warned once, then the engine's path without trying again


async def test_concurrent_searches_of_one_query_embed_it_once(
    indexed: HybridRetriever, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    original = indexed.embedder.embed_query

    async def counting(text: str) -> list[float]:
        calls.append(text)
        return await original(text)

    monkeypatch.setattr(indexed.embedder, "embed_query", counting)
    hybrid, dense = await asyncio.gather(
        indexed.search("depth camera point cloud", limit=2),
        indexed.search("depth camera point cloud", limit=2, mode="dense"),
    )
    assert calls == ["depth camera point cloud"]
    assert hybrid[0].chunk_id == dense[0].chunk_id
    # Nothing is kept once the searches are done: a later search embeds afresh.
    await indexed.search("depth camera point cloud", limit=1, mode="dense")
    assert len(calls) == 2
