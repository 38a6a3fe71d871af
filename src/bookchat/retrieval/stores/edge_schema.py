"""A collection's configuration: what bookchat records in `collection.json`, as qdrant-edge's `EdgeConfig` and as
qdrant-client's `CollectionInfo`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import qdrant_edge as qe
from qdrant_client import models

from bookchat.retrieval.stores.edge_payload import STORED_KEY, top_level
from bookchat.retrieval.stores.errors import UnsupportedRequest

_DISTANCES = {
    models.Distance.DOT: (qe.Distance.Dot, "Dot"),
    models.Distance.COSINE: (qe.Distance.Cosine, "Cosine"),
    models.Distance.EUCLID: (qe.Distance.Euclid, "Euclid"),
    models.Distance.MANHATTAN: (qe.Distance.Manhattan, "Manhattan"),
}
_BY_NAME = {name: (edge, distance) for distance, (edge, name) in _DISTANCES.items()}
_SCHEMAS = {
    models.PayloadSchemaType.KEYWORD: qe.PayloadSchemaType.Keyword,
    models.PayloadSchemaType.INTEGER: qe.PayloadSchemaType.Integer,
    models.PayloadSchemaType.FLOAT: qe.PayloadSchemaType.Float,
    models.PayloadSchemaType.BOOL: qe.PayloadSchemaType.Bool,
    models.PayloadSchemaType.UUID: qe.PayloadSchemaType.Uuid,
}
_SCHEMA_NAMES = {str(edge): schema for schema, edge in _SCHEMAS.items()}


def recorded_config(
    vectors_config: Any,
    sparse_vectors_config: dict[str, models.SparseVectorParams] | None,
    metadata: Any,
    stored_keys: Sequence[str] = (),
) -> dict[str, Any]:
    """`create_collection`'s arguments as the config bookchat records (plain JSON). `stored_keys`: payload keys
    kept folded in one string (see `edge_payload`), recorded only when there are some."""
    if STORED_KEY in stored_keys or any(not key or top_level(key) != key for key in stored_keys):
        raise UnsupportedRequest(f"stored payload keys are top-level keys other than {STORED_KEY!r}")
    if not isinstance(vectors_config, dict):
        raise UnsupportedRequest("the embedded engine takes named dense vectors (a dict)")
    dense = {name: {"size": p.size, "distance": _DISTANCES[p.distance][1]} for name, p in vectors_config.items()}
    sparse = {
        name: {"modifier": "idf" if p.modifier == models.Modifier.IDF else None}
        for name, p in (sparse_vectors_config or {}).items()
    }
    config: dict[str, Any] = {"vectors": dense, "sparse_vectors": sparse, "metadata": dict(metadata or {})}
    if stored_keys:
        config["stored_keys"] = sorted(set(stored_keys))
    return config


def edge_config(config: dict[str, Any]) -> qe.EdgeConfig:
    return qe.EdgeConfig(
        vectors={
            vector: qe.EdgeVectorParams(size=params["size"], distance=_BY_NAME[params["distance"]][0])
            for vector, params in config["vectors"].items()
        },
        sparse_vectors={
            vector: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf if params["modifier"] == "idf" else None)
            for vector, params in config["sparse_vectors"].items()
        },
        # The GIL is held while a search runs anyway; more search threads would only compete with the embedder.
        max_search_threads=1,
        # An optimization drops every deleted point (by default a segment is vacuumed only past 20 % deleted):
        # afterwards the IDF statistics count live points only, and queries need not ask for that (`idf_exact`).
        optimizers=qe.EdgeOptimizersConfig(deleted_threshold=0.0, vacuum_min_vector_number=0),
    )


def payload_schema(field_schema: Any) -> qe.PayloadSchemaType:
    schema = _SCHEMAS.get(models.PayloadSchemaType(field_schema))  # a str enum: the value or its name
    if schema is None:
        raise UnsupportedRequest(f"payload index {field_schema!r} is not supported here")
    return schema


def collection_info(config: dict[str, Any], stats: qe.ShardInfo) -> models.CollectionInfo:
    params = models.CollectionParams(
        vectors={
            name: models.VectorParams(size=p["size"], distance=_BY_NAME[p["distance"]][1])
            for name, p in config["vectors"].items()
        },
        sparse_vectors={
            name: models.SparseVectorParams(modifier=models.Modifier.IDF if p["modifier"] == "idf" else None)
            for name, p in config["sparse_vectors"].items()
        },
    )
    # Only what the embedded engine knows; a server's HNSW, optimizer and WAL settings have no meaning here.
    return models.CollectionInfo.model_construct(
        status=models.CollectionStatus.GREEN,
        optimizer_status=models.OptimizersStatusOneOf.OK,
        points_count=stats.points_count,
        indexed_vectors_count=stats.indexed_vectors_count,
        segments_count=stats.segments_count,
        config=models.CollectionConfig.model_construct(
            params=params,
            hnsw_config=None,  # type: ignore[arg-type]  # a server's settings, not the embedded engine's
            optimizer_config=None,  # type: ignore[arg-type]
            metadata=dict(config["metadata"]),
        ),
        payload_schema={
            field: models.PayloadIndexInfo(data_type=_SCHEMA_NAMES[str(index.data_type)], points=index.points)
            for field, index in stats.payload_schema.items()
            if str(index.data_type) in _SCHEMA_NAMES
        },
    )
