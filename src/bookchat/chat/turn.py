"""One question while it is being answered: the turn's record, and the citations its `[n]` markers may point at."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import UUID

from bookchat.chat.context import AnswerContext
from bookchat.chat.schemas import ChatRequest, Citation, ClosestPage
from bookchat.conversations.schemas import Mode
from bookchat.retrieval.search import Passage
from bookchat.text import shorten

if TYPE_CHECKING:
    # The Agents SDK is imported at run time only where a model answers (see bookchat.chat.context).
    from agents import TResponseInputItem

SNIPPET_CHARS = 280
SELECTION_TITLE = "Your selection"


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
    search_query: str | None = None  # what the first search ran (None: no search)
    covered: bool = True  # the coverage gate's verdict (False: the model is not called)
    closest: list[ClosestPage] = field(default_factory=list)  # nearest sections when not covered

    @property
    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    def candidates(self) -> list[Citation]:
        """What `[n]` may refer to: the selection alone, or the passages found so far, numbered from 1."""
        if self.request.selected_text is not None:
            return [selection_citation(self.request.selected_text, self.request.page_url)]
        return [passage_citation(number, passage) for number, passage in enumerate(self.context.passages, 1)]
