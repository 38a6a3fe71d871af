"""Upstream LLM failures mapped to bookchat's HTTP errors: 429 → 503 + Retry-After, timeout → 504, else 502."""

from __future__ import annotations

import contextlib
import email.utils
import math
import time
from typing import TYPE_CHECKING

from bookchat.errors import BadGateway, BookchatError, GatewayTimeout, ServiceUnavailable

DEFAULT_RETRY_AFTER_SECONDS = 5
MAX_RETRY_AFTER_SECONDS = 300

if TYPE_CHECKING:
    import openai


def _retry_after(error: openai.APIStatusError) -> int:
    """The upstream's Retry-After (seconds or an HTTP date), clamped to 1..300 s; 5 s when absent."""
    raw = error.response.headers.get("retry-after")
    seconds: float | None = None
    if raw:
        try:
            seconds = float(raw)
        except ValueError:
            with contextlib.suppress(ValueError, TypeError):
                seconds = email.utils.parsedate_to_datetime(raw).timestamp() - time.time()
    if seconds is None or not math.isfinite(seconds):
        return DEFAULT_RETRY_AFTER_SECONDS
    return int(min(MAX_RETRY_AFTER_SECONDS, max(1, math.ceil(seconds))))


def upstream_error(error: BaseException) -> BookchatError:
    """The `BookchatError` a reader should see for an exception raised while the model was answering.

    Messages stay generic: upstream bodies may echo the prompt or name the account, so they are not
    passed on (the log line records the exception type).
    """
    return _recognised(error) or BadGateway(
        "The language model sent a response bookchat could not use.", code="llm-bad-response"
    )


def is_known_upstream_error(error: BaseException) -> bool:
    """True for a failure models and their endpoints are known to have (a timeout, 429, 5xx, a dropped
    connection, an error inside the stream, too many turns): one log line says enough. Anything else — a
    response that could not be parsed, or a bug of ours — deserves its traceback."""
    return _recognised(error) is not None


def _recognised(error: BaseException) -> BookchatError | None:
    if isinstance(error, BookchatError):
        return error
    # Imported here: only a configured model raises these, and the SDK is slow to import (see bookchat.chat.context).
    import openai
    from agents.exceptions import MaxTurnsExceeded

    if isinstance(error, openai.RateLimitError) or (
        isinstance(error, openai.APIStatusError) and error.status_code == 503
    ):
        retry_after = _retry_after(error)
        return ServiceUnavailable(
            "The language model is busy or rate limited; try again shortly.",
            headers={"Retry-After": str(retry_after)},
            code="llm-unavailable",
        )
    if isinstance(error, openai.APITimeoutError | TimeoutError):
        return GatewayTimeout("The language model did not answer in time.", code="llm-timeout")
    if isinstance(error, openai.APIConnectionError):
        return BadGateway("The language model could not be reached.", code="llm-unreachable")
    if isinstance(error, openai.APIStatusError):
        return BadGateway(f"The language model failed (upstream status {error.status_code}).", code="llm-error")
    if isinstance(error, openai.APIError):
        # An error event inside a stream that had already started (no HTTP status to go by).
        if str(error.code) in {"429", "rate_limit_exceeded", "RESOURCE_EXHAUSTED"}:
            return ServiceUnavailable(
                "The language model is busy or rate limited; try again shortly.",
                headers={"Retry-After": str(DEFAULT_RETRY_AFTER_SECONDS)},
                code="llm-unavailable",
            )
        return BadGateway("The language model failed while answering.", code="llm-error")
    if isinstance(error, MaxTurnsExceeded):
        return BadGateway("The language model did not settle on an answer.", code="llm-no-answer")
    return None


def retry_after_seconds(error: BookchatError) -> int | None:
    value = error.headers.get("Retry-After")
    return int(value) if value and value.isdigit() else None
