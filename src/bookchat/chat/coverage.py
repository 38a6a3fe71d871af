"""Answered or not: the retrieval gate's refusal, and the model's NOT_COVERED marker taken off its reply."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

from bookchat.chat.schemas import ClosestPage
from bookchat.retrieval.coverage_gate import CoverageVerdict, judge_coverage
from bookchat.retrieval.followups import FollowupSearch, conversation_query, looks_dependent
from bookchat.retrieval.search import HybridRetriever, Passage, SearchFilters

# The line the prompts ask the model to start with when the passages (or the selection) do not hold the answer.
NOT_COVERED_MARKER = "NOT_COVERED"
# What the reader is told when the gate finds that the book does not cover the question (no model is called).
NOT_COVERED_REPLY = "The book does not seem to cover this question."
SELECTION_NOT_COVERED_REPLY = "The selected text does not seem to cover this question."
MAX_CLOSEST_PAGES = 3


def gate_question(message: str, previous_questions: Sequence[str]) -> str:
    """What the coverage gate judges: a follow-up that leans on the previous turn with that turn's question."""
    if previous_questions and looks_dependent(message):
        return conversation_query(message, previous_questions)
    return message


async def no_search() -> tuple[FollowupSearch, CoverageVerdict | None]:
    return FollowupSearch(queries=(), weights=(), dependent=False, hits=[]), None


async def search_and_gate(
    retriever: HybridRetriever | None,
    search: Awaitable[FollowupSearch],
    question: str,
    filters: SearchFilters | None,
    rewrite: Awaitable[str | None] | None = None,
) -> tuple[FollowupSearch, CoverageVerdict | None]:
    """The first search and the coverage gate's verdict on the question, side by side (no gate: `retriever` None).

    A question the gate refuses gets a second chance through the model's rewrite (the same awaitable the search
    merges in): a question in Urdu holds few of the book's words, its English rewrite does. The rewrite alone can
    only let a question through, and then the model still says when the passages do not cover it.
    """
    if retriever is None:  # the gate is off
        return await search, None
    found, verdict = await asyncio.gather(search, judge_coverage(retriever, question, filters=filters))
    if verdict.answered or rewrite is None:
        return found, verdict
    rewritten = await rewrite
    if rewritten and rewritten.strip() and rewritten.strip() != question.strip():
        second = await judge_coverage(retriever, rewritten, filters=filters)
        if second.answered:
            return found, second
    return found, verdict


def closest_pages(passages: Sequence[Passage], limit: int = MAX_CLOSEST_PAGES) -> list[ClosestPage]:
    """Up to `limit` distinct sections among the best passages, best first (offered, not cited)."""
    pages: list[ClosestPage] = []
    seen: set[tuple[str | None, tuple[str, ...]]] = set()
    for passage in passages:
        key = (passage.url, tuple(passage.heading_path))
        if key in seen:
            continue
        seen.add(key)
        pages.append(ClosestPage(title=passage.title, url=passage.url, heading_path=list(passage.heading_path)))
        if len(pages) == limit:
            break
    return pages


def strip_marker(text: str) -> tuple[str, bool]:
    """`text` without a leading NOT_COVERED marker line, and whether it had one."""
    head = text.lstrip()
    if not head.startswith(NOT_COVERED_MARKER):
        return text, False
    return head[len(NOT_COVERED_MARKER) :].lstrip(" \t:").lstrip("\r\n"), True


class MarkerFilter:
    """Takes the NOT_COVERED marker off the start of a streamed reply: the first characters are held back until
    it is known whether the reply starts with it, so no delta ever carries any of it."""

    def __init__(self) -> None:
        self._held = ""
        self._decided = False
        self.found = False

    def feed(self, piece: str) -> str:
        if self._decided:
            return piece
        self._held += piece
        head = self._held.lstrip()
        if len(head) < len(NOT_COVERED_MARKER) and NOT_COVERED_MARKER.startswith(head):
            return ""  # could still be the marker
        if head.startswith(NOT_COVERED_MARKER):
            rest = head[len(NOT_COVERED_MARKER) :]
            if not rest.strip(" \t:\r\n"):
                return ""  # the marker line's end (or the text after it) has not come yet
            self.found = True
        return self._release()

    def finish(self) -> str:
        """What is still held back when the reply ends."""
        if self._decided:
            return ""
        if self._held.lstrip().startswith(NOT_COVERED_MARKER):
            self.found = True
        return self._release()

    def _release(self) -> str:
        self._decided = True
        text, found = strip_marker(self._held)
        self.found = self.found or found
        self._held = ""
        return text
