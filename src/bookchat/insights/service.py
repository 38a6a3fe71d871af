"""Insights for admins: the summary, the content gaps (grouped on request), rated answers and the CSV export."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from bookchat.config import Settings
from bookchat.edge.pagination import InvalidCursor, decode_cursor, encode_cursor
from bookchat.errors import BadRequest
from bookchat.insights.gap_repository import GapRepository
from bookchat.insights.gaps import GapIndexer
from bookchat.insights.repository import InsightsRepository
from bookchat.insights.rollup import roll_up, split
from bookchat.insights.schemas import Bucket, CitedSection, Gap, GapPage, Latency, ModeFigures, RatedAnswerPage, Summary
from bookchat.insights.schemas import RatedAnswer as RatedAnswerOut
from bookchat.retrieval.embeddings import Embedder
from bookchat.runtime.database import Pool

log = logging.getLogger(__name__)

DEFAULT_DAYS = 30
# Bounds on a summary's range: a year of days or ten years of weeks keep the series a few hundred points.
MAX_DAYS = {"day": 366, "week": 3660}
EXPORT_COLUMNS = (
    "time",
    "reader",
    "question",
    "answered",
    "mode",
    "status",
    "latency_ms",
    "first_token_ms",
    "rating",
    "comment",
    "cited_urls",
)
# Cells a spreadsheet would run as a formula are prefixed with an apostrophe (CSV injection, OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
EXPORT_ROWS_PER_CHUNK = 500


def utc(moment: datetime) -> datetime:
    """A naive time is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def date_range(
    since: datetime | None, until: datetime | None, *, max_days: int | None = None
) -> tuple[datetime, datetime]:
    """[since, until): by default the last 30 days; a range that ends before it starts is a 400."""
    end = utc(until) if until is not None else datetime.now(UTC)
    start = utc(since) if since is not None else end - timedelta(days=DEFAULT_DAYS)
    if start >= end:
        raise BadRequest("`from` must be before `to`.", code="invalid-range")
    if max_days is not None and end - start > timedelta(days=max_days):
        raise BadRequest(f"The range is limited to {max_days} days for this interval.", code="range-too-long")
    return start, end


def _latency(values: list[float] | None) -> Latency:
    return Latency(p50=values[0], p95=values[1]) if values else Latency(p50=None, p95=None)


def _share(answered: int, judged: int) -> float | None:
    return answered / judged if judged else None


