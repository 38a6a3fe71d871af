"""FakeLLMServer: a small OpenAI-compatible server on a loopback port that plays scripted replies for tests.

It speaks just enough of the OpenAI HTTP API for the `openai` client and the Agents SDK's
`OpenAIChatCompletionsModel` to run their real code paths against it:

- ``POST /v1/chat/completions``: non-stream JSON and SSE streams (``data: {chunk}`` lines with
  ``choices[].delta`` and ``finish_reason``, a final usage chunk when ``stream_options.include_usage``,
  ``data: [DONE]``), text or tool-call replies;
- ``POST /v1/embeddings``: deterministic hashed bag-of-words vectors (texts sharing words are close),
  ``dimensions`` honoured, ``encoding_format`` ``float`` or ``base64`` (the openai client's default);
- ``GET /v1/models``.

Replies come from a FIFO queue (``server.script(...)``), else from ``server.default`` (a function of the
request body). Every request body is recorded in ``server.requests`` (chat) or ``server.embedding_requests``.
bookchat's query-rewrite calls are the exception: ``server.rewriter`` (a function of the body) answers them, and
they are recorded in ``server.rewrite_requests``, so scripted answers and request counts are not disturbed.

In-process (pytest)::

    with FakeLLMServer() as llm:            # uvicorn in a daemon thread, its own event loop
        llm.script(Text("Hello [1]."), Error(429, retry_after=3))
        client = AsyncOpenAI(base_url=llm.base_url, api_key="test")

As a separate process (benchmarks)::

    python -m tests.fakes.llm_server --port 0     # prints FAKE_LLM_BASE_URL=http://127.0.0.1:PORT/v1
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import hashlib
import json
import math
import re
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeAlias

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bookchat.chat.query_rewrite import REWRITE_INSTRUCTIONS_OPENING

__all__ = [
    "Abort",
    "Error",
    "FakeLLMServer",
    "Malformed",
    "Reply",
    "Text",
    "ToolCall",
    "ToolCalls",
    "default_reply",
    "default_rewrite",
    "fake_embedding",
    "is_rewrite_request",
    "message_text",
    "request_text",
    "rewrite_message",
]

DEFAULT_MODEL = "fake-model"
DEFAULT_EMBEDDING_DIM = 768
_WORD_CHUNKS = re.compile(r"\s*\S+\s*|\s+")
_TOKEN = re.compile(r"\w+")


# --------------------------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class Text:
    """An assistant text reply.

    ``chunks`` fixes how a stream splits the text (default: one chunk per word, leading space
    attached); ``delay`` waits before any response byte (simulates a slow model / a timeout);
    ``chunk_delay`` waits between stream chunks (lets a test disconnect mid-stream).
    """

    content: str
    chunks: Sequence[str] | None = None
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0

    def stream_pieces(self) -> list[str]:
        if self.chunks is not None:
            if "".join(self.chunks) != self.content:
                raise ValueError("Text.chunks must concatenate to Text.content")
            return list(self.chunks)
        return _WORD_CHUNKS.findall(self.content) or [""]


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asks for; ``arguments`` is a mapping (JSON-encoded) or raw JSON text."""

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(dict(self.arguments))


@dataclass(frozen=True)
class ToolCalls:
    """A reply made of tool calls (finish_reason ``tool_calls``), optionally with some text before them."""

    calls: Sequence[ToolCall]
    content: str = ""
    delay: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @classmethod
    def one(cls, name: str, **arguments: Any) -> ToolCalls:
        return cls([ToolCall(name, arguments)])


@dataclass(frozen=True)
class Error:
    """An upstream failure: an HTTP error status (``retry_after`` sets the header), or with
    ``in_stream=True`` a 200 stream that carries ``data: {"error": ...}`` after ``after_chunks`` text chunks."""

    status: int = 500
    message: str = "fake upstream failure"
    retry_after: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    in_stream: bool = False
    after_chunks: Sequence[str] = ()

    def body(self) -> dict[str, Any]:
        kind = {
            400: "invalid_request_error",
            401: "authentication_error",
            429: "rate_limit_exceeded",
        }.get(self.status, "server_error")
        return {"error": {"message": self.message, "type": kind, "code": self.status}}


