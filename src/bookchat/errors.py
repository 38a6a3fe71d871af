"""Errors that become RFC 9457 problem+json responses; services raise them, the app renders them."""

from __future__ import annotations

from collections.abc import Mapping


class BookchatError(Exception):
    """A failure with an HTTP meaning: `status`, a short `title`, a stable machine `code` and a `detail`."""

    status: int = 500
    title: str = "Internal Server Error"
    code: str = "internal"

    def __init__(self, detail: str, *, headers: Mapping[str, str] | None = None, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})
        if code is not None:
            self.code = code


class BadRequest(BookchatError):
    status, title, code = 400, "Bad Request", "bad-request"


class Unauthorized(BookchatError):
    status, title, code = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str, *, headers: Mapping[str, str] | None = None, code: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer", **(headers or {})}, code=code)


class Forbidden(BookchatError):
    status, title, code = 403, "Forbidden", "forbidden"


class NotFound(BookchatError):
    status, title, code = 404, "Not Found", "not-found"


class Conflict(BookchatError):
    status, title, code = 409, "Conflict", "conflict"


class PayloadTooLarge(BookchatError):
    status, title, code = 413, "Content Too Large", "payload-too-large"


class UnsupportedMediaType(BookchatError):
    status, title, code = 415, "Unsupported Media Type", "unsupported-media-type"


class UnprocessableContent(BookchatError):
    status, title, code = 422, "Unprocessable Content", "validation-failed"


class TooManyRequests(BookchatError):
    status, title, code = 429, "Too Many Requests", "rate-limited"


class BadGateway(BookchatError):
    status, title, code = 502, "Bad Gateway", "upstream-error"


class ServiceUnavailable(BookchatError):
    status, title, code = 503, "Service Unavailable", "unavailable"


class GatewayTimeout(BookchatError):
    status, title, code = 504, "Gateway Timeout", "upstream-timeout"
