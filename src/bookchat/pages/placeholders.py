"""What the model must not touch — code, math, links, images, markup, admonition markers — swapped for tokens.

`protect` replaces each such piece with a token `⟦n⟧` (blocks on a line of their own), `restore` puts the exact
bytes back and reports tokens the model lost, repeated or invented, so the caller can retry or fall back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bookchat.documents.markdown import fence_closes, open_fence

TOKEN = re.compile(r"⟦(\d{1,5})⟧")
# A block-level line the model must keep as it is: admonition fences (`:::tip Title`, `:::`), MDX `import` /
# `export` lines, link reference definitions, table delimiter rows and lines that are only markup or a comment.
_KEPT_LINE = re.compile(
    r"^(?:\s*:{3,}.*"
    r"|(?:import|export)\s.*"
    r"|\s{0,3}\[[^\]\n]+\]:\s+\S.*"
    r"|(?=[^\n]*\|)(?=[^\n]*-)[ \t|:-]+"
    r"|\s*(?:<[^<>\n]+>\s*)+"
    r"|\s*<!--.*-->\s*"
    r"|\s*\{/\*.*\*/\}\s*)$"
)
_MATH_BLOCK = re.compile(r"^\s*\$\$")
# Inline pieces, tried in this order at each position: code spans, math, images, links, autolinks and bare
# URLs, HTML/JSX tags and comments, and the token brackets themselves (so a text that contains them survives).
_INLINE = re.compile(
    r"(?P<code>(`+)(?:.+?)\2(?!`))"
    r"|(?P<math>\$\$[^\n]+?\$\$|(?<![\\$\w])\$(?=[^\s$])[^$\n]+?(?<=[^\s\\$])\$(?![\d$])|\\\([^\n]+?\\\)|\\\[[^\n]+?\\\])"
    r"|(?P<image>!\[[^\]\n]*\]\([^)\n]*\))"
    r"|(?P<link>\[[^\]\n]*\]\([^)\n]*\)|\[[^\]\n]+\]\[[^\]\n]*\])"
    r"|(?P<url><[a-zA-Z][a-zA-Z0-9+.-]{1,31}:[^\s<>]*>|https?://[^\s<>()\[\]]*[^\s<>()\[\].,;:!?'\"])"
    r"|(?P<tag><!--[^\n]*?-->|\{/\*[^\n]*?\*/\}|</?[A-Za-z][\w.:-]*(?:\s[^<>\n]*)?/?>)"
    r"|(?P<bracket>[⟦⟧])"
)


@dataclass
class Protected:
    """A section's text with tokens in place of the pieces it keeps verbatim (`originals[n]` for `⟦n⟧`)."""

    text: str
    originals: dict[int, str] = field(default_factory=dict)
    blocks: set[int] = field(default_factory=set)

    def _token(self, original: str, *, block: bool) -> str:
        number = len(self.originals) + 1
        self.originals[number] = original
        if block:
            self.blocks.add(number)
        return f"⟦{number}⟧"


@dataclass(frozen=True)
class Restored:
    """The model's text with the originals back; `problems` is empty when every token came back exactly once."""

    text: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def protect(markdown: str) -> Protected:
    """Tokens in place of code blocks, math blocks, kept lines and inline code, math, links, images and markup."""
    result = Protected("")
    out: list[str] = []
    prose: list[str] = []

    def flush() -> None:
        if prose:
            out.append(_INLINE.sub(lambda match: result._token(match.group(0), block=False), "\n".join(prose)))
            prose.clear()

    lines = markdown.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = open_fence(line)
        end = i
        if fence is not None:
            while end + 1 < len(lines) and not fence_closes(lines[end + 1], fence):
                end += 1
            end = min(end + 1, len(lines) - 1)
        elif _MATH_BLOCK.match(line) and not (line.strip() != "$$" and line.rstrip().endswith("$$")):
            while end + 1 < len(lines) and "$$" not in lines[end + 1]:
                end += 1
            end = min(end + 1, len(lines) - 1)
        elif not _KEPT_LINE.match(line) or not line.strip():
            prose.append(line)
            i += 1
            continue
        flush()
        out.append(result._token("\n".join(lines[i : end + 1]), block=True))
        i = end + 1
    flush()
    result.text = "\n".join(out)
    return result


def restore(text: str, protected: Protected) -> Restored:
    """Put every original back; a block token is given a line of its own (the model may have indented it)."""
    seen: dict[int, int] = {}
    for match in TOKEN.finditer(text):
        number = int(match.group(1))
        seen[number] = seen.get(number, 0) + 1
    problems = [f"⟦{n}⟧ missing" for n in protected.originals if n not in seen]
    problems += [f"⟦{n}⟧ repeated" for n, count in seen.items() if count > 1 and n in protected.originals]
    problems += [f"⟦{n}⟧ unknown" for n in seen if n not in protected.originals]

    def put_back(match: re.Match[str]) -> str:
        number = int(match.group(1))
        original = protected.originals.get(number, match.group(0))
        if number not in protected.blocks:
            return original
        start, end = match.start(), match.end()
        before = "" if start == 0 or text[start - 1] == "\n" else "\n"
        after = "" if end == len(text) or text[end] == "\n" else "\n"
        return before + original + after

    # Indentation the model put before a block token would be added to the block's first line: dropped.
    blocks = "|".join(str(n) for n in sorted(protected.blocks))
    if blocks:
        text = re.sub(rf"(?m)^[ \t]+(?=⟦(?:{blocks})⟧)", "", text)
    return Restored(TOKEN.sub(put_back, text), tuple(problems))


def restore_partial(text: str, protected: Protected) -> str:
    """The part of a text still being written that can be shown: tokens put back, an unfinished one held back."""
    cut = text.rfind("⟦")
    if cut >= 0 and "⟧" not in text[cut:]:
        text = text[:cut]
    return TOKEN.sub(lambda match: protected.originals.get(int(match.group(1)), ""), text)