@dataclass(frozen=True)
class Malformed:
    """A 200 whose body is not what the API promises: ``body`` verbatim (non-stream) or, for a stream,
    a ``data:`` line carrying ``body`` after ``after_chunks`` valid text chunks."""

    body: str = '{"id": "chatcmpl-broken", "choices": [{"index": 0, "message": '
    after_chunks: Sequence[str] = ()
    content_type: str = "application/json"


@dataclass(frozen=True)
class Abort:
    """A stream that sends ``after_chunks`` text chunks and then drops the connection without ``[DONE]``
    (a non-stream request gets a plain 500)."""

    after_chunks: Sequence[str] = ("Partial ",)


Reply: TypeAlias = Text | ToolCalls | Error | Malformed | Abort
ReplyFactory: TypeAlias = Callable[[dict[str, Any]], Reply]


# --------------------------------------------------------------------------------------------- helpers


def message_text(message: Mapping[str, Any]) -> str:
    """The text of one chat message, whether ``content`` is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping) and "text" in part)
    return ""


def request_text(body: Mapping[str, Any]) -> str:
    """Every message text of a chat request joined by newlines (for "contains / does not contain" checks)."""
    return "\n".join(message_text(message) for message in body.get("messages", []))


def default_reply(body: Mapping[str, Any]) -> Reply:
    """The reply when nothing is scripted: a short grounded-looking answer that cites [1] when the
    request numbers passages, else an honest "not covered" answer."""
    text = request_text(body)
    if "[1]" in text:
        return Text(
            "The book explains this in its own words: the answer follows from the first passage, "
            "which describes the topic in detail and gives the steps to follow [1]."
        )
    return Text("The provided text does not cover this question.")


def is_rewrite_request(body: Mapping[str, Any]) -> bool:
    """True for bookchat's query-rewrite call (its system message opens with REWRITE_INSTRUCTIONS_OPENING)."""
    messages = body.get("messages") or []
    return bool(messages) and message_text(messages[0]).startswith(REWRITE_INSTRUCTIONS_OPENING)


def rewrite_message(body: Mapping[str, Any]) -> tuple[list[str], str]:
    """The earlier questions and the latest message of a rewrite request, as bookchat sent them."""
    text = message_text((body.get("messages") or [{}, {}])[-1])
    earlier = re.findall(r'<question turn="earlier">\n(.*?)\n</question>', text, re.DOTALL)
    latest = re.search(r'<question turn="latest">\n(.*?)\n</question>', text, re.DOTALL)
    return earlier, latest.group(1).strip() if latest else ""


def default_rewrite(body: Mapping[str, Any]) -> Reply:
    """The rewrite when none is set: the last earlier question and the latest message on one line."""
    earlier, latest = rewrite_message(body)
    return Text(" ".join([*earlier[-1:], latest]))


