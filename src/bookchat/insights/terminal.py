"""`bookchat insights gaps` and `bookchat purge`: the content gaps as a table in the terminal, retention by hand."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from rich.console import Console
from rich.table import Table

from bookchat.config import Settings
from bookchat.errors import BadRequest
from bookchat.insights.retention import PurgeResult, purge
from bookchat.insights.schemas import GapPage
from bookchat.insights.service import InsightsService
from bookchat.retrieval.embeddings import create_embedder
from bookchat.runtime.database import Database

UNITS = {"h": "hours", "d": "days", "w": "weeks"}
SINCE_PATTERN = re.compile(r"^(\d{1,5})([hdw])$")
GAPS_SHOWN = 50


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """`7d`, `12h`, `2w` before now, or an ISO date / time (UTC when naive)."""
    now = now or datetime.now(UTC)
    match = SINCE_PATTERN.match(value.strip())
    if match:
        return now - timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadRequest(f"--since: expected e.g. 7d, 12h, 2w or 2026-12-01, not {value!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


async def read_gaps(settings: Settings, since: datetime, limit: int = GAPS_SHOWN) -> GapPage:
    """The gaps since `since`, after grouping every question waiting (the CLI is not in a hurry). Opens only
    the database and the embedder: a running server keeps the local vector store to itself."""
    embedder = create_embedder(settings)
    database = Database(settings)
    await database.open()
    try:
        service = InsightsService(database.pool, embedder, settings)
        while not (await service.indexer.assign_pending()).complete:
            pass
        return await service.gap_page(since, None, limit=limit, cursor=None)
    finally:
        await database.close()


def render_gaps(page: GapPage, since: datetime, console: Console) -> None:
    if not page.items:
        console.print(f"no unanswered questions since {since:%Y-%m-%d %H:%M} UTC")
        return
    table = Table(title=f"Content gaps since {since:%Y-%m-%d %H:%M} UTC", show_lines=True)
    table.add_column("asked", justify="right")
    table.add_column("last asked (UTC)")
    table.add_column("how readers put it")
    for gap in page.items:
        table.add_row(str(gap.asked), f"{gap.last_asked.astimezone(UTC):%Y-%m-%d %H:%M}", "\n".join(gap.examples))
    console.print(table)
    if page.next_cursor:
        console.print(f"(the {len(page.items)} most asked; more in the dashboard at /admin)", style="dim")


async def purge_now(settings: Settings, days: int) -> PurgeResult:
    database = Database(settings)
    await database.open()
    try:
        return await purge(database.pool, days)
    finally:
        await database.close()
