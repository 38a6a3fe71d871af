"""Translation between qdrant-client's models (what bookchat speaks) and qdrant-edge's request and result types."""

from __future__ import annotations

import functools
import struct
import uuid
from array import array
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, cast

import qdrant_edge as qe
from qdrant_client import models

from bookchat.retrieval.stores.edge_payload import PayloadShape, check_filter, fold, selection
from bookchat.retrieval.stores.errors import UnsupportedRequest

# A filter every stored, not deleted, point matches: as an IDF corpus it makes the engine count live points only.
# Without it, qdrant-edge (like a Qdrant server) counts deleted points in IDF statistics until its optimizer
# vacuums them; bookchat deletes a document's previous generation on every re-upload, so scores would drift.
LIVE_POINTS = qe.Filter(must_not=[qe.HasIdCondition(set())])
LIVE_IDF = qe.SearchParams(idf=qe.IdfParams(corpus=LIVE_POINTS))


def point_id(value: Any) -> models.ExtendedPointId:
    """qdrant-client's form of a point id: UUIDs as strings, integers as they are."""
    return str(value) if isinstance(value, uuid.UUID) else value


def to_filter(query_filter: models.Filter | None, stored: Collection[str] = ()) -> qe.Filter | None:
    """The engine's filter; one naming a key of `stored` (see `edge_payload`) is refused."""
    if query_filter is None:
        return None
    check_filter(query_filter, stored)
    min_should = query_filter.min_should
    return qe.Filter(
        must=_conditions(query_filter.must),
        should=_conditions(query_filter.should),
        must_not=_conditions(query_filter.must_not),
        min_should=qe.MinShould([_condition(c) for c in min_should.conditions], min_should.min_count)
        if min_should is not None
        else None,
    )


def _conditions(conditions: Any) -> list[Any] | None:
    if conditions is None:
        return None
    if not isinstance(conditions, list):
        conditions = [conditions]
    return [_condition(condition) for condition in conditions]


def _condition(condition: Any) -> Any:
    if isinstance(condition, models.Filter):
        return to_filter(condition)
    if isinstance(condition, models.FieldCondition):
        return qe.FieldCondition(
            condition.key,
            match=_match(condition.match),
            range=_range(condition.range),
            is_empty=condition.is_empty,
            is_null=condition.is_null,
        )
    if isinstance(condition, models.IsEmptyCondition):
        return qe.IsEmptyCondition(condition.is_empty.key)
    if isinstance(condition, models.IsNullCondition):
        return qe.IsNullCondition(condition.is_null.key)
    if isinstance(condition, models.HasIdCondition):
        return qe.HasIdCondition(set(condition.has_id))
    if isinstance(condition, models.HasVectorCondition):
        return qe.HasVectorCondition(condition.has_vector)
    raise UnsupportedRequest(f"filter condition {type(condition).__name__} is not supported by the embedded engine")


def _match(match: Any) -> Any:
    if match is None:
        return None
    if isinstance(match, models.MatchValue):
        return qe.MatchValue(match.value)
    if isinstance(match, models.MatchAny):
        return qe.MatchAny(cast(list[str], list(match.any)))
    if isinstance(match, models.MatchExcept):
        return qe.MatchExcept(cast(list[str], list(match.except_)))
    if isinstance(match, models.MatchText):
        return qe.MatchText(match.text)
    raise UnsupportedRequest(f"match {type(match).__name__} is not supported by the embedded engine")


def _range(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, models.Range):
        return qe.RangeFloat(gte=value.gte, gt=value.gt, lte=value.lte, lt=value.lt)
    raise UnsupportedRequest(f"range {type(value).__name__} is not supported by the embedded engine")


def to_vector(vector: Any) -> Any:
    """A point's vectors by name (dense lists, sparse vectors)."""
    if not isinstance(vector, Mapping):
        raise UnsupportedRequest("points need named vectors (a dict of name to vector)")
    return {name: _named_vector(value) for name, value in vector.items()}


def _named_vector(value: Any) -> Any:
    if isinstance(value, models.SparseVector):
        return qe.SparseVector(value.indices, value.values)
    if type(value) is list:
        return value  # the engine reads the floats itself; a copy here cost a third of an upsert
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [float(v) for v in value]
    raise UnsupportedRequest(f"vector of type {type(value).__name__} is not supported by the embedded engine")


