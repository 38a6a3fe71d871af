"""OpenAI Chat Completions and Models wire formats, as far as bookchat speaks them, plus its `citations` extension."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from bookchat.chat.schemas import MAX_SELECTION_CHARS
from bookchat.conversations.schemas import Citation, Mode
from bookchat.text import PageUrl, StorableStr

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "Choice",
    "ChunkChoice",
    "Citation",
    "ContentPart",
    "Delta",
    "ErrorBody",
    "ErrorResponse",
    "Model",
    "ModelList",
    "ResponseMessage",
    "StreamOptions",
    "Usage",
]

# Generous on purpose: clients replay whole conversations; the service keeps only the recent turns.
MAX_MESSAGES = 500
MAX_CONTENT_CHARS = 100_000

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ContentPart(BaseModel):
    """One part of a multi-part message; only `text` parts are answerable (images, audio, files are refused)."""

    model_config = ConfigDict(extra="ignore")

    type: str = Field(min_length=1, max_length=50, examples=["text"])
    text: str | None = Field(None, max_length=MAX_CONTENT_CHARS)


class ChatMessage(BaseModel):
    """A message of the conversation. `system`/`developer` prompts are ignored: the book's own instructions rule
    (a client cannot turn the book assistant into something else); `tool`/`function` messages are ignored too."""

    model_config = ConfigDict(extra="ignore")

    role: Role = Field(examples=["user"])
    content: str | list[ContentPart] | None = Field(
        None, max_length=MAX_CONTENT_CHARS, examples=["How does Gazebo simulate a lidar?"]
    )
    name: str | None = Field(None, max_length=256)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = Field(False, description="Send a last chunk with `usage` (and no choices).")


class ChatCompletionRequest(BaseModel):
    """`POST /v1/chat/completions`. The last message must be the user's question; earlier user/assistant
    messages are the history. Unknown fields are ignored, as OpenAI clients send many.

    Accepted and ignored (the book's answer is not tunable): `temperature`, `top_p`, `max_tokens`,
    `max_completion_tokens`, `stop`, `presence_penalty`, `frequency_penalty`, `logit_bias`, `seed`, `user`,
    `metadata`, `store`, `service_tier`, `parallel_tool_calls`, `reasoning_effort`, `prediction`.
    Refused with a 400: `n` > 1, `tools` (non-empty), `response_format` other than `text`, `logprobs: true`,
    audio output (`modalities` with `audio`, or `audio`).
    bookchat extensions (e.g. the openai client's `extra_body`): `conversation_id`, `selected_text`, `page_url`.
    """

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"model": "bookchat", "messages": [{"role": "user", "content": "What is ROS 2?"}]},
                {
                    "model": "bookchat",
                    "stream": True,
                    "stream_options": {"include_usage": True},
                    "messages": [
                        {"role": "user", "content": "What is ROS 2?"},
                        {"role": "assistant", "content": "ROS 2 is a robotics middleware [1]."},
                        {"role": "user", "content": "How do nodes talk to each other?"},
                    ],
                },
            ]
        },
    )

    model: str = Field(min_length=1, max_length=200, description="A model of GET /v1/models.", examples=["bookchat"])
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool | None = Field(False, description="Answer as `chat.completion.chunk` Server-Sent Events.")
    stream_options: StreamOptions | None = None

    # Refused unless at their neutral value.
    n: int | None = Field(None, ge=1, le=128, description="Only 1 is supported.")
    tools: list[dict[str, Any]] | None = Field(None, max_length=128, description="Not supported (must be empty).")
    tool_choice: str | dict[str, Any] | None = Field(None, description="Ignored unless tools are given.")
    response_format: dict[str, Any] | None = Field(None, description='Only {"type": "text"} is supported.')
    logprobs: bool | None = Field(None, description="Not supported (must be false).")
    top_logprobs: int | None = Field(None, ge=0, le=20)
    modalities: list[str] | None = Field(None, max_length=8, description='Only ["text"] is supported.')
    audio: dict[str, Any] | None = Field(None, description="Not supported.")

    # Accepted, validated like OpenAI does, and ignored.
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = Field(None)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = None
    user: str | None = Field(None, max_length=256)

    # bookchat extensions.
    conversation_id: UUID | None = Field(
        None, description="Continue a stored conversation of yours (its history replaces `messages`' history)."
    )
    selected_text: StorableStr | None = Field(
        None,
        min_length=1,
        max_length=MAX_SELECTION_CHARS,
        description="Answer from this text only (selection mode), as the widget's *Ask about this* does.",
    )
    page_url: PageUrl | None = Field(
        None, max_length=2000, pattern=r"^https?://", description="Where the selection is."
    )


class Usage(BaseModel):
    prompt_tokens: int = Field(ge=0, examples=[812])
    completion_tokens: int = Field(ge=0, examples=[96])
    total_tokens: int = Field(ge=0, examples=[908])


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str = Field(
        examples=["ROS 2 nodes talk over topics [1].\n\nSources:\n- [1] [ROS 2 › Topics](https://...)"]
    )
    refusal: None = None


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: Literal["stop"] = "stop"
    logprobs: None = None


class ChatCompletion(BaseModel):
    """A whole answer. `citations` (an extension) are the passages it cites, numbered as in its `[n]` markers."""

    id: str = Field(examples=["chatcmpl-5f0c7a0e2b4d4c1e9a3b7d2e1f0a9b8c"])
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(examples=[1767225600])
    model: str = Field(examples=["bookchat"])
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None
    citations: list[Citation] = Field(default_factory=list)
    conversation_id: UUID | None = Field(None, description="Where bookchat stored the exchange (extension).")
    mode: Mode | None = Field(None, description="retrieval, selection or extractive (extension).")
    answered: bool | None = Field(
        None, description="False when the book does not cover the question (extension).", examples=[True]
    )


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One Server-Sent Event of a streamed answer; the chunk with `finish_reason` carries `citations`."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    system_fingerprint: str | None = None
    usage: Usage | None = None
    citations: list[Citation] | None = None
    conversation_id: UUID | None = None
    answered: bool | None = Field(None, description="On the chunk with `finish_reason` (extension).")


class Model(BaseModel):
    """One corpus (Qdrant collection) answers as one model."""

    id: str = Field(examples=["bookchat"])
    object: Literal["model"] = "model"
    created: int = Field(examples=[1767225600])
    owned_by: str = Field("bookchat", examples=["bookchat"])


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class ErrorBody(BaseModel):
    message: str
    type: str = Field(examples=["invalid_request_error"])
    param: str | None = Field(None, examples=["messages"])
    code: str | None = Field(None, examples=["invalid_api_key"])


class ErrorResponse(BaseModel):
    """OpenAI's error shape, so OpenAI clients raise their usual exceptions (401 → AuthenticationError, ...)."""

    error: ErrorBody
