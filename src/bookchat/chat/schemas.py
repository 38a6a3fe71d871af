"""Request and response models of `POST /api/chat`, and the payloads of its Server-Sent Events."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bookchat.conversations.schemas import Citation, MessageStatus, Mode, TokenUsage
from bookchat.text import PageUrl, StorableStr

__all__ = [
    "ChatFilters",
    "ChatRequest",
    "ChatResponse",
    "Citation",
    "DeltaEvent",
    "DoneEvent",
    "ErrorEvent",
    "MetaEvent",
    "SourcesEvent",
    "TokenUsage",
]

MAX_MESSAGE_CHARS = 4000
MAX_SELECTION_CHARS = 8000


class ChatFilters(BaseModel):
    """Limit the book search to some documents and/or a folder of the book."""

    model_config = ConfigDict(extra="forbid")

    document_ids: list[UUID] = Field(default_factory=list, max_length=50, description="Only these documents.")
    path_prefix: str | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="Only documents under this folder of the book (or this one file).",
        examples=["module-2/"],
    )


class ChatRequest(BaseModel):
    """A reader's question; with `selected_text` it is about that text only (selection mode)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"message": "How does Gazebo simulate a lidar?"},
                {
                    "message": "What does this mean?",
                    "selected_text": "A URDF file describes the robot's links and joints.",
                    "page_url": "https://book.example.org/docs/module-1/urdf",
                    "stream": True,
                },
            ]
        },
    )

    message: StorableStr = Field(
        min_length=1, max_length=MAX_MESSAGE_CHARS, examples=["How does Gazebo simulate a lidar?"]
    )
    conversation_id: UUID | None = Field(None, description="Continue this conversation (yours); omit to start one.")
    selected_text: StorableStr | None = Field(
        None,
        min_length=1,
        max_length=MAX_SELECTION_CHARS,
        description="Text the reader selected: the answer then uses only this text (no book search).",
    )
    page_url: PageUrl | None = Field(
        None,
        max_length=2000,
        pattern=r"^https?://",
        description="The page the reader is on; a selection's citation links to it.",
        examples=["https://book.example.org/docs/module-1/urdf"],
    )
    filters: ChatFilters | None = None
    stream: bool = Field(False, description="Answer as Server-Sent Events (as does `Accept: text/event-stream`).")

    @field_validator("message", "selected_text")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must contain more than whitespace")
        return value


ANSWERED_DESCRIPTION = (
    "False when the book does not cover the question: found before any model call by the retrieval gate (then no"
    " model is called and `closest_pages` lists the nearest sections), or said by the model itself."
)


class ClosestPage(BaseModel):
    """A section near an unanswered question: offered to read, not cited."""

    title: str = Field(examples=["Simulating sensors in Gazebo"])
    url: str | None = Field(None, examples=["https://book.example.org/docs/module-2/gazebo-sensors"])
    heading_path: list[str] = Field(default_factory=list, examples=[["Module 2", "Gazebo", "Sensors"]])


class ChatResponse(BaseModel):
    """A complete answer. `citations` are the passages the answer cites, numbered as in its text."""

    conversation_id: UUID
    message_id: UUID = Field(description="The answer's id (for feedback).")
    user_message_id: UUID
    answer: str = Field(examples=["Gazebo models a lidar as a ray sensor plugin [1]."])
    citations: list[Citation]
    sources: list[Citation] = Field(
        description="Every passage the model was shown, numbered as it saw them (not as the answer's [n])."
    )
    mode: Mode
    model: str | None = Field(None, description="The model that answered (None when extractive).")
    usage: TokenUsage
    latency_ms: int = Field(ge=0)
    answered: bool = Field(True, description=ANSWERED_DESCRIPTION, examples=[True])
    closest_pages: list[ClosestPage] = Field(
        default_factory=list, description="When the gate found the question not covered: the nearest sections."
    )


# ---- Server-Sent Events (`event: <name>` / `data: <json>`), in order: meta, citations, delta*, done | error.


class MetaEvent(BaseModel):
    conversation_id: UUID
    message_id: UUID
    user_message_id: UUID
    mode: Mode


class SourcesEvent(BaseModel):
    """`citations`, before the first delta: the candidate passages, numbered as the model sees them."""

    citations: list[Citation]


class DeltaEvent(BaseModel):
    """A piece of the answer; `citations` lists passages this piece cites for the first time (final numbers)."""

    text: str
    citations: list[Citation] = Field(default_factory=list)


class DoneEvent(BaseModel):
    message_id: UUID
    status: MessageStatus
    citations: list[Citation] = Field(description="The passages the answer cites, numbered as in its text.")
    usage: TokenUsage
    latency_ms: int = Field(ge=0)
    model: str | None = None
    answered: bool = Field(True, description=ANSWERED_DESCRIPTION, examples=[False])
    closest_pages: list[ClosestPage] = Field(default_factory=list)


class ErrorEvent(BaseModel):
    code: str
    message: str
    status: int = Field(description="The HTTP status the same failure gets without streaming.")
    retry_after: int | None = Field(None, description="Seconds to wait before retrying, when known.")
