"""Stored payload keys (`edge_payload`): folded into one string in the engine, given back as written through every
read and selector, refused where the engine would have to see inside them (filters, payload indexes)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import models

from bookchat.retrieval.search import Passage, _payload
from bookchat.retrieval.store import DENSE_VECTOR, PAYLOAD_INDEXES, SPARSE_VECTOR, STORED_PAYLOAD_KEYS, VectorStore
from bookchat.retrieval.stores import edge_payload
from bookchat.retrieval.stores.edge_client import EdgeQdrantClient
from bookchat.retrieval.stores.edge_convert import to_rows
from bookchat.retrieval.stores.edge_payload import STORED_KEY, StoredKeyError, fold, refold, unfold
from bookchat.retrieval.stores.edge_process import EdgeProcessClient
from bookchat.retrieval.stores.edge_schema import recorded_config
from bookchat.retrieval.stores.errors import UnsupportedRequest

EdgeEngine = EdgeQdrantClient | EdgeProcessClient
VECTORS = {DENSE_VECTOR: models.VectorParams(size=4, distance=models.Distance.DOT)}
SPARSE = {SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)}
STORED = ("text", "heading_path", "page")


def payload(number: int) -> dict[str, Any]:
    return {
        "document_id": f"doc-{number % 3}",
        "generation": number % 2,
        "text": f'passage {number} — ünïcode and "quotes"',
        "heading_path": ["Module 1", f"Chapter {number}"],
        "page": None if number % 2 else number,
        "nested": {"a": number},
    }


def points(count: int) -> list[models.PointStruct]:
    return [
        models.PointStruct(
            id=str(uuid.UUID(int=n + 1)),
            vector={
                DENSE_VECTOR: [1.0, n / 7, 0.5, (n % 2) / 100],  # every score distinct: no ties to reorder
                SPARSE_VECTOR: models.SparseVector(indices=[n % 7, 10 + n % 3], values=[1.0, 0.5]),
            },
            payload=payload(n),
        )
        for n in range(count)
    ]


@pytest.fixture(params=["threads", "process"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Two collections with the same points: `plain` as Qdrant keeps them, `folded` with STORED folded."""
    client = EdgeQdrantClient(tmp_path / "edge") if request.param == "threads" else EdgeProcessClient(tmp_path / "edge")
    for name, stored in (("plain", ()), ("folded", STORED)):
        await client.create_collection(
            name, vectors_config=VECTORS, sparse_vectors_config=SPARSE, stored_payload_keys=stored
        )
        await client.create_payload_index(name, "document_id", field_schema=models.PayloadSchemaType.KEYWORD)
        await client.upsert(name, points(30))
    yield client
    await client.close()


def test_folding_round_trips_and_reserves_its_key() -> None:
    original = payload(4)
    folded = fold(original, STORED)
    assert folded is not None
    assert set(folded) == {"document_id", "generation", "nested", STORED_KEY}
    assert unfold(folded) == original
    assert refold(folded, ("nested",)) == fold(original, ("nested",))
    assert fold(original, ()) is original  # a collection without stored keys: untouched
    assert fold({"document_id": "d"}, STORED) == {"document_id": "d"}  # nothing to fold, no string
    with pytest.raises(StoredKeyError, match="reserved"):
        fold({STORED_KEY: "x"}, STORED)


async def test_the_engine_holds_one_string_for_the_stored_keys(tmp_path: Path) -> None:
    """What makes writes cheaper: the engine itself sees the indexed keys and one string, nothing else."""
    client = EdgeQdrantClient(tmp_path / "edge")
    await client.create_collection(
        "c", vectors_config=VECTORS, sparse_vectors_config=SPARSE, stored_payload_keys=STORED
    )
    await client.upsert("c", points(3))
    with client._collection("c").use() as shard:
        raw = shard.retrieve([str(uuid.UUID(int=1))], True, False)[0].payload
    assert set(raw) == {"document_id", "generation", "nested", STORED_KEY}
    assert isinstance(raw[STORED_KEY], str)
    await client.close()
    reopened = EdgeQdrantClient(tmp_path / "edge")  # recorded with the collection
    assert (await reopened.retrieve("c", [str(uuid.UUID(int=1))]))[0].payload == payload(0)
    await reopened.close()


SELECTORS: list[Any] = [
    True,
    False,
    ["text"],
    ["document_id", "page"],
    ["generation"],
    models.PayloadSelectorInclude(include=["heading_path", "nested"]),
    models.PayloadSelectorExclude(exclude=["text", "generation"]),
    models.PayloadSelectorExclude(exclude=["nested"]),
]


@pytest.mark.parametrize("with_payload", SELECTORS, ids=lambda s: str(s)[:40])
async def test_every_read_gives_the_payload_as_written(engine: EdgeEngine, with_payload: Any) -> None:
    ids = [str(uuid.UUID(int=n)) for n in (1, 2, 7)]
    query = {"query": [1.0, 2.0, 0.5, 1.0], "using": DENSE_VECTOR, "limit": 8, "with_payload": with_payload}
    for name in ("plain", "folded"):
        assert all(isinstance(p.payload, dict) or p.payload is None for p in await engine.retrieve(name, ids))
    plain = {
        "retrieve": [(p.id, p.payload) for p in await engine.retrieve("plain", ids, with_payload=with_payload)],
        "scroll": [(p.id, p.payload) for p in (await engine.scroll("plain", limit=50, with_payload=with_payload))[0]],
        "query": [(p.id, p.payload) for p in (await engine.query_points("plain", **query)).points],
    }
    folded = {
        "retrieve": [(p.id, p.payload) for p in await engine.retrieve("folded", ids, with_payload=with_payload)],
        "scroll": [(p.id, p.payload) for p in (await engine.scroll("folded", limit=50, with_payload=with_payload))[0]],
        "query": [(p.id, p.payload) for p in (await engine.query_points("folded", **query)).points],
    }
    assert folded == plain
    assert len(plain["scroll"]) == 30
    if with_payload is True:
        assert plain["retrieve"][0][1] == payload(0)


