"""HTTP routes of the reader's history: list, read and delete conversations, rate answers."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response, status

from bookchat.auth.dependencies import PrincipalDep
from bookchat.conversations.repository import (
    ConversationRecord,
    ConversationRepository,
    FeedbackRecord,
    MessageRecord,
)
from bookchat.conversations.schemas import (
    ConversationDetail,
    ConversationPage,
    ConversationSummary,
    FeedbackIn,
    FeedbackOut,
    MessageOut,
    TokenUsage,
)
from bookchat.errors import NotFound, UnprocessableContent
from bookchat.runtime.dependencies import PoolDep

router = APIRouter(tags=["conversations"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such conversation for this caller (others' ids look missing too)."}
}


async def get_conversation_repository(pool: PoolDep) -> ConversationRepository:
    return ConversationRepository(pool)


RepositoryDep = Annotated[ConversationRepository, Depends(get_conversation_repository)]


def _summary(record: ConversationRecord) -> ConversationSummary:
    return ConversationSummary(
        id=record.id,
        title=record.title,
        created_at=record.created_at,
        updated_at=record.updated_at,
        message_count=record.message_count,
    )


def _feedback(record: FeedbackRecord) -> FeedbackOut:
    return FeedbackOut(
        message_id=record.message_id,
        rating=record.rating,
        comment=record.comment,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def _message(record: MessageRecord) -> MessageOut:
    usage = None
    if record.prompt_tokens is not None or record.completion_tokens is not None:
        prompt, completion = record.prompt_tokens or 0, record.completion_tokens or 0
        usage = TokenUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
    values: dict[str, Any] = {
        "id": record.id,
        "role": record.role,
        "content": record.content,
        "selected_text": record.selected_text,
        "page_url": record.page_url,
        "citations": record.citations,
        "mode": record.mode,
        "model": record.model,
        "status": record.status,
        "error_code": record.error_code,
        "latency_ms": record.latency_ms,
        "usage": usage,
        "search_query": record.search_query,
        "answered": record.answered,
        "feedback": _feedback(record.feedback) if record.feedback is not None else None,
        "created_at": record.created_at,
    }
    return MessageOut.model_validate(values)


@router.get("/api/conversations", response_model=ConversationPage)
async def list_conversations(
    principal: PrincipalDep,
    repository: RepositoryDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Conversations per page.")] = 20,
    cursor: Annotated[str | None, Query(max_length=200, description="`next_cursor` of the previous page.")] = None,
) -> ConversationPage:
    """The caller's conversations, most recently active first, titled after their first question."""
    records, next_cursor = await repository.list_conversations(principal.id, limit=limit, cursor=cursor)
    return ConversationPage(items=[_summary(record) for record in records], next_cursor=next_cursor)


@router.get("/api/conversations/{conversation_id}", response_model=ConversationDetail, responses=_NOT_FOUND)
async def get_conversation(
    conversation_id: UUID, principal: PrincipalDep, repository: RepositoryDep
) -> ConversationDetail:
    """One conversation with its messages in order: questions, answers with citations, status and feedback."""
    record = await repository.get_conversation(principal.id, conversation_id)
    if record is None:
        raise NotFound("No such conversation.", code="conversation-not-found")
    messages = await repository.list_messages(principal.id, conversation_id)
    return ConversationDetail(
        id=record.id,
        title=record.title,
        created_at=record.created_at,
        updated_at=record.updated_at,
        messages=[_message(message) for message in messages],
    )


@router.delete("/api/conversations/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND)
async def delete_conversation(conversation_id: UUID, principal: PrincipalDep, repository: RepositoryDep) -> Response:
    """Delete a conversation with all its messages and feedback."""
    if not await repository.delete_conversation(principal.id, conversation_id):
        raise NotFound("No such conversation.", code="conversation-not-found")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/api/messages/{message_id}/feedback",
    response_model=FeedbackOut,
    responses={404: {"description": "No such message for this caller."}, 422: {"description": "Not an answer."}},
)
async def give_feedback(
    message_id: UUID, body: FeedbackIn, principal: PrincipalDep, repository: RepositoryDep
) -> FeedbackOut:
    """Thumbs up or down on an answer, with an optional comment; sending again replaces the previous verdict."""
    role = await repository.message_role(principal.id, message_id)
    if role is None:
        raise NotFound("No such message.", code="message-not-found")
    if role != "assistant":
        raise UnprocessableContent("Feedback is for answers, not questions.", code="not-an-answer")
    record = await repository.save_feedback(principal.id, message_id, body.rating, body.comment)
    return _feedback(record)
