"""A scripted stand-in for bookchat's reader API, to drive the widget through cases the real stack rarely shows.

It speaks the same wire format as `/api/auth/guest`, `/api/chat` (SSE), `/api/conversations/{id}` and
`/api/messages/{id}/feedback`, and records every request, so a browser test can assert what the widget sent.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from bookchat.web import router as web_router


@dataclass
class Reply:
    """What the next POST /api/chat answers: a streamed text with citations, or an HTTP error."""

    text: str = "Install with `make serve` [1]."
    citations: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    stream_error: str | None = None
    delay: float = 0.0  # seconds between streamed words
    answered: bool = True
    closest_pages: list[dict[str, Any]] = field(default_factory=list)


NOT_COVERED = "The book does not seem to cover this question."


def closest_page(title: str, url: str, *headings: str) -> dict[str, Any]:
    return {"title": title, "url": url, "heading_path": [title, *headings]}


def not_covered(base_url: str) -> Reply:
    """What the real server sends when its coverage gate finds the question not covered: no citations."""
    return Reply(
        NOT_COVERED,
        answered=False,
        closest_pages=[
            closest_page("Getting started", base_url + "/#install", "Install"),
            closest_page("Operations", base_url + "/operations#backups", "Backups"),
        ],
    )


def citation(index: int, url: str, title: str = "Getting started", heading: str = "Install") -> dict[str, Any]:
    return {
        "index": index,
        "document_id": str(uuid.uuid4()),
        "chunk_id": str(uuid.uuid4()),
        "title": title,
        "url": url,
        "heading_path": [title, heading],
        "snippet": "…",
        "score": 0.5,
    }


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class StubApi:
    def __init__(self, docs_dir: Path | None = None) -> None:
        self.app = FastAPI()
        self.app.include_router(web_router)
        self.app.state.docs_dir = docs_dir
        self.replies: deque[Reply] = deque()
        self.chat_requests: list[dict[str, Any]] = []
        self.chat_tokens: list[str] = []
        self.guest_requests: list[dict[str, Any]] = []
        self.feedback: list[tuple[str, dict[str, Any]]] = []
        self.rejected_tokens: set[str] = set()
        self.conversations: dict[str, list[dict[str, Any]]] = {}
        self._install()

    def _install(self) -> None:
        app = self.app

        @app.post("/api/auth/guest")
        async def guest(request: Request) -> JSONResponse:
            body = await request.json()
            self.guest_requests.append(body)
            token = f"guest-token-{len(self.guest_requests)}"
            return JSONResponse({"access_token": token, "token_type": "bearer", "expires_in": 3600})

        def unauthorized(request: Request) -> JSONResponse | None:
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            if not token or token in self.rejected_tokens:
                return JSONResponse(
                    {"type": "about:blank", "title": "Unauthorized", "status": 401, "detail": "expired"},
                    status_code=401,
                    media_type="application/problem+json",
                )
            return None

        @app.post("/api/chat", response_model=None)
        async def chat(request: Request) -> Response:
            refused = unauthorized(request)
            if refused is not None:
                return refused
            body = await request.json()
            self.chat_requests.append(body)
            self.chat_tokens.append(request.headers["authorization"].removeprefix("Bearer "))
            if self.replies:
                reply = self.replies.popleft()
            elif "cake" in str(body.get("message", "")).lower():
                reply = not_covered(str(request.base_url).rstrip("/"))  # the book is not a cookbook
            else:
                reply = Reply()
            if reply.status != 200:
                return JSONResponse(
                    {"type": "about:blank", "title": "Error", "status": reply.status, "detail": "scripted"},
                    status_code=reply.status,
                    headers=reply.headers,
                    media_type="application/problem+json",
                )
            conversation_id = body.get("conversation_id") or str(uuid.uuid4())
            if conversation_id not in self.conversations and body.get("conversation_id"):
                return JSONResponse({"status": 404, "detail": "no such conversation"}, status_code=404)
            history = self.conversations.setdefault(conversation_id, [])
            message_id = str(uuid.uuid4())
            history.append(
                {
                    "id": str(uuid.uuid4()),
                    "role": "user",
                    "content": body["message"],
                    "selected_text": body.get("selected_text"),
                    "citations": [],
                }
            )
            history.append(
                {
                    "id": message_id,
                    "role": "assistant",
                    "content": reply.text,
                    "citations": reply.citations,
                    "status": "ok",
                    "answered": reply.answered,
                }
            )

            async def events() -> AsyncIterator[bytes]:
                yield sse("meta", {"conversation_id": conversation_id, "message_id": message_id})
                # Like the real API: `citations` lists candidates numbered as the model saw them (a decoy here),
                # the answer's final numbers arrive with the delta that first cites them.
                decoys = [citation(1, "https://decoy.invalid/", title="Decoy")] if reply.answered else []
                yield sse("citations", {"citations": decoys})
                for position, word in enumerate(reply.text.split(" ")):
                    if reply.delay:
                        await asyncio.sleep(reply.delay)
                    cited = reply.citations if position == 0 else []
                    yield sse("delta", {"text": word + " ", "citations": cited})
                if reply.stream_error:
                    yield sse("error", {"code": "upstream-error", "message": reply.stream_error})
                    return
                done = {"usage": {"total_tokens": 3}, "citations": reply.citations, "answered": reply.answered}
                yield sse("done", done | {"closest_pages": reply.closest_pages})

            return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

        @app.get("/api/conversations/{conversation_id}", response_model=None)
        async def conversation(conversation_id: str, request: Request) -> Response:
            refused = unauthorized(request)
            if refused is not None:
                return refused
            if conversation_id not in self.conversations:
                return JSONResponse({"status": 404, "detail": "no such conversation"}, status_code=404)
            return JSONResponse({"id": conversation_id, "messages": self.conversations[conversation_id]})

        @app.post("/api/messages/{message_id}/feedback", response_model=None)
        async def feedback(message_id: str, request: Request) -> Response:
            refused = unauthorized(request)
            if refused is not None:
                return refused
            self.feedback.append((message_id, await request.json()))
            return Response(status_code=204)
