"""`POST /api/chat`: a reader's question answered as JSON or as Server-Sent Events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from bookchat.auth.dependencies import PrincipalDep
from bookchat.auth.rate_limits import acquire_stream_slot, rate_limit
from bookchat.chat.schemas import ChatRequest, ChatResponse
from bookchat.chat.service import ChatService
from bookchat.chat.sse import accepts_event_stream, encode_events, stream_in_slot
from bookchat.conversations.repository import ConversationRepository
from bookchat.runtime.dependencies import ResourcesDep

router = APIRouter(tags=["chat"])


async def get_chat_service(resources: ResourcesDep) -> ChatService:
    return ChatService(
        ConversationRepository(resources.database.pool),
        resources.retriever,
        resources.llm,
        resources.settings,
    )


ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]

_STREAM_DESCRIPTION = """\
With `"stream": true` or `Accept: text/event-stream`: Server-Sent Events, each `event: <name>` with a
one-line JSON `data:`, in this order —
`meta` `{conversation_id, message_id, user_message_id, mode}`;
`citations` `{citations}` — the candidate passages, numbered as the model sees them (sent before the first token);
`delta` `{text, citations}` — the next piece of the answer, whose `[n]` markers already carry their final
numbers; `citations` lists the passages this piece cites for the first time;
then `done` `{message_id, status, citations, usage, latency_ms, model}` — the final citations, numbered as in the
text — or `error` `{code, message, status, retry_after}`.
The `delta` texts concatenated are exactly the stored answer. Closing the connection stops the model; the
partial answer is kept with status `cancelled`.
"""

# What one parsed Server-Sent Event looks like (schema checkers such as schemathesis validate each event).
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["meta", "citations", "delta", "done", "error"]},
        "data": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The answer (JSON), or a stream of events.\n\n" + _STREAM_DESCRIPTION,
        "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
    },
    404: {"description": "`conversation_id` is not one of the caller's conversations."},
    429: {"description": "Too many questions, or too many open streams; see `Retry-After`."},
    502: {"description": "The language model failed or answered with something unusable."},
    503: {"description": "The language model is rate limited or overloaded (see `Retry-After`), or search is down."},
    504: {"description": "The language model did not answer in time."},
}


@router.post(
    "/api/chat",
    response_model=ChatResponse,
    responses=_RESPONSES,
    dependencies=[Depends(rate_limit("chat"))],
)
async def chat(body: ChatRequest, request: Request, principal: PrincipalDep, service: ChatServiceDep) -> Any:
    """Answer a question about the book, with citations that link to the passages used.

    * **retrieval** (default): the book is searched and the model answers from the numbered passages; it
      may search again once or twice for a follow-up question.
    * **selection** (`selected_text` given): the model sees only the selected text and the question.
    * **extractive** (no language model configured): the best matching sentences, each cited.

    The question is stored before the model is called, so it survives an upstream failure; the answer is
    stored with its citations, model, latency and token usage, in the conversation `conversation_id`
    (a new one when omitted).
    """
    if not (body.stream or accepts_event_stream(request.headers.get("accept"))):
        turn = await service.start(principal.id, body)
        response: ChatResponse = await service.answer(turn)
        return response
    # A 429 must be sent before the stream starts, so the slot is taken first and released when the stream ends.
    release = await acquire_stream_slot(request, principal)
    return await stream_in_slot(
        release, service.start(principal.id, body), lambda turn: encode_events(service.stream(turn))
    )


__all__ = ["ChatServiceDep", "get_chat_service", "router"]