async def test_batch_queries_unfold_too(engine: EdgeEngine) -> None:
    request = models.QueryRequest(query=[1.0, 2.0, 0.5, 1.0], using=DENSE_VECTOR, limit=5, with_payload=True)
    plain = await engine.query_batch_points("plain", [request, request])
    folded = await engine.query_batch_points("folded", [request, request])
    assert [[(p.id, p.payload) for p in r.points] for r in folded] == [
        [(p.id, p.payload) for p in r.points] for r in plain
    ]
    assert all(STORED_KEY not in (p.payload or {}) for r in folded for p in r.points)


async def test_filters_on_indexed_keys_work_and_on_stored_keys_are_refused(engine: EdgeEngine) -> None:
    on_document = models.Filter(must=[models.FieldCondition(key="document_id", match=models.MatchValue(value="doc-1"))])
    assert (await engine.count("folded", count_filter=on_document)).count == 10
    refused = [
        models.Filter(must=[models.FieldCondition(key="text", match=models.MatchText(text="passage"))]),
        models.Filter(should=[models.IsNullCondition(is_null=models.PayloadField(key="page"))]),
        models.Filter(
            must_not=[models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="text"))])]
        ),
        models.Filter(must=[models.FieldCondition(key="heading_path[]", match=models.MatchValue(value="Module 1"))]),
    ]
    for query_filter in refused:
        with pytest.raises(StoredKeyError, match="stored, not indexed"):
            await engine.count("folded", count_filter=query_filter)
        with pytest.raises(StoredKeyError):
            await engine.scroll("folded", scroll_filter=query_filter)
        with pytest.raises(StoredKeyError):
            await engine.query_points("folded", query=[1.0, 0, 0, 0], using=DENSE_VECTOR, query_filter=query_filter)
        prefetch = models.Prefetch(query=[1.0, 0, 0, 0], using=DENSE_VECTOR, filter=query_filter)
        with pytest.raises(StoredKeyError):
            await engine.query_points("folded", prefetch=[prefetch], query=models.FusionQuery(fusion=models.Fusion.RRF))
        with pytest.raises(StoredKeyError):
            await engine.delete("folded", points_selector=models.FilterSelector(filter=query_filter))
        # The plain collection filters on them as Qdrant does.
        await engine.count("plain", count_filter=query_filter)
    assert (await engine.count("folded")).count == 30  # nothing was deleted
    with pytest.raises(StoredKeyError, match="has no index"):
        await engine.create_payload_index("folded", "text", field_schema=models.PayloadSchemaType.KEYWORD)
    with pytest.raises(StoredKeyError, match="inside a stored payload key"):
        await engine.retrieve("folded", [str(uuid.UUID(int=1))], with_payload=["heading_path.0"])
    assert issubclass(StoredKeyError, UnsupportedRequest)


async def test_rows_folded_for_other_keys_are_refolded(tmp_path: Path) -> None:
    """The engine's process folds on the caller's side for the keys the engine named; rows folded for other keys
    (the collection behind a name changed in between) are refolded, not stored wrongly."""
    client = EdgeQdrantClient(tmp_path / "edge")
    await client.create_collection(
        "c", vectors_config=VECTORS, sparse_vectors_config=SPARSE, stored_payload_keys=STORED
    )
    assert await client.stored_keys("c") == sorted(STORED)
    batch = points(4)
    await client.upsert_rows("c", to_rows(batch[:2], ("nested",)), folded_for=("nested",))
    await client.upsert_rows("c", to_rows(batch[2:]))  # not folded at all
    records = await client.retrieve("c", [p.id for p in batch])
    assert [r.payload for r in records] == [p.payload for p in batch]
    with client._collection("c").use() as shard:
        raw = shard.retrieve([batch[0].id, batch[3].id], True, False)
    assert all(set(r.payload) == {"document_id", "generation", "nested", STORED_KEY} for r in raw)
    await client.close()


def test_bookchat_payload_keys_are_each_indexed_or_stored() -> None:
    """A new key in a chunk's payload is a choice: index it (filterable) or store it (cheaper to write)."""
    written = set(
        _payload(
            Passage(
                chunk_id="",
                document_id="d",
                chunk_index=0,
                source_path="a.md",
                title="A",
                url=None,
                heading_path=(),
                text="t",
            )
        )
    )
    indexed = {field for field, _ in PAYLOAD_INDEXES}
    assert written == indexed | set(STORED_PAYLOAD_KEYS)
    assert not indexed & set(STORED_PAYLOAD_KEYS)


async def test_bookchat_collections_on_the_embedded_engine_store_their_display_keys(tmp_path: Path) -> None:
    client = EdgeQdrantClient(tmp_path / "edge")
    store = VectorStore(client, "book", kind="edge")
    await store.ensure_collection("model", 4)
    assert await client.stored_keys("book") == sorted(STORED_PAYLOAD_KEYS)
    await client.close()


def test_stored_keys_must_be_plain_top_level_keys() -> None:
    for keys in ((STORED_KEY,), ("meta.x",), ("",), ("a[]",)):
        with pytest.raises(UnsupportedRequest):
            recorded_config(VECTORS, None, None, keys)
    assert recorded_config(VECTORS, None, None, ("b", "a", "b"))["stored_keys"] == ["a", "b"]
    assert "stored_keys" not in recorded_config(VECTORS, None, None)
    assert edge_payload.top_level("a.b[0]") == "a"
