"""Token sizing: counting a text's tokens (memoised) and cutting text over budget at the gentlest boundary."""

from __future__ import annotations

import re
from collections.abc import Callable

TokenCounter = Callable[[str], int]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


class Sizer:
    """Counts tokens (memoised) and cuts text that is over budget at the gentlest boundary that works."""

    def __init__(self, count_tokens: TokenCounter) -> None:
        self._count = count_tokens
        self._cache: dict[str, int] = {}

    def count(self, text: str) -> int:
        tokens = self._cache.get(text)
        if tokens is None:
            tokens = self._count(text)
            if len(self._cache) < 50_000:
                self._cache[text] = tokens
        return tokens

    def split(self, text: str, budget: int, level: int = 0) -> list[str]:
        """Pieces of `text`, each within `budget`: by lines, then sentences, then words, then characters."""
        if self.count(text) <= budget:
            return [text]
        if level == 0:
            pieces, sep = text.split("\n"), "\n"
        elif level == 1:
            pieces, sep = _SENTENCE_END.split(text), " "
        elif level == 2:
            pieces, sep = text.split(" "), " "
        else:
            return self._split_chars(text, budget)
        if len(pieces) == 1:
            return self.split(text, budget, level + 1)
        out: list[str] = []
        current: list[str] = []
        current_tokens = 0
        for piece in pieces:
            tokens = self.count(piece)
            if tokens > budget:
                if current:
                    out.append(sep.join(current))
                    current, current_tokens = [], 0
                out.extend(self.split(piece, budget, level + 1))
                continue
            if current and current_tokens + tokens > budget:
                out.append(sep.join(current))
                current, current_tokens = [], 0
            current.append(piece)
            current_tokens += tokens
        if current:
            out.append(sep.join(current))
        return [piece for piece in out if piece.strip()]

    def _split_chars(self, text: str, budget: int) -> list[str]:
        out: list[str] = []
        start = 0
        while start < len(text):
            size = max(1, budget * 2)
            while size > 1 and self.count(text[start : start + size]) > budget:
                size //= 2
            out.append(text[start : start + size])
            start += size
        return out

    def tail(self, text: str, budget: int) -> str:
        """The end of `text` within `budget` tokens, on a sentence boundary when one fits (for overlap)."""
        if budget <= 0:
            return ""
        sentences = [s for s in _SENTENCE_END.split(text.replace("\n", " ")) if s.strip()]
        kept: list[str] = []
        total = 0
        for sentence in reversed(sentences):
            tokens = self.count(sentence)
            if total + tokens > budget:
                break
            kept.insert(0, sentence)
            total += tokens
        if kept:
            return " ".join(kept)
        words = sentences[-1].split(" ") if sentences else []
        tail_words: list[str] = []
        for word in reversed(words):
            if self.count(" ".join([word, *tail_words])) > budget:
                break
            tail_words.insert(0, word)
        return " ".join(tail_words)
