"""`bookchat ask`: one question answered in the terminal, streamed as it is written, then its sources."""

from __future__ import annotations

import sys
from typing import TextIO

from pydantic import ValidationError

from bookchat.chat.schemas import ChatRequest, Citation, DeltaEvent, DoneEvent, ErrorEvent
from bookchat.chat.service import ChatService
from bookchat.conversations.repository import ConversationRepository
from bookchat.errors import BookchatError
from bookchat.runtime.resources import Resources

CLI_OWNER_ID = "service:cli"


def format_citation(citation: Citation) -> str:
    where = " › ".join(citation.heading_path) or citation.title
    line = f"[{citation.index}] {citation.title}" + (f" — {where}" if where != citation.title else "")
    return line + (f"\n    {citation.url}" if citation.url else "")


async def ask_in_terminal(
    resources: Resources,
    question: str,
    *,
    selection: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    owner_id: str = CLI_OWNER_ID,
) -> int:
    """Stream the answer to `question` (about `selection` only, when given) to `out`; return an exit code.

    The turn is stored like any other, owned by `owner_id`. 0: answered; 1: the model or the search
    failed (the reason goes to `err`); 2: the question is not acceptable (empty, too long).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        request = ChatRequest(message=question, selected_text=selection)
    except ValidationError as exc:
        for error in exc.errors():
            field = "question" if error["loc"][:1] == ("message",) else "selection"
            err.write(f"bookchat ask: {field}: {error['msg']}\n")
        return 2
    service = ChatService(
        ConversationRepository(resources.database.pool), resources.retriever, resources.llm, resources.settings
    )
    try:
        turn = await service.start(owner_id, request)
    except BookchatError as exc:
        err.write(f"bookchat ask: {exc.detail}\n")
        return 1
    async for _name, event in service.stream(turn):
        if isinstance(event, DeltaEvent):
            out.write(event.text)
            out.flush()
        elif isinstance(event, ErrorEvent):
            out.write("\n")
            err.write(f"bookchat ask: {event.message} ({event.code})\n")
            return 1
        elif isinstance(event, DoneEvent):
            out.write("\n")
            if event.citations:
                out.write("\nSources:\n" + "\n".join(format_citation(c) for c in event.citations) + "\n")
            out.flush()
    return 0