def to_points(points: Iterable[models.PointStruct], stored: Collection[str] = ()) -> list[qe.Point]:
    """The engine's points, the payload keys of `stored` folded (see `edge_payload`)."""
    stored = frozenset(stored)
    converted = []
    for point in points:
        if not isinstance(point, models.PointStruct):
            raise UnsupportedRequest("upsert takes a list of PointStruct on the embedded engine")
        converted.append(qe.Point(point.id, to_vector(point.vector), fold(point.payload, stored)))
    return converted


# A point as plain values: id, vectors by name, payload. A vector is dense as float32 bytes (`pack_dense`) or as a
# list, or sparse as (indices, values). What an upsert sends to the engine's process: it unpickles in a fraction
# of the time of the PointStruct models.
RowVector = bytes | list[float] | tuple[list[int], list[float]]
PointRow = tuple[models.ExtendedPointId, dict[str, RowVector], dict[str, Any] | None]


def to_rows(points: Iterable[models.PointStruct], stored: Collection[str] = ()) -> list[PointRow]:
    """Rows of `points`, the payload keys of `stored` folded and dense vectors packed (on the caller's side of
    the engine's process)."""
    stored = frozenset(stored)
    rows: list[PointRow] = []
    for point in points:
        if not isinstance(point, models.PointStruct):
            raise UnsupportedRequest("upsert takes a list of PointStruct on the embedded engine")
        if not isinstance(point.vector, Mapping):
            raise UnsupportedRequest("points need named vectors (a dict of name to vector)")
        vectors: dict[str, RowVector] = {}
        for name, value in point.vector.items():
            if isinstance(value, models.SparseVector):
                vectors[name] = (value.indices, value.values)
            else:
                dense = _named_vector(value)
                # A multivector (a list of lists) goes as it is: bookchat writes none.
                vectors[name] = dense if dense and isinstance(dense[0], list) else pack_dense(dense)
        rows.append((point.id, vectors, fold(point.payload, stored)))
    return rows


def pack_dense(vector: list[float]) -> bytes:
    """`vector` as native float32s: the engine's process unpickles 384 floats in more time than the engine takes
    to convert them, and it keeps them as float32 anyway (rounded as the engine itself rounds; too large is inf)."""
    try:
        return _float32s(len(vector)).pack(*vector)
    except struct.error as exc:
        raise UnsupportedRequest(f"a dense vector holds a value that is not a number: {exc}") from None


@functools.lru_cache(maxsize=8)
def _float32s(count: int) -> struct.Struct:
    return struct.Struct(f"{count}f")


def rows_to_points(rows: Iterable[PointRow]) -> list[qe.Point]:
    return [
        qe.Point(point, {name: _row_vector(value) for name, value in vectors.items()}, payload)
        for point, vectors, payload in rows
    ]


def _row_vector(value: RowVector) -> Any:
    if isinstance(value, tuple):
        return qe.SparseVector(value[0], value[1])
    if isinstance(value, bytes):
        # The engine reads the array's items as it would a list's, without a float object kept for each.
        return array("f", value)
    return value


def from_vector(vector: Any) -> Any:
    """A result's vectors in qdrant-client's form."""
    if vector is None:
        return None
    if isinstance(vector, Mapping):
        return {name: from_vector(value) for name, value in vector.items()}
    if isinstance(vector, qe.SparseVector):
        return models.SparseVector(indices=list(vector.indices), values=list(vector.values))
    return vector


def scored(
    points: Iterable[qe.ScoredPoint], with_vectors: bool, shape: PayloadShape | None = None
) -> list[models.ScoredPoint]:
    """Hits in qdrant-client's form; `shape`: what to do to each payload (`edge_payload.selection`)."""
    # model_construct: the engine's values are already valid; validating each hit again would cost more than the
    # search (payloads hold whole passages).
    return [
        models.ScoredPoint.model_construct(
            id=point_id(point.id),
            version=point.version,
            score=point.score,
            payload=shape(point.payload) if shape else point.payload,
            vector=from_vector(point.vector) if with_vectors else None,
            shard_key=None,
            order_value=None,
        )
        for point in points
    ]


def records(points: Iterable[qe.Record], with_vectors: bool, shape: PayloadShape | None = None) -> list[models.Record]:
    return [
        models.Record.model_construct(
            id=point_id(point.id),
            payload=shape(point.payload) if shape else point.payload,
            vector=from_vector(point.vector) if with_vectors else None,
            shard_key=None,
            order_value=None,
        )
        for point in points
    ]


