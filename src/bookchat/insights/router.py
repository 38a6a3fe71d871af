"""HTTP routes of the insights API (admins only): summary, content gaps, rated answers and the CSV export."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from bookchat.auth.dependencies import AdminDep
from bookchat.insights.schemas import GapPage, Interval, RatedAnswerPage, Rating, Summary
from bookchat.insights.service import InsightsService
from bookchat.runtime.dependencies import ResourcesDep

router = APIRouter(prefix="/api/insights", tags=["insights"])

PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    400: PROBLEM,
    401: PROBLEM,
    403: {**PROBLEM, "description": "Not an admin: question text is shown to admins only."},
    422: PROBLEM,
    503: PROBLEM,
}


async def get_insights_service(resources: ResourcesDep) -> InsightsService:
    return InsightsService(resources.database.pool, resources.embedder, resources.settings)


ServiceDep = Annotated[InsightsService, Depends(get_insights_service)]
From = Annotated[
    datetime | None,
    Query(alias="from", description="Start (inclusive), ISO 8601; naive times are UTC. Default: 30 days before `to`."),
]
To = Annotated[datetime | None, Query(description="End (exclusive), ISO 8601. Default: now.")]
Limit = Annotated[int, Query(ge=1, le=100, description="Rows per page.")]
Cursor = Annotated[str | None, Query(max_length=200, description="`next_cursor` of the previous page.")]


@router.get("/summary", response_model=Summary, response_model_by_alias=True, responses=RESPONSES)
async def summary(
    _admin: AdminDep, service: ServiceDep, from_: From = None, to: To = None, interval: Interval = "day"
) -> Summary:
    """Questions per day or ISO week (UTC), the share answered, thumbs up / down, p50 / p95 latency to the first
    token and to the full answer, overall and by mode (retrieval, selection, extractive), and the sections
    answers cited most. A question counts on the day it was asked; its feedback counts there too."""
    return await service.summary(from_, to, interval)


@router.get("/gaps", response_model=GapPage, responses=RESPONSES)
async def gaps(
    _admin: AdminDep, service: ServiceDep, from_: From = None, to: To = None, limit: Limit = 20, cursor: Cursor = None
) -> GapPage:
    """Content gaps: the questions the book did not answer (`answered: false`), grouped by meaning, most asked
    first, with the last time asked and up to five phrasings. Questions not grouped yet are embedded and
    grouped first, a batch per request (`complete: false` while some wait)."""
    return await service.gap_page(from_, to, limit=limit, cursor=cursor)


@router.get("/feedback", response_model=RatedAnswerPage, responses=RESPONSES)
async def feedback(
    _admin: AdminDep, service: ServiceDep, rating: Rating = "down", limit: Limit = 20, cursor: Cursor = None
) -> RatedAnswerPage:
    """Rated answers, most recently rated first: the question, the answer, its citations and the reader's
    comment; the reader only as a pseudonym."""
    return await service.rated(rating, limit=limit, cursor=cursor)


@router.get(
    "/questions.csv",
    response_class=StreamingResponse,
    responses={**RESPONSES, 200: {"content": {"text/csv": {}}, "description": "One row per question."}},
)
async def questions_csv(_admin: AdminDep, service: ServiceDep, from_: From = None, to: To = None) -> StreamingResponse:
    """Every question of the range, oldest first, streamed as CSV: time, reader (pseudonym), question, answered,
    mode, status, latencies, rating, comment and the cited URLs (space-separated)."""
    start, end = await service.export_range(from_, to)
    name = f"bookchat-questions-{datetime.now(UTC):%Y%m%d}.csv"
    return StreamingResponse(
        service.export_csv(start, end),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )
