"""Storable text and one-line shortening, shared by every schema and every title or snippet."""

from __future__ import annotations

import pytest

from bookchat.text import check_storable, shorten


@pytest.mark.parametrize("value", ["nul \x00 here", "lone \ud800 surrogate"])
def test_text_postgresql_refuses_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match=r"NUL|Unicode"):
        check_storable(value)


def test_ordinary_text_passes_unchanged() -> None:
    assert check_storable("Ünïcode — fine ✓") == "Ünïcode — fine ✓"


def test_shorten_keeps_short_text_on_one_line() -> None:
    assert shorten("  How   does\nit work?  ", 80) == "How does it work?"


def test_shorten_cuts_at_a_word_boundary_within_the_limit() -> None:
    cut = shorten("alpha beta, gamma delta epsilon", 18)
    assert cut == "alpha beta…"
    assert len(cut) <= 18
