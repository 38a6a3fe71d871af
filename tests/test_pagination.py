"""Keyset cursors: what goes in comes out; anything a server did not issue is a 400 `invalid-cursor`."""

from __future__ import annotations

import base64

import pytest

from bookchat.edge.pagination import InvalidCursor, decode_cursor, encode_cursor


def test_cursors_round_trip_and_are_url_safe() -> None:
    cursor = encode_cursor("module-2/01 gazebo.md", "7f1c0f6e-2a51-4c8a-9d3e-3f1f1c2b9a10")
    assert "=" not in cursor
    assert "/" not in cursor
    assert decode_cursor(cursor, 2) == ["module-2/01 gazebo.md", "7f1c0f6e-2a51-4c8a-9d3e-3f1f1c2b9a10"]


DEEPLY_NESTED = base64.urlsafe_b64encode(b"[" * 1500 + b"]" * 1500).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        "bm90LWpzb24",
        encode_cursor("only-one"),
        encode_cursor("a", "b", "c"),
        DEEPLY_NESTED,
        encode_cursor("nul\x00byte", "x"),
        encode_cursor("lone \ud800 surrogate", "x"),
    ],
)
def test_foreign_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor) as refused:
        decode_cursor(cursor, 2)
    assert refused.value.status == 400
    assert refused.value.code == "invalid-cursor"


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+05:00", "2026-01-01T00:00:00", "yesterday"])
def test_conversation_cursors_with_unusable_times_are_refused(stamp: str) -> None:
    from bookchat.conversations.repository import decode_conversation_cursor

    with pytest.raises(InvalidCursor):
        decode_conversation_cursor(encode_cursor(stamp, "7f1c0f6e-2a51-4c8a-9d3e-3f1f1c2b9a10"))
