"""The terminal face of ingestion: its progress bar, and the one message and bar of a move to the embedded engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bookchat.documents.index_migration import describe, finish_migration
from bookchat.documents.ingest_summary import IngestProgress
from bookchat.runtime.resources import Resources


@contextmanager
def ingest_progress(console: Console) -> Iterator[Callable[[IngestProgress], None]]:
    """A progress bar on `console`, fed by an ingestion's progress events."""
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("ingesting", total=None)

        def show(event: IngestProgress) -> None:
            description = "waiting for another ingestion" if event.phase == "wait" else event.phase
            bar.update(task, completed=event.completed, total=event.total or None, description=description)

        yield show


async def migrate_with_progress(resources: Resources, console: Console) -> None:
    """Rebuild the index into the embedded engine (a move from local mode): one message, one progress bar."""
    owed = resources.store.owed_rebuild
    if owed is None:
        return
    console.print(describe(owed), style="yellow", highlight=False, soft_wrap=True)
    with ingest_progress(console) as show:
        summary = await finish_migration(
            resources.database.pool, resources.retriever, resources.embedder, resources.settings, progress=show
        )
    if summary is not None:
        console.print(f"index rebuilt: {summary.added + summary.updated} documents, {summary.chunks} chunks")
