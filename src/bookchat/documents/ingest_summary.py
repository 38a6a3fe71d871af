"""What an ingestion reports: each document's outcome, progress events as it goes, and the run's summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from uuid import UUID

from bookchat.documents.discovery import SkippedFile

Outcome = Literal["added", "updated", "unchanged", "removed", "skipped"]


@dataclass(frozen=True)
class DocumentOutcome:
    document_id: str
    source_path: str
    outcome: Outcome
    chunks: int


@dataclass(frozen=True)
class IngestProgress:
    """A progress event: `phase` "scan" (total known), "wait" (lock held elsewhere), "document", "prune", "done"."""

    phase: Literal["scan", "wait", "document", "prune", "done"]
    completed: int
    total: int
    source_path: str | None = None
    outcome: Outcome | None = None


ProgressCallback = Callable[[IngestProgress], None]


class ProgressTracker:
    """Counts finished documents so `completed` only ever grows, whatever order batches finish in."""

    def __init__(self, callback: ProgressCallback | None, total: int = 0) -> None:
        self.callback = callback
        self.total = total
        self.completed = 0

    def emit(self, event: IngestProgress) -> None:
        if self.callback is not None:
            self.callback(event)

    def advance(self, source_path: str, outcome: Outcome) -> None:
        self.completed += 1
        self.emit(IngestProgress("document", self.completed, self.total, source_path, outcome))


@dataclass
class IngestSummary:
    """What one run did: documents added / updated / unchanged / removed, chunks written, seconds taken."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0
    seconds: float = 0.0
    skipped: list[SkippedFile] = field(default_factory=list)
    documents: list[DocumentOutcome] = field(default_factory=list)
    run_id: UUID | None = None

    def count(self, outcome: DocumentOutcome) -> None:
        self.documents.append(outcome)
        if outcome.outcome == "added":
            self.added += 1
        elif outcome.outcome == "updated":
            self.updated += 1
        elif outcome.outcome == "unchanged":
            self.unchanged += 1
        elif outcome.outcome == "removed":
            self.removed += 1
