"""How a turn ends in the store and the log: answered, failed (its cause mapped to a problem), or cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from bookchat.chat.context import RunUsage
from bookchat.chat.schemas import Citation
from bookchat.chat.turn import Turn
from bookchat.conversations.repository import ConversationRepository
from bookchat.errors import BadGateway, BookchatError, ServiceUnavailable
from bookchat.llm.errors import is_known_upstream_error, upstream_error
from bookchat.runtime.database import is_database_outage

# The name these lines had before they moved out of the service: a turn's log line, `logger` field included, is
# the same as it was.
log = logging.getLogger("bookchat.chat.service")

# Database writes that must finish even when the request task is cancelled (the reader left); the app's shutdown
# waits for them (`drain_background_writes`).
_background_writes: set[asyncio.Task[None]] = set()
# As the app's edge answers a PostgreSQL outage (bookchat.edge.problems).
DATABASE_RETRY_AFTER_SECONDS = 5


class EmptyAnswer(RuntimeError):
    """The model finished without writing any answer text."""


def turn_error(exc: BaseException) -> BookchatError:
    """The problem a reader is shown for what made the answer fail."""
    if isinstance(exc, EmptyAnswer):
        return BadGateway("The language model returned no answer.", code="llm-empty-answer")
    return upstream_error(exc)


def store_error(exc: BaseException) -> BookchatError:
    """The problem a reader is shown when the answer was written but could not be stored."""
    if is_database_outage(exc):
        return ServiceUnavailable(
            "the database is unavailable; try again in a few seconds",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
            code="database-unavailable",
        )
    return BookchatError("the answer could not be stored; quote the request id when reporting it")


async def drain_background_writes(within: float) -> int:
    """Wait up to `within` seconds for the detached writes still running (at shutdown); returns how many did
    not finish in time (their rows stay `pending`, for the sweep of interrupted answers)."""
    if not _background_writes:
        return 0
    _done, pending = await asyncio.wait(set(_background_writes), timeout=within)
    if pending:
        log.warning("turn writes unfinished at shutdown", extra={"writes": len(pending)})
    return len(pending)


class TurnRecords:
    """Stores each turn's answer (or failure) on its assistant message and logs one "chat turn" line for it."""

    def __init__(self, repository: ConversationRepository, model: str | None) -> None:
        self.repository = repository
        self.model = model

    async def fail(self, turn: Turn, exc: BaseException, partial: str = "") -> BookchatError:
        """Store the turn as failed by `exc` (keeping `partial`, what the reader was sent) and return the problem
        to show. A known upstream failure is logged in one line; anything else (a bug, an unusable response)
        with its traceback, which is all there is to debug it by."""
        error = turn_error(exc)
        known = isinstance(exc, EmptyAnswer) or is_known_upstream_error(exc)
        self._log_failure(turn, error, exc, traceback=not known)
        await self.finish_failed(turn, partial, error.code)
        return error

    async def answered(
        self, turn: Turn, content: str, *, citations: list[Citation], usage: RunUsage, answered: bool = True
    ) -> BookchatError | None:
        """Store the turn's answer as `ok`. If that write fails, the turn is stored as `error` instead (when the
        database lets it) and the problem to show the reader is returned; None when the answer is stored."""
        try:
            await self.finish(turn, content, status="ok", citations=citations, usage=usage, answered=answered)
        except Exception as exc:
            error = store_error(exc)
            self._log_failure(turn, error, exc, traceback=not is_database_outage(exc))
            await self.finish_failed(turn, content, error.code)
            return error
        return None

    async def finish_failed(self, turn: Turn, content: str, error_code: str) -> None:
        """`finish` as `error`, never raising: a turn that already failed is not made to fail again by the store.
        If the write does not get through, the row stays `pending` until the sweep marks it interrupted."""
        try:
            await self.finish(turn, content, status="error", error_code=error_code)
        except Exception as exc:
            self._log_unstored(turn, "error", exc)

    def _log_failure(self, turn: Turn, error: BookchatError, exc: BaseException, *, traceback: bool) -> None:
        # A known failure is an operator's matter (a warning in one line); anything else is a bug to look at.
        log.log(
            logging.ERROR if traceback else logging.WARNING,
            "chat turn failed",
            exc_info=exc if traceback else None,
            extra={
                "conversation_id": str(turn.conversation_id),
                "mode": turn.mode,
                "error_code": error.code,
                "status": error.status,
                "cause": type(exc).__name__,
            },
        )

    def _log_unstored(self, turn: Turn, status: str, exc: BaseException) -> None:
        log.warning(
            "chat turn not stored",
            exc_info=None if is_database_outage(exc) else exc,
            extra={"message_id": str(turn.message_id), "status": status, "cause": type(exc).__name__},
        )

    async def finish(
        self,
        turn: Turn,
        content: str,
        *,
        status: str,
        citations: list[Citation] | None = None,
        usage: RunUsage | None = None,
        error_code: str | None = None,
        answered: bool | None = None,
    ) -> None:
        latency = turn.elapsed_ms
        await self.repository.finish_message(
            turn.message_id,
            content=content,
            status=status,
            citations=[citation.model_dump() for citation in citations or []],
            model=self.model,
            latency_ms=latency,
            prompt_tokens=usage.prompt_tokens if usage is not None and usage.requests else None,
            completion_tokens=usage.completion_tokens if usage is not None and usage.requests else None,
            error_code=error_code,
            search_query=turn.search_query,
            answered=answered,
            first_token_ms=turn.first_delta_ms,
        )
        log.info(
            "chat turn",
            extra={
                "conversation_id": str(turn.conversation_id),
                "message_id": str(turn.message_id),
                "mode": turn.mode,
                "status": status,
                "latency_ms": latency,
                "prepare_ms": turn.prepared_ms,
                "first_delta_ms": turn.first_delta_ms,
                "passages": len(turn.context.passages),
                "searches": len(turn.context.searches),
                "cited": len(citations or []),
                "answered": answered,
                "question_chars": len(turn.request.message),
                # The selection is the reader's text: only its size is logged.
                "selection_chars": len(turn.request.selected_text or ""),
                "prompt_tokens": usage.prompt_tokens if usage else None,
                "completion_tokens": usage.completion_tokens if usage else None,
            },
        )

    async def finish_detached(self, turn: Turn, content: str, *, status: str) -> None:
        """`finish` in its own task, so a second cancellation of the caller cannot lose the write (nor can a
        clean shutdown: it waits for these tasks). A failed write is logged, not raised."""

        async def write() -> None:
            try:
                await self.finish(turn, content, status=status)
            except Exception as exc:
                self._log_unstored(turn, status, exc)

        task = asyncio.create_task(write())
        _background_writes.add(task)
        task.add_done_callback(_background_writes.discard)
        # If the caller is cancelled again, the task carries on; the caller re-raises its cancellation anyway.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)