def fake_embedding(text: str, dim: int) -> list[float]:
    """A deterministic unit vector: hashed bag of lower-cased words, so texts sharing words are close."""
    vector = [0.0] * dim
    tokens = _TOKEN.findall(text.lower()) or [text]
    for token in tokens:
        digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % dim
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(value * value for value in vector))
    if norm == 0.0:  # every token cancelled out; fall back to one hashed axis
        vector[int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little") % dim] = 1.0
        return vector
    return [value / norm for value in vector]


def _count_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


# --------------------------------------------------------------------------------------------- server


class FakeLLMServer:
    """An OpenAI-compatible fake on ``127.0.0.1`` (random port unless given). Thread-safe scripting."""

    def __init__(
        self,
        *,
        port: int = 0,
        model: str = DEFAULT_MODEL,
        default: ReplyFactory | None = None,
        api_key: str | None = None,
    ) -> None:
        self.model = model
        self.default: ReplyFactory = default or default_reply
        # bookchat's query rewrites are answered here and recorded apart, so they never take a scripted reply
        # meant for an answer, nor count among `requests`.
        self.rewriter: ReplyFactory = default_rewrite
        self.rewrite_requests: list[dict[str, Any]] = []
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self.embedding_requests: list[dict[str, Any]] = []
        self.streams_started = 0
        self.streams_completed = 0
        self.streams_cancelled = 0
        self._port = port
        self._queue: deque[Reply | ReplyFactory] = deque()
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    # ---- lifecycle

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("FakeLLMServer is not started")
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def base_url(self) -> str:
        """The OpenAI ``base_url`` to configure: ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        sock.listen(512)
        sock.set_inheritable(True)
        self._socket = sock
        return sock

    def _config(self) -> uvicorn.Config:
        return uvicorn.Config(
            self.app,
            log_config=None,  # leave the host process's logging alone (uvicorn would dictConfig it)
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            timeout_keep_alive=30,
        )

    def start(self) -> FakeLLMServer:
        """Serve from a daemon thread with its own event loop; returns once the port accepts requests."""
        if self._thread is not None:
            return self
        sock = self._bind()
        self._server = uvicorn.Server(self._config())
        server = self._server
        self._thread = threading.Thread(target=lambda: server.run(sockets=[sock]), name="fake-llm-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("FakeLLMServer failed to start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = None

    def serve_forever(self) -> None:
        """Run in the calling (main) thread until SIGINT/SIGTERM — for the separate-process mode."""
        sock = self._bind()
        print(f"FAKE_LLM_BASE_URL={self.base_url}", flush=True)
        self._server = uvicorn.Server(self._config())
        self._server.run(sockets=[sock])

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- scripting

    def script(self, *replies: Reply | ReplyFactory) -> FakeLLMServer:
        """Queue replies for the next chat requests, in order (a callable gets the request body)."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def reset(self) -> None:
        """Forget queued replies and recorded requests (call between tests that share one server)."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.rewrite_requests.clear()
            self.rewriter = default_rewrite
            self.request_headers.clear()
            self.embedding_requests.clear()
            self.streams_started = self.streams_completed = self.streams_cancelled = 0

    @property
    def pending(self) -> int:
        """Scripted replies not consumed yet."""
        with self._lock:
            return len(self._queue)

    @property
    def last_request(self) -> dict[str, Any]:
        with self._lock:
            if not self.requests:
                raise AssertionError("the fake LLM received no chat request")
            return self.requests[-1]

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake early when the server is stopping, so shutdown never waits on a scripted delay."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._server is not None and self._server.should_exit:
                return
            await asyncio.sleep(min(left, 0.05))

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            scripted = self._queue.popleft() if self._queue else None
        if scripted is None:
            return self.default(body)
        if callable(scripted):
            return scripted(body)
        return scripted

    # ---- endpoints

    def _unauthorized(self, request: Request) -> Response | None:
        if self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}":
            return None
        return JSONResponse(Error(401, "invalid api key").body(), status_code=401)

    async def _models(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "fake"}],
            }
        )

    async def _authorized_json(self, request: Request) -> dict[str, Any] | Response:
        """The request's JSON body, or the 401/400 response that refuses it."""
        if (denied := self._unauthorized(request)) is not None:
            return denied
        try:
            body: dict[str, Any] = json.loads(await request.body())
        except ValueError:
            return JSONResponse(Error(400, "body is not JSON").body(), status_code=400)
        return body

    async def _embeddings(self, request: Request) -> Response:
        body = await self._authorized_json(request)
        if isinstance(body, Response):
            return body
        with self._lock:
            self.embedding_requests.append(body)
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        if not texts or not all(isinstance(text, str) for text in texts):
            return JSONResponse(Error(400, "input must be a string or a list of strings").body(), 400)
        dim = int(body.get("dimensions") or DEFAULT_EMBEDDING_DIM)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = fake_embedding(text, dim)
            encoded: Any = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode() if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(_count_tokens(text) for text in texts)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", self.model),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _chat(self, request: Request) -> Response:
        body = await self._authorized_json(request)
        if isinstance(body, Response):
            return body
        if is_rewrite_request(body):
            with self._lock:
                self.rewrite_requests.append(body)
            reply = self.rewriter(body)
        else:
            with self._lock:
                self.requests.append(body)
                self.request_headers.append(dict(request.headers))
            reply = self._next_reply(body)
        delay = getattr(reply, "delay", 0.0)
        if delay:
            await self._sleep(delay)
        if isinstance(reply, Error) and not reply.in_stream:
            headers = dict(reply.headers)
            if reply.retry_after is not None:
                headers["retry-after"] = f"{reply.retry_after:g}"
            return JSONResponse(reply.body(), status_code=reply.status, headers=headers)
        if isinstance(reply, Malformed) and not body.get("stream"):
            return Response(reply.body, media_type=reply.content_type)
        if body.get("stream"):
            return StreamingResponse(
                self._stream(body, reply),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        if isinstance(reply, Abort):  # only streams can be cut half-way; a plain request gets a bare 500
            return JSONResponse(Error(500, "fake upstream dropped the connection").body(), status_code=500)
        assert isinstance(reply, Text | ToolCalls)
        return JSONResponse(self._completion(body, reply))

    def _completion(self, body: dict[str, Any], reply: Text | ToolCalls) -> dict[str, Any]:
        prompt_tokens = reply.prompt_tokens or _count_tokens(request_text(body))
        message: dict[str, Any] = {"role": "assistant", "content": reply.content or None}
        if isinstance(reply, ToolCalls):
            message["tool_calls"] = [
                {
                    "id": call.id or f"call_{uuid.uuid4().hex[:12]}",
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json()},
                }
                for call in reply.calls
            ]
            finish_reason = "tool_calls"
            completion_tokens = reply.completion_tokens or 8 * len(reply.calls)
        else:
            finish_reason = reply.finish_reason
            completion_tokens = reply.completion_tokens or _count_tokens(reply.content)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
            "usage": _usage(prompt_tokens, completion_tokens),
        }

    async def _stream(self, body: dict[str, Any], reply: Reply) -> AsyncIterator[bytes]:
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:16]}"
        created = int(time.time())
        model = body.get("model", self.model)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            payload = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
            }
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        with self._lock:
            self.streams_started += 1
        finished = False
        try:
            if isinstance(reply, Error | Malformed | Abort):
                for piece in reply.after_chunks:
                    yield chunk({"role": "assistant", "content": piece})
                if isinstance(reply, Error):
                    yield b"data: " + json.dumps(reply.body()).encode() + b"\n\n"
                elif isinstance(reply, Malformed):
                    yield b"data: " + reply.body.encode() + b"\n\n"
                else:
                    raise ConnectionAbortedError("fake upstream dropped the stream")
                finished = True
                return
            prompt_tokens = reply.prompt_tokens or _count_tokens(request_text(body))
            if isinstance(reply, ToolCalls):
                yield chunk({"role": "assistant", "content": reply.content or None})
                for index, call in enumerate(reply.calls):
                    call_id = call.id or f"call_{uuid.uuid4().hex[:12]}"
                    yield chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": index,
                                    "id": call_id,
                                    "type": "function",
                                    "function": {"name": call.name, "arguments": ""},
                                }
                            ]
                        }
                    )
                    yield chunk({"tool_calls": [{"index": index, "function": {"arguments": call.arguments_json()}}]})
                yield chunk({}, "tool_calls")
                completion_tokens = reply.completion_tokens or 8 * len(reply.calls)
            else:
                for position, piece in enumerate(reply.stream_pieces()):
                    if position and reply.chunk_delay:
                        await self._sleep(reply.chunk_delay)
                    delta: dict[str, Any] = {"content": piece}
                    if position == 0:
                        delta["role"] = "assistant"
                    yield chunk(delta)
                yield chunk({}, reply.finish_reason)
                completion_tokens = reply.completion_tokens or _count_tokens(reply.content)
            if include_usage:
                payload = {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": _usage(prompt_tokens, completion_tokens),
                }
                yield b"data: " + json.dumps(payload).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"
            finished = True
        finally:
            with self._lock:
                if finished:
                    self.streams_completed += 1
                else:
                    self.streams_cancelled += 1


def paced_reply(seconds: float) -> ReplyFactory:
    """The default reply, streamed over about `seconds` (a real model's pace), chunks evenly spaced."""

    def reply(body: dict[str, Any]) -> Reply:
        answer = default_reply(body)
        if not isinstance(answer, Text) or seconds <= 0:
            return answer
        return dataclasses.replace(answer, chunk_delay=seconds / max(1, len(answer.stream_pieces())))

    return reply


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake OpenAI-compatible LLM server.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout).")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--answer-seconds", type=float, default=0.0, help="Stream each answer over this long.")
    args = parser.parse_args()
    FakeLLMServer(port=args.port, model=args.model, default=paced_reply(args.answer_seconds)).serve_forever()


if __name__ == "__main__":
    main()
