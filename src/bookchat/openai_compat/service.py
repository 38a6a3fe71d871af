"""The OpenAI face of the chat: maps Chat Completions onto bookchat's ChatService, whole or streamed."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from bookchat.chat.citations import strip_markers
from bookchat.chat.inputs import HISTORY_MESSAGES, MAX_HISTORY_MESSAGE_CHARS, input_message
from bookchat.chat.schemas import ChatRequest, Citation, DeltaEvent, DoneEvent, ErrorEvent, MetaEvent, TokenUsage
from bookchat.chat.service import ChatService
from bookchat.chat.turn import Turn
from bookchat.openai_compat.errors import SERVER_ERROR, OpenAIError
from bookchat.openai_compat.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    ChunkChoice,
    Delta,
    Model,
    ModelList,
    ResponseMessage,
    Usage,
)

SOURCES_HEADING = "Sources:"
# The footnote list we append; stripped again when a client replays our answer as history.
_FOOTNOTES = re.compile(r"\n\n" + re.escape(SOURCES_HEADING) + r"\n- \[1\] .*\Z", re.S)
_MARKDOWN_LABEL = re.compile(r"([\\\[\]])")
# Rough size of a token, for usage when no model was called (extractive answers).
CHARS_PER_TOKEN = 4
# Models have no creation date of their own; the process start is as honest as anything.
MODELS_CREATED = int(time.time())


@dataclass(frozen=True)
class Question:
    """The request reduced to what the chat understands: the question and the earlier turns."""

    text: str
    history: tuple[tuple[str, str], ...]  # (role, content), oldest first


@dataclass
class Prepared:
    """A started turn (question stored, passages found) waiting to be answered."""

    turn: Turn
    question: Question
    include_usage: bool


def _text_of(message: ChatMessage, position: int) -> str | None:
    content = message.content
    if content is None or isinstance(content, str):
        return content
    texts: list[str] = []
    for number, part in enumerate(content):
        if part.type != "text":
            raise OpenAIError(
                400,
                f"Content of type '{part.type}' is not supported: bookchat answers text questions.",
                param=f"messages[{position}].content[{number}].type",
                code="unsupported_content",
            )
        texts.append(part.text or "")
    return "\n".join(texts)


def parse_question(messages: Sequence[ChatMessage]) -> Question:
    """The last message is the question (it must be the user's); earlier user/assistant text is history.

    System and developer messages are ignored: the book's instructions stay in charge. Tool and function
    messages, and assistant messages without text (tool calls), carry nothing a book answer can use.
    """
    last = len(messages) - 1
    if messages[last].role != "user":
        raise OpenAIError(
            400, "The last message must have role 'user': it is the question.", param=f"messages[{last}].role"
        )
    question = (_text_of(messages[last], last) or "").strip()
    if not question:
        raise OpenAIError(400, "The question (the last user message) is empty.", param=f"messages[{last}].content")
    history: list[tuple[str, str]] = []
    for position, message in enumerate(messages[:last]):
        if message.role not in ("user", "assistant"):
            continue
        text = (_text_of(message, position) or "").strip()
        if message.role == "assistant":
            # Our own footnotes and [n] markers referred to passages of that turn, not of this one.
            text = strip_markers(_FOOTNOTES.sub("", text)).strip()
        if text:
            history.append((message.role, text[:MAX_HISTORY_MESSAGE_CHARS]))
    return Question(question, tuple(history[-HISTORY_MESSAGES:]))


def check_supported(request: ChatCompletionRequest) -> None:
    """Refuse, in OpenAI's words, the parameters whose meaning bookchat cannot honour."""
    if request.n is not None and request.n != 1:
        raise OpenAIError(400, "Only n=1 is supported.", param="n", code="unsupported_value")
    if request.tools:
        raise OpenAIError(400, "Tools are not supported: bookchat answers from the book.", param="tools")
    if request.response_format is not None and request.response_format.get("type", "text") != "text":
        raise OpenAIError(
            400,
            "Only response_format {'type': 'text'} is supported.",
            param="response_format",
            code="unsupported_value",
        )
    if request.logprobs:
        raise OpenAIError(400, "logprobs are not supported.", param="logprobs", code="unsupported_value")
    if request.audio is not None or (request.modalities and any(mode != "text" for mode in request.modalities)):
        raise OpenAIError(400, "Only text output is supported.", param="modalities", code="unsupported_value")


def footnotes(citations: Sequence[Citation]) -> str:
    """The citations as a Markdown list after the answer, so a plain OpenAI client shows where `[n]` lead."""
    if not citations:
        return ""
    lines = ["", "", SOURCES_HEADING]
    for citation in citations:
        parts = [citation.title]
        parts.extend(heading for heading in citation.heading_path if heading and heading not in parts)
        label = _MARKDOWN_LABEL.sub(r"\\\1", " › ".join(part for part in parts if part) or "Source")
        url = citation.url or ""
        if url.startswith(("http://", "https://")):
            target = f"<{url}>" if re.search(r"[\s()<>]", url) else url
            lines.append(f"- [{citation.index}] [{label}]({target})")
        else:
            lines.append(f"- [{citation.index}] {label}")
    return "\n".join(lines)


def _usage(reported: TokenUsage, question: Question, answer: str) -> Usage:
    if reported.total_tokens > 0:
        return Usage(
            prompt_tokens=reported.prompt_tokens,
            completion_tokens=reported.completion_tokens,
            total_tokens=reported.total_tokens,
        )
    # No model was called (extractive answer) or it reported nothing: estimate from the text sizes.
    prompt_chars = len(question.text) + sum(len(text) for _, text in question.history)
    prompt = max(1, prompt_chars // CHARS_PER_TOKEN)
    completion = max(1, len(answer) // CHARS_PER_TOKEN) if answer else 0
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _sse(payload: ChatCompletionChunk | dict[str, Any]) -> bytes:
    if isinstance(payload, ChatCompletionChunk):
        data = payload.model_dump_json(exclude_none=False)
    else:
        data = json.dumps(payload, separators=(",", ":"))
    return b"data: " + data.encode() + b"\n\n"


class CompletionService:
    """Chat Completions for one corpus: `model` is the collection name, `chat` does all the answering."""

    def __init__(self, chat: ChatService, model: str) -> None:
        self.chat = chat
        self.model = model

    def models(self) -> ModelList:
        return ModelList(data=[Model(id=self.model, created=MODELS_CREATED)])

    def get_model(self, model_id: str) -> Model:
        if model_id != self.model:
            raise self._unknown_model(model_id)
        return Model(id=self.model, created=MODELS_CREATED)

    def _unknown_model(self, model_id: str) -> OpenAIError:
        return OpenAIError(
            404,
            f"The model '{model_id[:200]}' does not exist. Available: '{self.model}' (GET /v1/models).",
            param="model",
            code="model_not_found",
        )

    async def prepare(self, owner_id: str, request: ChatCompletionRequest) -> Prepared:
        """Validate, store the question and find the passages; errors here still get a proper status."""
        if request.model != self.model:
            raise self._unknown_model(request.model)
        check_supported(request)
        question = parse_question(request.messages)
        try:
            chat_request = ChatRequest(
                message=question.text,
                conversation_id=request.conversation_id,
                selected_text=request.selected_text,
                page_url=request.page_url if request.selected_text is not None else None,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first.get("loc") else "messages"
            param = "messages" if field == "message" else field
            raise OpenAIError(400, f"Invalid value for '{param}': {first['msg']}.", param=param) from None
        # A client that keeps the conversation itself sends it in `messages`: its earlier questions steer the
        # first search the way a stored conversation's do.
        earlier = [text for role, text in question.history if role == "user"] if request.conversation_id is None else []
        turn = await self.chat.start(owner_id, chat_request, earlier_questions=earlier)
        if turn.mode == "retrieval" and request.conversation_id is None and question.history:
            # ChatService replays a stored conversation's history; an OpenAI client sends its own instead,
            # so put it before the question the same way (the turn's items are what the model will see).
            turn.items[:0] = [
                input_message("assistant" if role == "assistant" else "user", text) for role, text in question.history
            ]
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        return Prepared(turn, question, include_usage)

    async def complete(self, prepared: Prepared) -> ChatCompletion:
        answer = await self.chat.answer(prepared.turn)
        return ChatCompletion(
            id=f"chatcmpl-{answer.message_id.hex}",
            created=int(time.time()),
            model=self.model,
            choices=[Choice(message=ResponseMessage(content=answer.answer + footnotes(answer.citations)))],
            usage=_usage(answer.usage, prepared.question, answer.answer),
            citations=answer.citations,
            conversation_id=answer.conversation_id,
            mode=answer.mode,
            answered=answer.answered,
        )

    async def stream(self, prepared: Prepared) -> AsyncGenerator[bytes, None]:
        """`chat.completion.chunk` events ending with `data: [DONE]`; an upstream failure is an `error` event."""
        turn = prepared.turn
        created = int(time.time())
        completion_id = f"chatcmpl-{turn.message_id.hex}"

        def chunk(delta: Delta, **fields: Any) -> ChatCompletionChunk:
            return ChatCompletionChunk(
                id=completion_id,
                created=created,
                model=self.model,
                choices=[ChunkChoice(delta=delta, finish_reason=fields.pop("finish_reason", None))],
                **fields,
            )

        written: list[str] = []
        events = self.chat.stream(turn)
        try:
            async for _name, event in events:
                if isinstance(event, MetaEvent):
                    yield _sse(chunk(Delta(role="assistant", content=""), conversation_id=event.conversation_id))
                elif isinstance(event, DeltaEvent) and event.text:
                    written.append(event.text)
                    yield _sse(chunk(Delta(content=event.text)))
                elif isinstance(event, DoneEvent):
                    notes = footnotes(event.citations)
                    if notes:
                        yield _sse(chunk(Delta(content=notes)))
                    yield _sse(chunk(Delta(), finish_reason="stop", citations=event.citations, answered=event.answered))
                    if prepared.include_usage:
                        usage = _usage(event.usage, prepared.question, "".join(written))
                        last = ChatCompletionChunk(
                            id=completion_id, created=created, model=self.model, choices=[], usage=usage
                        )
                        yield _sse(last)
                elif isinstance(event, ErrorEvent):
                    # The openai client raises APIError on a data line carrying `error`.
                    error = OpenAIError(event.status, event.message, type=SERVER_ERROR, code=event.code)
                    yield _sse(error.body())
                    break
        finally:
            # When the client goes away, close the chat's own stream too: it cancels the model call and
            # stores the partial answer as `cancelled`.
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()
        yield b"data: [DONE]\n\n"
