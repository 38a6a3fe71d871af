"""How a turn ends in the store and the log: answered, failed (its cause mapped to a problem), or cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from bookchat.chat.context import RunUsage
from bookchat.chat.schemas import Citation
from bookchat.chat.turn import Turn
from bookchat.conversations.repository import ConversationRepository
from bookchat.errors import BadGateway, BookchatError
from bookchat.llm.errors import upstream_error

# The name these lines had before they moved out of the service: a turn's log line, `logger` field included, is
# the same as it was.
log = logging.getLogger("bookchat.chat.service")

# Database writes that must finish even when the request task is cancelled (the reader left).
_background_writes: set[asyncio.Task[None]] = set()


class EmptyAnswer(RuntimeError):
    """The model finished without writing any answer text."""


def turn_error(exc: BaseException) -> BookchatError:
    """The problem a reader is shown for what made the answer fail."""
    if isinstance(exc, EmptyAnswer):
        return BadGateway("The language model returned no answer.", code="llm-empty-answer")
    return upstream_error(exc)


class TurnRecords:
    """Stores each turn's answer (or failure) on its assistant message and logs one "chat turn" line for it."""

    def __init__(self, repository: ConversationRepository, model: str | None) -> None:
        self.repository = repository
        self.model = model

    async def fail(self, turn: Turn, exc: BaseException, partial: str = "") -> BookchatError:
        error = turn_error(exc)
        log.warning(
            "chat turn failed",
            extra={
                "conversation_id": str(turn.conversation_id),
                "mode": turn.mode,
                "error_code": error.code,
                "status": error.status,
                "cause": type(exc).__name__,
            },
        )
        await self.finish(turn, partial, status="error", error_code=error.code)
        return error

    async def finish(
        self,
        turn: Turn,
        content: str,
        *,
        status: str,
        citations: list[Citation] | None = None,
        usage: RunUsage | None = None,
        error_code: str | None = None,
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
                "question_chars": len(turn.request.message),
                # The selection is the reader's text: only its size is logged.
                "selection_chars": len(turn.request.selected_text or ""),
                "prompt_tokens": usage.prompt_tokens if usage else None,
                "completion_tokens": usage.completion_tokens if usage else None,
            },
        )

    async def finish_detached(self, turn: Turn, content: str, *, status: str) -> None:
        """`finish` in its own task, so a second cancellation of the caller cannot lose the write."""
        task = asyncio.create_task(self.finish(turn, content, status=status))
        _background_writes.add(task)
        task.add_done_callback(_background_writes.discard)
        # If the caller is cancelled again, the task carries on; the caller re-raises its cancellation anyway.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)
