"""The chat service routers call: a turn's question stored and passages found, then answered whole or streamed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel

from bookchat.chat.bookkeeping import EmptyAnswer, TurnRecords
from bookchat.chat.citations import CitationRewriter
from bookchat.chat.context import AgentMode, AnswerContext, RunUsage
from bookchat.chat.coverage import (
    NOT_COVERED_REPLY,
    SELECTION_NOT_COVERED_REPLY,
    MarkerFilter,
    closest_pages,
    no_search,
    strip_marker,
)
from bookchat.chat.extractive import extractive_pieces, extractive_text
from bookchat.chat.first_search import first_search
from bookchat.chat.inputs import HISTORY_MESSAGES, history_items, user_item
from bookchat.chat.query_rewrite import QueryRewriter
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
from bookchat.chat.streaming import DELTA_INTERVAL_SECONDS, coalesce
from bookchat.chat.turn import Turn, cited
from bookchat.config import Settings
from bookchat.conversations.repository import ConversationNotFound, ConversationRepository, HistoryMessage
from bookchat.conversations.schemas import Mode
from bookchat.errors import BookchatError, NotFound, ServiceUnavailable
from bookchat.llm.errors import retry_after_seconds
from bookchat.retrieval.search import HybridRetriever, SearchFilters

if TYPE_CHECKING:
    # The Agents SDK is imported at run time only where a model answers (see bookchat.chat.context).
    from bookchat.chat.agent import AnswerStream
    from bookchat.llm.provider import LLM

log = logging.getLogger(__name__)

ServerEvent = tuple[str, BaseModel]


def _new_citations(order: list[int], candidates: list[Citation], announced: int) -> list[Citation]:
    """Citations first used since `announced` were sent (most deltas cite nothing new)."""
    return cited(order, candidates)[announced:] if len(order) > announced else []


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
        self._records = TurnRecords(repository, self._model_name)
        self._rewriter = QueryRewriter.configured(llm, settings)

    # ---- starting a turn

    async def start(self, owner_id: str, request: ChatRequest, earlier_questions: Sequence[str] = ()) -> Turn:
        """Store the question (before any model call, so it is never lost), then gather the passages.

        `earlier_questions` are the reader's earlier questions when the client keeps the conversation itself
        (`/v1` with its own `messages`); a stored conversation's own history is used otherwise.

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
        # Selection mode shows the model the selection and nothing else, earlier answers included.
        history_messages = 0 if selection else HISTORY_MESSAGES
        history: list[HistoryMessage] | None = None
        if request.conversation_id is not None and history_messages:
            # A follow-up's first search takes the previous question: the history the prompt replays is read
            # first (once), then the write and the search run side by side.
            history = await self.repository.recent_history(owner_id, request.conversation_id, history_messages)
        store = self.repository.start_turn(
            owner_id=owner_id,
            conversation_id=request.conversation_id,
            question=request.message,
            selected_text=request.selected_text,
            page_url=request.page_url,
            mode=mode,
            history_messages=history_messages,
            history=history,
        )
        previous_questions = (
            [message.content for message in history or [] if message.role == "user"]
            if request.conversation_id is not None
            else list(earlier_questions)
        )
        search = (
            no_search()
            if selection
            else first_search(
                self.retriever,
                request.message,
                previous_questions,
                limit=self.settings.search_limit,
                filters=filters,
                gate=self.settings.coverage_gate,
                rewriter=self._rewriter,
            )
        )
        # The write and the search do not depend on each other: side by side, the first token comes sooner.
        stored, searched = await asyncio.gather(store, search, return_exceptions=True)
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
        if isinstance(searched, BaseException) and not isinstance(searched, Exception):
            # A cancellation (or an exit) is not a failed search: the turn is cancelled, and so is the caller.
            await self._records.finish_detached(turn, "", status="cancelled")
            raise searched
        if isinstance(searched, BaseException):
            log.error(
                "book search failed",
                exc_info=searched,
                extra={"conversation_id": str(turn.conversation_id)},
            )
            await self._records.finish_failed(turn, "", "search-unavailable")
            raise ServiceUnavailable(
                "The book search is unavailable; try again shortly.",
                headers={"Retry-After": "5"},
                code="search-unavailable",
            )
        found, verdict = searched
        turn.search_query = found.searched
        if verdict is not None and not verdict.answered:
            # The book does not cover the question: no model is called, and nothing is cited.
            turn.covered = False
            turn.closest = closest_pages(found.hits)
            turn.prepared_ms = turn.elapsed_ms
            return turn
        context.passages.extend(found.hits)
        turn.prepared_ms = turn.elapsed_ms
        if mode == "retrieval":
            turn.items = [*history_items(stored.history), user_item(turn)]
        elif mode == "selection":
            turn.items = [user_item(turn)]
        return turn

    # ---- a whole answer

    async def answer(self, turn: Turn) -> ChatResponse:
        """Answer in one piece; an upstream failure is stored on the turn and raised as 502/503/504."""
        usage = RunUsage()
        if not turn.covered:
            return await self._not_covered_answer(turn)
        try:
            if self.llm is None:
                text = extractive_text(turn)
            else:
                from bookchat.chat.agent import run_answer

                result = await run_answer(self.llm, self._agent_mode(turn), turn.items, turn.context)
                text, usage = result.text, result.usage
            text, not_covered = strip_marker(text)
            if not_covered and not text.strip():
                text = self._not_covered_reply(turn)
            if not text.strip():
                raise EmptyAnswer
        except asyncio.CancelledError:
            await self._records.finish_detached(turn, "", status="cancelled")
            raise
        except Exception as exc:
            raise await self._records.fail(turn, exc) from None
        candidates = turn.candidates()
        rewriter = CitationRewriter(len(candidates))
        answer = rewriter.rewrite(text)
        citations = cited(rewriter.order, candidates)
        return await self._stored_response(
            turn, answer, citations, candidates, usage, answered=not not_covered, model=self._model_name
        )

    async def _not_covered_answer(self, turn: Turn) -> ChatResponse:
        """The gate's refusal as a whole answer: a plain sentence, nothing cited, the nearest sections offered."""
        return await self._stored_response(turn, NOT_COVERED_REPLY, [], [], RunUsage(), answered=False, model=None)

    async def _stored_response(
        self,
        turn: Turn,
        answer: str,
        citations: list[Citation],
        sources: list[Citation],
        usage: RunUsage,
        *,
        answered: bool,
        model: str | None,
    ) -> ChatResponse:
        """The answer stored, then the reply; the problem instead when it could not be stored."""
        error = await self._records.answered(turn, answer, citations=citations, usage=usage, answered=answered)
        if error is not None:
            raise error
        return ChatResponse(
            conversation_id=turn.conversation_id,
            message_id=turn.message_id,
            user_message_id=turn.user_message_id,
            answer=answer,
            citations=citations,
            sources=sources,
            mode=turn.mode,
            model=model,
            usage=_token_usage(usage),
            latency_ms=turn.elapsed_ms,
            answered=answered,
            closest_pages=turn.closest,
        )

    def _not_covered_reply(self, turn: Turn) -> str:
        return SELECTION_NOT_COVERED_REPLY if turn.mode == "selection" else NOT_COVERED_REPLY

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
        if not turn.covered:
            async for event in self._not_covered_stream(turn):
                yield event
            return
        candidates = turn.candidates()
        yield "citations", SourcesEvent(citations=candidates)
        rewriter = CitationRewriter(len(candidates))
        marker = MarkerFilter()
        emitted: list[str] = []
        announced = 0
        answer_stream: AnswerStream | None = None
        try:
            if self.llm is None:
                source = extractive_pieces(turn)
            else:
                from bookchat.chat.agent import AnswerStream

                answer_stream = AnswerStream.start(self.llm, self._agent_mode(turn), turn.items, turn.context)
                source = answer_stream.deltas()
            # Closed with this generator too (the reader left mid-delta), so the source stops being read now.
            async with contextlib.aclosing(coalesce(source, DELTA_INTERVAL_SECONDS)) as pieces:
                async for raw in pieces:
                    # Held back while it may still be the NOT_COVERED marker, which no reader sees.
                    piece = marker.feed(raw)
                    if not piece:
                        continue
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
            text = rewriter.feed(marker.finish()) + rewriter.finish()
            if marker.found and not "".join(emitted).strip() and not text.strip():
                text = self._not_covered_reply(turn)
            if text:
                emitted.append(text)
                yield "delta", DeltaEvent(text=text, citations=_new_citations(rewriter.order, candidates, announced))
            if not "".join(emitted).strip():
                raise EmptyAnswer
        except (asyncio.CancelledError, GeneratorExit):
            if answer_stream is not None:
                answer_stream.cancel()
            await self._records.finish_detached(turn, "".join(emitted), status="cancelled")
            raise
        except Exception as exc:
            yield "error", _error_event(await self._records.fail(turn, exc, partial="".join(emitted)))
            return
        usage = answer_stream.usage if answer_stream is not None else RunUsage()
        citations = cited(rewriter.order, candidates)
        async for event in self._stored_then_done(
            turn, "".join(emitted), citations, usage, answered=not marker.found, model=self._model_name
        ):
            yield event

    async def _not_covered_stream(self, turn: Turn) -> AsyncIterator[ServerEvent]:
        """The gate's refusal as events after `meta`: no candidates, one delta, then `done` (answered: false)."""
        yield "citations", SourcesEvent(citations=[])
        turn.first_delta_ms = turn.elapsed_ms
        yield "delta", DeltaEvent(text=NOT_COVERED_REPLY)
        async for event in self._stored_then_done(turn, NOT_COVERED_REPLY, [], RunUsage(), answered=False, model=None):
            yield event

    async def _stored_then_done(
        self,
        turn: Turn,
        text: str,
        citations: list[Citation],
        usage: RunUsage,
        *,
        answered: bool,
        model: str | None,
    ) -> AsyncIterator[ServerEvent]:
        """The answer stored, then `done`; `error` instead when it could not be stored. Written before `done`
        is sent, so a reader told "done" finds the answer in the history."""
        error = await self._records.answered(turn, text, citations=citations, usage=usage, answered=answered)
        if error is not None:
            yield "error", _error_event(error)
            return
        yield (
            "done",
            DoneEvent(
                message_id=turn.message_id,
                status="ok",
                citations=citations,
                usage=_token_usage(usage),
                latency_ms=turn.elapsed_ms,
                model=model,
                answered=answered,
                closest_pages=turn.closest,
            ),
        )

    @property
    def _model_name(self) -> str | None:
        return self.llm.model_name if self.llm is not None else None

    def _agent_mode(self, turn: Turn) -> AgentMode:
        return "selection" if turn.mode == "selection" else "retrieval"


def _error_event(error: BookchatError) -> ErrorEvent:
    return ErrorEvent(
        code=error.code, message=error.detail, status=error.status, retry_after=retry_after_seconds(error)
    )


def _token_usage(usage: RunUsage) -> TokenUsage:
    return TokenUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.prompt_tokens + usage.completion_tokens,
    )
