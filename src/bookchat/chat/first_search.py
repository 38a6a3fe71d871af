"""A turn's first search: model-free and history-aware, with the model's rewrite merged in when it may help."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bookchat.chat.coverage import gate_question, search_and_gate
from bookchat.chat.query_rewrite import QueryRewriter
from bookchat.retrieval.coverage_gate import CoverageVerdict
from bookchat.retrieval.followups import FollowupSearch, search_followup, wants_rewrite
from bookchat.retrieval.search import HybridRetriever, SearchFilters


async def first_search(
    retriever: HybridRetriever,
    message: str,
    previous_questions: Sequence[str],
    *,
    limit: int,
    filters: SearchFilters | None,
    gate: bool,
    rewriter: QueryRewriter | None,
) -> tuple[FollowupSearch, CoverageVerdict | None]:
    """The passages for `message` and the coverage gate's verdict (None when `gate` is off).

    The rewrite is asked for only when `wants_rewrite` says it may help (a dependent follow-up, a question in
    another script); it runs beside the model-free search, and the one call serves both the search (merged in)
    and the gate (a second chance for a question it refuses).
    """
    rewrite: asyncio.Task[str | None] | None = None
    if rewriter is not None and wants_rewrite(message, previous_questions):
        rewrite = asyncio.ensure_future(rewriter.rewrite(message, previous_questions))
    try:
        return await search_and_gate(
            retriever if gate else None,
            search_followup(retriever, message, previous_questions, limit=limit, filters=filters, rewrite=rewrite),
            gate_question(message, previous_questions),
            filters,
            rewrite,
        )
    finally:
        if rewrite is not None and not rewrite.done():
            rewrite.cancel()  # the search failed before it needed the rewrite
