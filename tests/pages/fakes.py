"""A fake model for the pages: it "translates" or "personalises" a section line by line, tokens and headings kept."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from tests.fakes.llm_server import Reply, Text, message_text

SECTION = re.compile(r"<section>\n(?P<text>.*)\n</section>", re.DOTALL)
TOKEN_LINE = re.compile(r"^\s*(⟦\d+⟧\s*)+$")
HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
URDU_PREFIX = "یہ حصہ اردو میں ہے:"


def section_of(body: dict[str, Any]) -> str:
    """The section text a pages request carries (the last user message, between <section> tags)."""
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            match = SECTION.search(message_text(message))
            if match:
                return match.group("text")
    raise AssertionError("no <section> in the request")


def instructions_of(body: dict[str, Any]) -> str:
    return "\n".join(message_text(m) for m in body.get("messages", []) if m.get("role") in ("system", "developer"))


def rewrite_lines(text: str, prefix: str, *, headings: bool) -> str:
    out = []
    for line in text.split("\n"):
        heading = HEADING.match(line)
        if heading:
            out.append(f"{heading.group(1)} {prefix} {heading.group(2)}" if headings else line)
        elif not line.strip() or TOKEN_LINE.match(line):
            out.append(line)
        else:
            out.append(f"{prefix} {line}")
    return "\n".join(out)


def page_reply(body: dict[str, Any]) -> Reply:
    """Translations get Urdu words before each line (headings too); personalisations a level tag."""
    text = section_of(body)
    if "You translate" in instructions_of(body):
        return Text(rewrite_lines(text, URDU_PREFIX, headings=True))
    level = re.search(
        r"The reader (has never programmed|is an? [\w ]+? (?:programmer|engineer))", instructions_of(body)
    )
    tag = "[" + (level.group(1) if level else "reader") + "]"
    return Text(rewrite_lines(text, tag, headings=False))


def dropping_tokens(body: dict[str, Any]) -> Reply:
    """A model that loses every placeholder token."""
    reply = page_reply(body)
    assert isinstance(reply, Text)
    return Text(re.sub(r"⟦\d+⟧", "", reply.content))


def adding_heading(body: dict[str, Any]) -> Reply:
    reply = page_reply(body)
    assert isinstance(reply, Text)
    return Text(reply.content + "\n\n## An extra heading\n\nMore.")


def paced(tokens_per_second: float) -> Callable[[dict[str, Any]], Reply]:
    """`page_reply` streamed at about `tokens_per_second` (a token is about four characters)."""

    def reply(body: dict[str, Any]) -> Reply:
        answer = page_reply(body)
        assert isinstance(answer, Text)
        pieces = answer.stream_pieces()
        seconds = len(answer.content) / 4 / tokens_per_second
        return dataclasses.replace(answer, chunk_delay=seconds / max(1, len(pieces)))

    return reply
