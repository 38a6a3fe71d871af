"""Text that may be stored: PostgreSQL `text` holds no NUL, and a lone surrogate cannot be encoded as UTF-8."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

from pydantic import AfterValidator


def check_storable(value: str) -> str:
    """`value` unchanged, or ValueError naming why PostgreSQL would refuse it."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


# Refused with a 422 at the edge rather than failing deep inside the database driver as a 500.
StorableStr = Annotated[str, AfterValidator(check_storable)]


def page_address(url: str) -> str:
    """A page's URL as it may be kept and shown: scheme, host and path, without user info, query or fragment.

    Query strings and fragments carry session tokens, e-mail addresses and campaign ids that have no place in
    a prompt, the database or a citation.
    """
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


# For request fields holding the page a reader is on (`page_url`): storable, then reduced to its address.
PageUrl = Annotated[str, AfterValidator(check_storable), AfterValidator(page_address)]


def shorten(text: str, limit: int) -> str:
    """`text` on one line, cut at a word boundary with "…" when it is longer than `limit` characters."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return flat[: limit - 1].rsplit(" ", 1)[0].rstrip(",.;:") + "…"
