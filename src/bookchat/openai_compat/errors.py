"""OpenAI-format errors (`{"error": {message, type, param, code}}`) and their mapping from bookchat's own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.responses import JSONResponse

from bookchat.errors import BookchatError

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"
RATE_LIMIT = "rate_limit_error"


class OpenAIError(Exception):
    """An error the OpenAI clients understand: the status picks their exception class, the body its text."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def from_bookchat(error: BookchatError) -> OpenAIError:
    """The same failure in OpenAI's words; headers such as Retry-After and WWW-Authenticate are kept."""
    if error.status == 401:
        return OpenAIError(
            401,
            "Incorrect API key provided. Send `Authorization: Bearer <API key or bookchat access token>`.",
            code="invalid_api_key",
            headers=error.headers,
        )
    if error.status == 429:
        return OpenAIError(429, error.detail, type=RATE_LIMIT, code="rate_limit_exceeded", headers=error.headers)
    if error.status >= 500:
        return OpenAIError(error.status, error.detail, type=SERVER_ERROR, code=error.code, headers=error.headers)
    return OpenAIError(error.status, error.detail, code=error.code, headers=error.headers)


def _param(location: Sequence[Any]) -> str | None:
    # ("body", "messages", 0, "content") -> "messages[0].content", the way OpenAI names parameters.
    parts = [part for part in location if part != "body"]
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or None


def from_validation(error: RequestValidationError) -> OpenAIError:
    """A body that does not validate: 400 naming the first offending parameter (OpenAI never sends 422)."""
    problems = list(error.errors())
    if not problems:
        return OpenAIError(400, "The request body is invalid.")
    first = problems[0]
    param = _param(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        return OpenAIError(400, "We could not parse the JSON body of your request.", code="invalid_json")
    if first.get("type") == "missing":
        return OpenAIError(
            400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
        )
    message = str(first.get("msg", "invalid value"))
    return OpenAIError(400, f"Invalid value for '{param}': {message}.", param=param, code="invalid_value")
