"""The model's input for a turn: the replayed history and the question with its passages, as the Agents SDK takes it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from bookchat.chat.citations import strip_markers
from bookchat.chat.context import prompt_passage
from bookchat.chat.prompts import retrieval_input, selection_input
from bookchat.chat.turn import Turn
from bookchat.conversations.repository import HistoryMessage

if TYPE_CHECKING:
    # The Agents SDK is imported at run time only where a model answers (see bookchat.chat.context).
    from agents import TResponseInputItem
    from openai.types.responses import EasyInputMessageParam

# Recent messages replayed as history: three exchanges keep follow-ups coherent at a bounded prompt size.
HISTORY_MESSAGES = 6
MAX_HISTORY_MESSAGE_CHARS = 2000


def input_message(role: Literal["user", "assistant"], content: str) -> EasyInputMessageParam:
    """One message of the model's input, as the Agents SDK takes it (a plain dict: no SDK import needed)."""
    return {"role": role, "content": content}


def history_items(history: list[HistoryMessage]) -> list[TResponseInputItem]:
    items: list[TResponseInputItem] = []
    for message in history:
        # Old answers' [n] pointed at other passages; without them they cannot be confused with today's.
        if message.role == "assistant":
            items.append(input_message("assistant", strip_markers(message.content)[:MAX_HISTORY_MESSAGE_CHARS]))
        else:
            items.append(input_message("user", message.content[:MAX_HISTORY_MESSAGE_CHARS]))
    return items


def user_item(turn: Turn) -> TResponseInputItem:
    request = turn.request
    if request.selected_text is not None:
        content = selection_input(request.message, request.selected_text, request.page_url)
    else:
        content = retrieval_input(
            request.message,
            [prompt_passage(number, passage) for number, passage in enumerate(turn.context.passages, 1)],
        )
    return input_message("user", content)
