"""Citation markers: renumber `[n]` in order of first use, drop invented ones, and do it on a token stream."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# A marker group as models write them: [2], [2, 5], [2; 5], [2-4], [ 3 ].
_MARKER = re.compile(r"\[\s*(\d{1,3}(?:\s*[-–]\s*\d{1,3})?(?:\s*[,;]\s*\d{1,3}(?:\s*[-–]\s*\d{1,3})?)*)\s*\]")
# What a marker can look like before its closing bracket has arrived (so a stream holds it back).
_MARKER_PREFIX = re.compile(
    r"\[\s*(?:\d{1,3}(?:\s*[-–]\s*(?:\d{1,3})?)?(?:\s*[,;]\s*(?:\d{1,3}(?:\s*[-–]\s*(?:\d{1,3})?)?)?)*)?\s*\Z"
)
# A range like [1-40] is expanded at most this far; anything wider is not a citation.
_MAX_RANGE = 20
_MAX_PENDING = 48


def _numbers(group: str) -> list[int]:
    numbers: list[int] = []
    for part in re.split(r"\s*[,;]\s*", group.strip()):
        bounds = re.split(r"\s*[-–]\s*", part)
        if len(bounds) == 2:
            low, high = int(bounds[0]), int(bounds[1])
            if low <= high and high - low < _MAX_RANGE:
                numbers.extend(range(low, high + 1))
        else:
            numbers.append(int(bounds[0]))
    return numbers


def strip_markers(text: str) -> str:
    """`text` without any `[n]` marker (for history turns, whose numbers meant other passages)."""
    return re.sub(r"[ \t]*" + _MARKER.pattern, "", text)


@dataclass
class CitationRewriter:
    """Rewrites citation markers of an answer, whole or streamed in pieces, with identical results.

    Passage numbers 1..`available` are valid. The first valid number the answer uses becomes [1], the
    next new one [2], and so on; numbers outside the range are removed together with the whitespace
    before them. Markers inside inline code or code fences are left alone (`items[0]` is code, not a
    citation). `feed()` returns the text that is safe to emit now — it holds back a possible marker
    that has not closed yet, trailing whitespace and trailing backticks — and `finish()` flushes.
    """

    available: int
    order: list[int] = field(default_factory=list)  # original passage numbers, in order of first use
    _pending: str = ""
    _fence: bool = False
    _inline: bool = False

    def renumbered(self, original: int) -> int:
        if original not in self.order:
            self.order.append(original)
        return self.order.index(original) + 1

    def feed(self, text: str) -> str:
        return self._process(self._pending + text, final=False)

    def finish(self) -> str:
        return self._process(self._pending, final=True)

    def rewrite(self, text: str) -> str:
        """Rewrite a complete answer (equivalent to `feed(text) + finish()`)."""
        return self.feed(text) + self.finish()

    def _replacement(self, group: str) -> str:
        valid: list[int] = []
        for number in _numbers(group):
            if 1 <= number <= self.available and number not in valid:
                valid.append(number)
        return "".join(f"[{self.renumbered(number)}]" for number in valid)

    def _process(self, text: str, *, final: bool) -> str:
        out: list[str] = []
        i, length = 0, len(text)
        self._pending = ""
        while i < length:
            char = text[i]
            if char == "`":
                run_end = i
                while run_end < length and text[run_end] == "`":
                    run_end += 1
                if run_end == length and not final:
                    self._pending = text[i:]  # the run may continue in the next piece
                    break
                run = run_end - i
                if run >= 3 and not self._inline:
                    self._fence = not self._fence
                elif not self._fence:
                    self._inline = not self._inline
                out.append(text[i:run_end])
                i = run_end
                continue
            if self._fence or self._inline:
                out.append(char)
                i += 1
                continue
            if char.isspace():
                run_end = i
                while run_end < length and text[run_end].isspace():
                    run_end += 1
                if run_end == length and not final:
                    self._pending = text[i:]  # whitespace before a marker that may be dropped
                    break
                if run_end < length and text[run_end] == "[":
                    match = _MARKER.match(text, run_end)
                    if match is not None:
                        replacement = self._replacement(match.group(1))
                        if replacement:
                            out.append(text[i:run_end] + replacement)
                        i = match.end()
                        continue
                    if not final and _MARKER_PREFIX.match(text, run_end) and length - run_end <= _MAX_PENDING:
                        self._pending = text[i:]
                        break
                out.append(text[i:run_end])
                i = run_end
                continue
            if char == "[":
                match = _MARKER.match(text, i)
                if match is not None:
                    out.append(self._replacement(match.group(1)))
                    i = match.end()
                    continue
                if not final and _MARKER_PREFIX.match(text, i) and length - i <= _MAX_PENDING:
                    self._pending = text[i:]
                    break
            out.append(char)
            i += 1
        return "".join(out)


def cited_numbers(text: str, available: int) -> list[int]:
    """The valid passage numbers `text` cites, in order of first use (without rewriting anything)."""
    rewriter = CitationRewriter(available)
    rewriter.rewrite(text)
    return list(rewriter.order)
