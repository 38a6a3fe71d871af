"""One chat turn: store the question, gather passages, run the model (whole or streamed), cite, store the answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from uuid import UUID

from pydantic import BaseModel

from bookchat.chat.citations import CitationRewriter, strip_markers
from bookchat.chat.context import AgentMode, AnswerContext, RunUsage, prompt_passage
from bookchat.chat.prompts import retrieval_input, selection_input
from bookchat.chat.schemas import (
    ChatRequest,
    ChatResponse,
    Citation,
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    MetaEvent,
    SourcesEvent,
    TokenUsage,
)
from bookchat.config import Settings
from bookchat.conversations.repository import ConversationNotFound, ConversationRepository, HistoryMessage
from bookchat.conversations.schemas import Mode
from bookchat.errors import BadGateway, BookchatError, NotFound, ServiceUnavailable
from bookchat.llm.errors import retry_after_seconds, upstream_error
from bookchat.llm.extractive import extractive_answer
from bookchat.retrieval.search import HybridRetriever, Passage, SearchFilters
from bookchat.text import shorten

if TYPE_CHECKING:
    # The Agents SDK is imported at run time only where a model answers (see bookchat.chat.context).
    from agents import TResponseInputItem
    from openai.types.responses import EasyInputMessageParam

    from bookchat.chat.agent import AnswerStream
    from bookchat.llm.provider import LLM

log = logging.getLogger(__name__)

# Recent messages replayed as history: three exchanges keep follow-ups coherent at a bounded prompt size.
HISTORY_MESSAGES = 6
MAX_HISTORY_MESSAGE_CHARS = 2000
SNIPPET_CHARS = 280
SELECTION_TITLE = "Your selection"
# Text that arrives faster than this is sent as one delta: the first piece goes out at once, later ones at most
# 50 times a second. A reader cannot tell, and a fast model no longer costs one write per token per stream.
DELTA_INTERVAL_SECONDS = 0.02

# Database writes that must finish even when the request task is cancelled (the reader left).
_background_writes: set[asyncio.Task[None]] = set()

ServerEvent = tuple[str, BaseModel]


class EmptyAnswer(RuntimeError):
    """The model finished without writing any answer text."""


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    return shorten(text, limit)


def passage_citation(index: int, passage: Passage) -> Citation:
    return Citation(
        index=index,
        document_id=passage.document_id,
        chunk_id=passage.chunk_id,
        title=passage.title,
        url=passage.url,
        heading_path=list(passage.heading_path),
        snippet=snippet(passage.text),
        score=round(passage.score, 6),
    )


def selection_citation(selected_text: str, page_url: str | None) -> Citation:
    return Citation(index=1, title=SELECTION_TITLE, url=page_url, snippet=snippet(selected_text))


def cited(order: list[int], candidates: list[Citation]) -> list[Citation]:
    """The candidates the answer used, renumbered in order of first use (`order` holds original numbers)."""
    return [candidates[original - 1].model_copy(update={"index": new}) for new, original in enumerate(order, 1)]


def _new_citations(order: list[int], candidates: list[Citation], announced: int) -> list[Citation]:
    """Citations first used since `announced` were sent (most deltas cite nothing new)."""
    return cited(order, candidates)[announced:] if len(order) > announced else []


def _lines(text: str) -> Iterator[str]:
    yield from (match.group(0) for match in re.finditer(r"[^\n]*\n|[^\n]+", text))


@dataclass(frozen=True)
class _End:
    error: Exception | None = None


async def coalesce(pieces: AsyncIterator[str], interval: float) -> AsyncIterator[str]:
    """`pieces` re-cut: each yield joins everything that arrived since the previous one, and after a yield
    the next waits `interval` seconds (the first piece is never delayed). An error from `pieces` is raised
    after the text that came before it; closing this generator stops reading `pieces`."""
    queue: asyncio.Queue[str | _End] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for piece in pieces:
                queue.put_nowait(piece)
        except Exception as exc:
            queue.put_nowait(_End(exc))
        else:
            queue.put_nowait(_End())

    reader = asyncio.create_task(pump())
    try:
        while True:
            item = await queue.get()
            text: list[str] = []
            while not isinstance(item, _End):
                text.append(item)
                if queue.empty():
                    break
                item = queue.get_nowait()
            if text:
                yield "".join(text)
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            await asyncio.sleep(interval)
    finally:
        if not reader.done():
            reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def _no_passages() -> list[Passage]:
    return []


async def _pieces(text: str) -> AsyncIterator[str]:
    for piece in _lines(text):
        yield piece


@dataclass
class Turn:
    """Everything about one question while it is being answered."""

    owner_id: str
    request: ChatRequest
    mode: Mode
    conversation_id: UUID
    user_message_id: UUID
    message_id: UUID
    context: AnswerContext
    items: list[TResponseInputItem] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    prepared_ms: int | None = None  # question stored and passages found
    first_delta_ms: int | None = None  # first piece of the answer ready to send

    @property
    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    def candidates(self) -> list[Citation]:
        """What `[n]` may refer to: the selection alone, or the passages found so far, numbered from 1."""
        if self.request.selected_text is not None:
            return [selection_citation(self.request.selected_text, self.request.page_url)]
        return [passage_citation(number, passage) for number, passage in enumerate(self.context.passages, 1)]


class ChatService:
    """Answers questions. Routers call `start()`, then `answer()` (JSON) or `stream()` (SSE events)."""

    def __init__(
        self,
        repository: ConversationRepository,
        retriever: HybridRetriever,
        llm: LLM | None,
        settings: Settings,
    ) -> None:
        self.repository = repository
        self.retriever = retriever
        self.llm = llm
        self.settings = settings

    # ---- starting a turn

    async def start(self, owner_id: str, request: ChatRequest) -> Turn:
        """Store the question (before any model call, so it is never lost), then gather the passages.

        Raises `NotFound` for a conversation the owner does not have, `ServiceUnavailable` when the book
        search fails (the turn is then stored as failed).
        """
        started = time.perf_counter()
        selection = request.selected_text is not None
        mode: Mode = "extractive" if self.llm is None else ("selection" if selection else "retrieval")
        filters = None
        if request.filters is not None:
            filters = SearchFilters(
                document_ids=tuple(str(document_id) for document_id in request.filters.document_ids),
                path_prefix=request.filters.path_prefix,
            )
        store = self.repository.start_turn(
            owner_id=owner_id,
            conversation_id=request.conversation_id,
            question=request.message,
            selected_text=request.selected_text,
            page_url=request.page_url,
            mode=mode,
            # Selection mode shows the model the selection and nothing else, earlier answers included.
            history_messages=HISTORY_MESSAGES if mode == "retrieval" else 0,
        )
        search = (
            _no_passages()
            if selection
            else self.retriever.search(request.message, limit=self.settings.search_limit, filters=filters)
        )
        # The write and the search do not depend on each other: side by side, the first token comes sooner.
        stored, found = await asyncio.gather(store, search, return_exceptions=True)
        if isinstance(stored, ConversationNotFound):
            raise NotFound("No such conversation.", code="conversation-not-found")
        if isinstance(stored, BaseException):
            raise stored
        context = AnswerContext(
            retriever=None if selection else self.retriever,
            filters=filters,
            passages=[],
            search_limit=self.settings.search_limit,
        )
        turn = Turn(
            owner_id=owner_id,
            request=request,
            mode=mode,
            conversation_id=stored.conversation_id,
            user_message_id=stored.user_message_id,
            message_id=stored.assistant_message_id,
            context=context,
            started=started,
        )
        if isinstance(found, BaseException):
            log.error(
                "book search failed",
                exc_info=found,
                extra={"conversation_id": str(turn.conversation_id)},
            )
            await self._finish(turn, "", status="error", error_code="search-unavailable")
            raise ServiceUnavailable(
                "The book search is unavailable; try again shortly.",
                headers={"Retry-After": "5"},
                code="search-unavailable",
            )
        context.passages.extend(found)
        turn.prepared_ms = turn.elapsed_ms
        if mode == "retrieval":
            turn.items = [*self._history_items(stored.history), self._user_item(turn)]
        elif mode == "selection":
            turn.items = [self._user_item(turn)]
        return turn

    def _history_items(self, history: list[HistoryMessage]) -> list[TResponseInputItem]:
        items: list[TResponseInputItem] = []
        for message in history:
            # Old answers' [n] pointed at other passages; without them they cannot be confused with today's.
            if message.role == "assistant":
                items.append(input_message("assistant", strip_markers(message.content)[:MAX_HISTORY_MESSAGE_CHARS]))
            else:
                items.append(input_message("user", message.content[:MAX_HISTORY_MESSAGE_CHARS]))
        return items

    def _user_item(self, turn: Turn) -> TResponseInputItem:
        request = turn.request
        if request.selected_text is not None:
            content = selection_input(request.message, request.selected_text, request.page_url)
        else:
            content = retrieval_input(
                request.message,
                [prompt_passage(number, passage) for number, passage in enumerate(turn.context.passages, 1)],
            )
        return input_message("user", content)

    def _extractive_text(self, turn: Turn) -> str:
        request = turn.request
        if request.selected_text is not None:
            return extractive_answer(request.message, [request.selected_text], selection=True)
        return extractive_answer(request.message, [passage.text for passage in turn.context.passages])

    # ---- a whole answer

    async def answer(self, turn: Turn) -> ChatResponse:
        """Answer in one piece; an upstream failure is stored on the turn and raised as 502/503/504."""
        usage = RunUsage()
        try:
            if self.llm is None:
                text = self._extractive_text(turn)
            else:
                from bookchat.chat.agent import run_answer

                result = await run_answer(self.llm, self._agent_mode(turn), turn.items, turn.context)
                text, usage = result.text, result.usage
            if not text.strip():
                raise EmptyAnswer
        except asyncio.CancelledError:
            await self._finish_detached(turn, "", status="cancelled")
            raise
        except Exception as exc:
            raise await self._fail(turn, exc) from None
        candidates = turn.candidates()
        rewriter = CitationRewriter(len(candidates))
        answer = rewriter.rewrite(text)
        citations = cited(rewriter.order, candidates)
        await self._finish(turn, answer, status="ok", citations=citations, usage=usage)
        return ChatResponse(
            conversation_id=turn.conversation_id,
            message_id=turn.message_id,
            user_message_id=turn.user_message_id,
            answer=answer,
            citations=citations,
            sources=candidates,
            mode=turn.mode,
            model=self._model_name,
            usage=_token_usage(usage),
            latency_ms=turn.elapsed_ms,
        )

    # ---- a streamed answer

    async def stream(self, turn: Turn) -> AsyncIterator[ServerEvent]:
        """SSE events: `meta`, `citations` (candidates), `delta`*, then `done` or `error`.

        Deltas carry the answer with citation markers already renumbered (a possible marker is held back
        until it closes), so the deltas concatenated are exactly the stored answer. A delta that cites a
        passage for the first time lists it under `citations` with its final number. If the consumer goes
        away (client disconnect), the model call is cancelled and the partial answer stored as `cancelled`.
        """
        yield (
            "meta",
            MetaEvent(
                conversation_id=turn.conversation_id,
                message_id=turn.message_id,
                user_message_id=turn.user_message_id,
                mode=turn.mode,
            ),
        )
        candidates = turn.candidates()
        yield "citations", SourcesEvent(citations=candidates)
        rewriter = CitationRewriter(len(candidates))
        emitted: list[str] = []
        announced = 0
        answer_stream: AnswerStream | None = None
        try:
            if self.llm is None:
                source = _pieces(self._extractive_text(turn))
            else:
                from bookchat.chat.agent import AnswerStream

                answer_stream = AnswerStream.start(self.llm, self._agent_mode(turn), turn.items, turn.context)
                source = answer_stream.deltas()
            pieces = coalesce(source, DELTA_INTERVAL_SECONDS)
            async for piece in pieces:
                if len(turn.context.passages) != len(candidates) and turn.request.selected_text is None:
                    candidates = turn.candidates()  # search_book found more passages
                    rewriter.available = len(candidates)
                text = rewriter.feed(piece)
                if text:
                    if turn.first_delta_ms is None:
                        turn.first_delta_ms = turn.elapsed_ms
                    emitted.append(text)
                    fresh = _new_citations(rewriter.order, candidates, announced)
                    announced = len(rewriter.order)
                    yield "delta", DeltaEvent(text=text, citations=fresh)
            text = rewriter.finish()
            if text:
                emitted.append(text)
                yield "delta", DeltaEvent(text=text, citations=_new_citations(rewriter.order, candidates, announced))
            if not "".join(emitted).strip():
                raise EmptyAnswer
        except (asyncio.CancelledError, GeneratorExit):
            if answer_stream is not None:
                answer_stream.cancel()
            await self._finish_detached(turn, "".join(emitted), status="cancelled")
            raise
        except Exception as exc:
            error = await self._fail(turn, exc, partial="".join(emitted))
            yield (
                "error",
                ErrorEvent(
                    code=error.code, message=error.detail, status=error.status, retry_after=retry_after_seconds(error)
                ),
            )
            return
        usage = answer_stream.usage if answer_stream is not None else RunUsage()
        citations = cited(rewriter.order, candidates)
        await self._finish(turn, "".join(emitted), status="ok", citations=citations, usage=usage)
        yield (
            "done",
            DoneEvent(
                message_id=turn.message_id,
                status="ok",
                citations=citations,
                usage=_token_usage(usage),
                latency_ms=turn.elapsed_ms,
                model=self._model_name,
            ),
        )

    # ---- bookkeeping

    @property
    def _model_name(self) -> str | None:
        return self.llm.model_name if self.llm is not None else None

    def _agent_mode(self, turn: Turn) -> AgentMode:
        return "selection" if turn.mode == "selection" else "retrieval"

    async def _fail(self, turn: Turn, exc: BaseException, partial: str = "") -> BookchatError:
        error: BookchatError = (
            BadGateway("The language model returned no answer.", code="llm-empty-answer")
            if isinstance(exc, EmptyAnswer)
            else upstream_error(exc)
        )
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
        await self._finish(turn, partial, status="error", error_code=error.code)
        return error

    async def _finish(
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
            model=self._model_name,
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

    async def _finish_detached(self, turn: Turn, content: str, *, status: str) -> None:
        """`_finish` in its own task, so a second cancellation of the caller cannot lose the write."""
        task = asyncio.create_task(self._finish(turn, content, status=status))
        _background_writes.add(task)
        task.add_done_callback(_background_writes.discard)
        # If the caller is cancelled again, the task carries on; the caller re-raises its cancellation anyway.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)


def input_message(role: Literal["user", "assistant"], content: str) -> EasyInputMessageParam:
    """One message of the model's input, as the Agents SDK takes it (a plain dict: no SDK import needed)."""
    return {"role": role, "content": content}


def _token_usage(usage: RunUsage) -> TokenUsage:
    return TokenUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.prompt_tokens + usage.completion_tokens,
    )
