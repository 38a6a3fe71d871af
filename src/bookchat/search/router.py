"""POST /api/search: hybrid search over the book for a search box, or to see what the chat would retrieve."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, Depends

from bookchat.auth.dependencies import PrincipalDep
from bookchat.auth.rate_limits import rate_limit
from bookchat.errors import BadGateway, ServiceUnavailable
from bookchat.retrieval.embeddings import EmbeddingError
from bookchat.retrieval.search import SearchFilters
from bookchat.retrieval.store import VectorStoreError
from bookchat.runtime.dependencies import RetrieverDep
from bookchat.search.schemas import SearchHit, SearchRequest, SearchResponse

log = logging.getLogger(__name__)

PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
# Seconds a client should wait when the embeddings API is rate limiting us.
EMBEDDING_RETRY_AFTER = "10"

router = APIRouter(prefix="/api", tags=["search"])


@router.post(
    "/search",
    response_model=SearchResponse,
    summary="Search the book",
    dependencies=[Depends(rate_limit("search"))],
    responses={401: PROBLEM, 422: PROBLEM, 429: PROBLEM, 502: PROBLEM, 503: PROBLEM},
)
async def search(body: SearchRequest, principal: PrincipalDep, retriever: RetrieverDep) -> SearchResponse:
    """Find the passages of the book that best match `query`.

    `hybrid` (the default) runs a semantic (dense embedding) search and a keyword (BM25) search and fuses the two
    rankings by reciprocal rank; `dense` and `bm25` run one of them alone. `filters` restrict the search to some
    documents or to a folder of the book. Any signed-in reader or guest may search.
    """
    filters = None
    if body.filters is not None:
        filters = SearchFilters(
            document_ids=tuple(str(document) for document in body.filters.document_ids or ()),
            path_prefix=body.filters.path_prefix,
        )
    started = time.perf_counter()
    try:
        passages = await retriever.search(body.query, limit=body.limit, filters=filters, mode=body.mode)
    except EmbeddingError as exc:
        # The client gets a generic problem; the upstream's own words go to the log for the operator.
        log.warning("query embedding failed: %s", exc)
        if exc.status == 429:
            raise ServiceUnavailable(
                "The embeddings service is rate limiting this server; try again shortly.",
                headers={"Retry-After": EMBEDDING_RETRY_AFTER},
                code="embeddings-rate-limited",
            ) from exc
        raise BadGateway("The embeddings service failed to embed the query.", code="embeddings-failed") from exc
    except VectorStoreError as exc:
        log.warning("search index unavailable: %s", exc)
        raise ServiceUnavailable("The search index is unavailable.", code="index-unavailable") from exc
    return SearchResponse(
        query=body.query,
        mode=body.mode,
        hits=[SearchHit.from_passage(passage) for passage in passages],
        took_ms=round((time.perf_counter() - started) * 1000, 2),
    )
