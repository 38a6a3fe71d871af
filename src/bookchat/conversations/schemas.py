"""Request and response models of the conversation history API (and the citation shape chat shares)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from bookchat.text import StorableStr

Mode = Literal["retrieval", "selection", "extractive"]
MessageStatus = Literal["pending", "ok", "error", "cancelled"]
Rating = Literal["up", "down"]

MAX_FEEDBACK_COMMENT = 2000


class Citation(BaseModel):
    """One passage an answer cites; `index` is the `[n]` used in the answer text."""

    index: int = Field(ge=1, examples=[1])
    document_id: str | None = Field(
        None, description="The document (None for the reader's own selection).", examples=["5f0c..."]
    )
    chunk_id: str | None = Field(None, description="The chunk (Qdrant point id).", examples=["8a1e..."])
    title: str = Field(examples=["Module 2: Simulation"])
    url: str | None = Field(
        None, description="Link to the exact section.", examples=["https://book.example.org/docs/m2#sensors"]
    )
    heading_path: list[str] = Field(default_factory=list, examples=[["Module 2", "Gazebo", "Sensors"]])
    snippet: str = Field(
        description="The start of the passage.", examples=["Gazebo simulates lidar, cameras and IMUs..."]
    )
    score: float | None = Field(None, description="Retrieval score (None for a selection).", examples=[0.42])


class TokenUsage(BaseModel):
    prompt_tokens: int = Field(0, ge=0, examples=[812])
    completion_tokens: int = Field(0, ge=0, examples=[96])
    total_tokens: int = Field(0, ge=0, examples=[908])


class ConversationSummary(BaseModel):
    id: UUID
    title: str = Field(examples=["How does Gazebo simulate sensors?"])
    created_at: datetime
    updated_at: datetime
    message_count: int = Field(ge=0, examples=[4])


class ConversationPage(BaseModel):
    """A page of conversations, newest activity first; pass `next_cursor` back as `cursor` for more."""

    items: list[ConversationSummary]
    next_cursor: str | None = Field(None, description="Opaque; None on the last page.")


class FeedbackOut(BaseModel):
    message_id: UUID
    rating: Rating
    comment: str | None
    created_at: datetime
    updated_at: datetime


class MessageOut(BaseModel):
    id: UUID
    role: Literal["user", "assistant"]
    content: str
    selected_text: str | None = None
    page_url: str | None = None
    citations: list[Citation] = Field(default_factory=list)
    mode: Mode | None = None
    model: str | None = None
    status: MessageStatus
    error_code: str | None = None
    latency_ms: int | None = None
    usage: TokenUsage | None = None
    search_query: str | None = Field(
        None,
        description="On an answer: the query its first book search ran. A follow-up is searched with the"
        " conversation's previous question too; None in selection mode (no search).",
        examples=["How does Gazebo simulate a lidar sensor?\nAnd how many rays does it cast?"],
    )
    answered: bool | None = Field(
        None,
        description="On a completed answer: false when the book (or the selection) does not cover the question;"
        " None on questions and on answers that did not complete.",
        examples=[True],
    )
    feedback: FeedbackOut | None = None
    created_at: datetime


class ConversationDetail(BaseModel):
    id: UUID
    title: str
    created_at: datetime
    updated_at: datetime
    messages: list[MessageOut] = Field(description="In the order they were written.")


class FeedbackIn(BaseModel):
    """A reader's verdict on an answer; sending it again replaces the previous one."""

    model_config = ConfigDict(extra="forbid")

    rating: Rating = Field(examples=["up"])
    comment: StorableStr | None = Field(
        None, max_length=MAX_FEEDBACK_COMMENT, examples=["Clear, and the link went to the right section."]
    )
