"""Opaque keyset cursors for paginated lists: the sort keys of a page's last row, as base64url JSON."""

from __future__ import annotations

import base64
import binascii
import json

from bookchat.errors import BadRequest
from bookchat.text import check_storable


class InvalidCursor(BadRequest):
    code = "invalid-cursor"


def encode_cursor(*keys: str) -> str:
    """A cursor that resumes a list after the row whose sort keys are `keys`."""
    raw = json.dumps(list(keys), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[str]:
    """The `size` keys of a cursor made by `encode_cursor`; anything else is a 400 `invalid-cursor`."""
    try:
        keys = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        keys = None
    if not isinstance(keys, list) or len(keys) != size or not all(_storable(key) for key in keys):
        raise InvalidCursor("invalid cursor: pass back a `next_cursor` unchanged")
    return keys


def _storable(key: object) -> bool:
    if not isinstance(key, str):
        return False
    try:
        check_storable(key)
    except ValueError:
        return False
    return True