def payload_selector(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, list):
        return value
    if isinstance(value, models.PayloadSelectorInclude):
        return qe.PayloadSelector.Include(list(value.include))
    if isinstance(value, models.PayloadSelectorExclude):
        return qe.PayloadSelector.Exclude(list(value.exclude))
    raise UnsupportedRequest(f"with_payload={value!r} is not supported by the embedded engine")


def vector_selector(value: Any) -> Any:
    if isinstance(value, bool | list):
        return value
    raise UnsupportedRequest(f"with_vectors={value!r} is not supported by the embedded engine")


class QueryTranslator:
    """query_points' arguments into a qdrant-edge request, for one collection (which vectors are IDF-weighted)."""

    def __init__(
        self, idf_vectors: set[str], stored: Collection[str] = (), idf_exact: Callable[[], bool] = lambda: False
    ) -> None:
        self.idf_vectors = idf_vectors
        self.stored = stored  # payload keys kept folded (see `edge_payload`)
        # Whether the engine's IDF statistics count live points only right now (no deleted point in the shard).
        self.idf_exact = idf_exact

    def payload_shape(self, with_payload: Any) -> PayloadShape:
        """What to do to each hit's payload for `with_payload`."""
        return selection(with_payload, self.stored)[1]

    def request(
        self,
        *,
        query: Any = None,
        using: str | None = None,
        prefetch: Any = None,
        query_filter: models.Filter | None = None,
        search_params: models.SearchParams | None = None,
        limit: int = 10,
        offset: int | None = None,
        with_payload: Any = True,
        with_vectors: Any = False,
        score_threshold: float | None = None,
    ) -> qe.QueryRequest:
        scoring, sparse_name = self._scoring(query, using)
        return qe.QueryRequest(
            limit=limit,
            offset=offset,
            query=scoring,
            prefetches=self._prefetches(prefetch),
            with_vector=vector_selector(with_vectors),
            with_payload=payload_selector(selection(with_payload, self.stored)[0]),
            filter=to_filter(query_filter, self.stored),
            score_threshold=score_threshold,
            params=self._params(search_params, sparse_name),
        )

    def _prefetches(self, prefetch: Any) -> list[qe.Prefetch] | None:
        if prefetch is None:
            return None
        items = prefetch if isinstance(prefetch, list) else [prefetch]
        converted = []
        for item in items:
            scoring, sparse_name = self._scoring(item.query, item.using)
            converted.append(
                qe.Prefetch(
                    limit=item.limit if item.limit is not None else 10,
                    query=scoring,
                    prefetches=self._prefetches(item.prefetch),
                    params=self._params(item.params, sparse_name),
                    filter=to_filter(item.filter, self.stored),
                    score_threshold=item.score_threshold,
                )
            )
        return converted

    def _params(self, params: models.SearchParams | None, sparse_name: str | None) -> qe.SearchParams | None:
        live_idf = sparse_name is not None and sparse_name in self.idf_vectors and not self.idf_exact()
        if params is None:
            return LIVE_IDF if live_idf else None
        return qe.SearchParams(
            hnsw_ef=params.hnsw_ef,
            exact=bool(params.exact),
            indexed_only=bool(params.indexed_only),
            idf=qe.IdfParams(corpus=LIVE_POINTS) if live_idf else None,
        )

    def _scoring(self, query: Any, using: str | None) -> tuple[Any, str | None]:
        """The edge query and, for a sparse nearest-neighbour query, the name of its vector."""
        if query is None:
            return None, None
        if isinstance(query, models.NearestQuery):
            query = query.nearest
        if isinstance(query, models.SparseVector):
            name = using or ""
            return qe.Query.Nearest(_named_vector(query), using=name), name
        if isinstance(query, Sequence) and not isinstance(query, str):
            return qe.Query.Nearest([float(v) for v in query], using=using or ""), None
        if isinstance(query, models.FusionQuery):
            if query.fusion == models.Fusion.DBSF:
                return qe.Fusion.Dbsf(), None
            return qe.Fusion.Rrf(k=2), None  # Fusion.RRF: Qdrant's default constant
        if isinstance(query, models.RrfQuery):
            k = query.rrf.k if query.rrf.k is not None else 2
            weights = list(query.rrf.weights) if query.rrf.weights is not None else None
            return qe.Fusion.Rrf(k=k, weights=weights), None
        raise UnsupportedRequest(f"query {type(query).__name__} is not supported by the embedded engine")