def _figures(row: dict[str, Any] | None, mode: str | None) -> ModeFigures:
    if row is None:
        empty = Latency(p50=None, p95=None)
        return ModeFigures(
            mode=mode, questions=0, answered=0, answered_share=None, first_token_ms=empty, full_answer_ms=empty
        )
    return ModeFigures(
        mode=row["mode"],
        questions=row["questions"],
        answered=row["answered"],
        answered_share=_share(row["answered"], row["judged"]),
        first_token_ms=_latency(row["first_token"]),
        full_answer_ms=_latency(row["full_answer"]),
    )


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, list):
        value = " ".join(str(item) for item in value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class InsightsService:
    """The insights of one pool; `embedder` groups unanswered questions into gaps."""

    def __init__(self, pool: Pool, embedder: Embedder, settings: Settings) -> None:
        self.pool = pool
        self.repository = InsightsRepository(pool)
        self.gaps = GapRepository(pool)
        self.indexer = GapIndexer(
            pool, embedder, threshold=settings.insights_gap_threshold, batch=settings.insights_assign_batch
        )

    async def summary(self, since: datetime | None, until: datetime | None, interval: str) -> Summary:
        start, end = date_range(since, until, max_days=MAX_DAYS[interval])
        days = split(start, end, await roll_up(self.pool))
        buckets, feedback_rows, modes, sections = await asyncio.gather(
            self.repository.buckets(start, end, interval, days),
            self.repository.feedback_buckets(start, end, interval),
            self.repository.by_mode(start, end, days),
            self.repository.top_sections(start, end, days),
        )
        ratings = {row["bucket"]: row for row in feedback_rows}
        overall = next((row for row in modes if row["is_total"]), None)
        per_mode = sorted((row for row in modes if not row["is_total"] and row["mode"]), key=lambda row: row["mode"])
        return Summary(
            from_=start,
            to=end,
            interval=interval,
            totals=_figures(overall, None),
            up=sum(row["up"] for row in feedback_rows),
            down=sum(row["down"] for row in feedback_rows),
            by_mode=[_figures(row, row["mode"]) for row in per_mode],
            series=[
                Bucket(
                    start=row["bucket"],
                    questions=row["questions"],
                    answered=row["answered"],
                    answered_share=_share(row["answered"], row["judged"]),
                    up=ratings[row["bucket"]]["up"] if row["bucket"] in ratings else 0,
                    down=ratings[row["bucket"]]["down"] if row["bucket"] in ratings else 0,
                )
                for row in buckets
            ],
            top_sections=[CitedSection(**section) for section in sections],
        )

    async def gap_page(
        self, since: datetime | None, until: datetime | None, *, limit: int, cursor: str | None
    ) -> GapPage:
        """Groups the questions not grouped yet (one batch), then reads the ranked gaps."""
        after = _gap_cursor(cursor) if cursor else None
        start, end = date_range(since, until)
        outcome = await self.indexer.assign_pending()
        rows = await self.gaps.ranked(since=start, until=end, limit=limit + 1, after=after)
        items = [Gap(id=row.id, asked=row.asked, last_asked=row.last_asked, examples=row.examples) for row in rows]
        next_cursor = None
        if len(items) > limit:
            items = items[:limit]
            next_cursor = encode_cursor(str(items[-1].asked), str(items[-1].id))
        return GapPage(items=items, next_cursor=next_cursor, complete=outcome.complete)

    async def rated(self, rating: str, *, limit: int, cursor: str | None) -> RatedAnswerPage:
        after = _rated_cursor(cursor) if cursor else None
        rows = await self.repository.rated_answers(rating, limit=limit + 1, after=after)
        items = [RatedAnswerOut.model_validate(row, from_attributes=True) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(last.rated_at.isoformat(), str(last.feedback_id))
        return RatedAnswerPage(items=items, next_cursor=next_cursor)

    async def export_range(self, since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
        """The export's range, validated, and the database reached, before the response starts."""
        start, end = date_range(since, until)
        await self.repository.ping()
        return start, end

    async def export_csv(self, start: datetime, end: datetime) -> AsyncIterator[str]:
        """The CSV in chunks of rows. A failure half-way ends the stream early (the header is sent by then),
        and is logged: the file is then visibly short of the rows the summary counts."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(EXPORT_COLUMNS)
        rows = 0
        try:
            async for row in self.repository.export_rows(start, end):
                writer.writerow(
                    [csv_cell(row["created_at" if column == "time" else column]) for column in EXPORT_COLUMNS]
                )
                rows += 1
                if rows % EXPORT_ROWS_PER_CHUNK == 0:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
        except Exception:
            log.warning("questions export cut short", exc_info=True, extra={"rows": rows})
            raise
        yield buffer.getvalue()


def _gap_cursor(cursor: str) -> tuple[int, int]:
    asked, gap_id = decode_cursor(cursor, 2)
    try:
        keys = int(asked), int(gap_id)
    except ValueError:
        keys = (-1, -1)
    if not all(0 <= key < 2**63 for key in keys):
        raise InvalidCursor("invalid cursor: pass back a `next_cursor` unchanged")
    return keys


def _rated_cursor(cursor: str) -> tuple[datetime, UUID]:
    stamp, identifier = decode_cursor(cursor, 2)
    try:
        moment = datetime.fromisoformat(stamp)
        if moment.tzinfo is None:
            raise ValueError("naive timestamp")
        return moment.astimezone(UTC), UUID(identifier)
    except (ValueError, OverflowError):
        raise InvalidCursor("invalid cursor: pass back a `next_cursor` unchanged") from None
