"""Request body limit: a body larger than allowed is refused with 413 before the app reads it whole."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bookchat.errors import BookchatError, PayloadTooLarge


class BodyTooLarge(Exception):
    """Raised inside `receive` once a streamed body passes its limit."""


class BodyLimitMiddleware:
    """Refuses bodies over `limit_for(path)` bytes: by `Content-Length` at once, or while the body streams in."""

    def __init__(
        self, app: ASGIApp, limit_for: Callable[[str], int], on_refused: Callable[[BookchatError], ASGIApp]
    ) -> None:
        self.app = app
        self.limit_for = limit_for
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        error = PayloadTooLarge(f"the request body is larger than {limit} bytes")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self.on_refused(error)(scope, receive, send)
            return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if response_started:
                raise
            await self.on_refused(error)(scope, receive, send)
