"""A turn answered without a language model: the best matching sentences of its passages or selection."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

from bookchat.chat.turn import Turn
from bookchat.llm.extractive import extractive_answer


def extractive_text(turn: Turn) -> str:
    request = turn.request
    if request.selected_text is not None:
        return extractive_answer(request.message, [request.selected_text], selection=True)
    return extractive_answer(request.message, [passage.text for passage in turn.context.passages])


def _lines(text: str) -> Iterator[str]:
    yield from (match.group(0) for match in re.finditer(r"[^\n]*\n|[^\n]+", text))


async def _pieces(text: str) -> AsyncIterator[str]:
    for piece in _lines(text):
        yield piece


def extractive_pieces(turn: Turn) -> AsyncIterator[str]:
    """The extractive answer a line at a time, as a stream; the answer is found now, before the first piece is
    asked for, so a failure to find it is raised here and not from inside the stream."""
    return _pieces(extractive_text(turn))
