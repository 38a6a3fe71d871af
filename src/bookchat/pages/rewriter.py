"""One section through the model: tokens in, the reply checked (every token back, headings kept), retried once,
else the original section with a note."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from bookchat.pages.placeholders import TOKEN, Protected, protect, restore, restore_partial
from bookchat.pages.prompts import section_input
from bookchat.pages.sections import ATX_HEADING, ChapterSection

if TYPE_CHECKING:  # the SDK behind it is slow to import; only a configured model needs it
    from bookchat.llm.provider import LLM

log = logging.getLogger(__name__)

Kind = Literal["personalize", "translate"]
SectionStatus = Literal["rewritten", "unchanged", "original"]
DeltaSink = Callable[[str], None]

FALLBACK_NOTE = "This section is shown as written: the model's version changed its code, links or headings."
_WRAPPER = re.compile(r"\A\s*(?:<section>\s*\n)?(?P<body>.*?)(?:\n\s*</section>)?\s*\Z", re.DOTALL)
_FENCED_REPLY = re.compile(r"\A\s*```(?:markdown|md)?[ \t]*\n(?P<body>.*)\n```\s*\Z", re.DOTALL)


@dataclass(frozen=True)
class SectionResult:
    """A finished section: its Markdown, how it was made, and what the model cost for it."""

    index: int
    markdown: str
    status: SectionStatus
    note: str | None = None
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class _Attempt:
    text: str
    prompt_tokens: int
    completion_tokens: int


def _unwrap(reply: str) -> str:
    """The section without what models like to put around it (`<section>` tags, a ```markdown fence)."""
    fenced = _FENCED_REPLY.match(reply)
    if fenced is not None and "```" not in fenced.group("body"):
        reply = fenced.group("body")
    match = _WRAPPER.match(reply)
    return match.group("body") if match is not None else reply.strip()


def _heading_levels(text: str) -> list[int]:
    # Code is behind tokens, so every heading-looking line of the reply is a heading.
    levels = []
    for line in text.split("\n"):
        match = ATX_HEADING.match(line)
        if match is not None:
            levels.append(len(match.group("hashes")))
    return levels


def _trailing_newlines(text: str) -> str:
    return text[len(text.rstrip("\n")) :]


class SectionRewriter:
    """Rewrites sections of one chapter for one request (personalised or translated by `instructions`)."""

    def __init__(self, llm: LLM, kind: Kind, instructions: str) -> None:
        self.llm = llm
        self.kind = kind
        self.instructions = instructions

    def model_text(self, section: ChapterSection) -> tuple[str, Protected]:
        """What the model sees: the heading without its explicit id, the body, code and links as tokens."""
        text = section.body
        if section.heading is not None:
            heading = "#" * section.heading.level + " " + section.heading.source
            text = heading + ("\n" + section.body if section.source != section.heading.line else "")
        return text.strip("\n"), protect(text.strip("\n"))

    def needs_model(self, section: ChapterSection) -> bool:
        """False for a section with nothing to rewrite (only code, links or markup, or blank)."""
        return self._has_prose(section, self.model_text(section)[1])

    def _has_prose(self, section: ChapterSection, protected: Protected) -> bool:
        text = protected.text
        if self.kind == "personalize" and section.heading is not None:
            text = text.partition("\n")[2]  # a personalised heading stays as written: only its body counts
        return bool(TOKEN.sub("", text).strip(" \t\n#"))

    async def rewrite(self, section: ChapterSection, on_delta: DeltaSink | None = None) -> SectionResult:
        """The section rewritten; its original when there is no prose to rewrite or the model twice broke it."""
        _, protected = self.model_text(section)
        if not self._has_prose(section, protected):
            return SectionResult(section.index, section.source, "unchanged")
        calls = prompt_tokens = completion_tokens = 0
        problems: tuple[str, ...] = ()
        for attempt_number in (1, 2):
            # Only the first attempt streams: a retry's text would contradict what the reader already saw.
            attempt = await self._call(protected, on_delta if attempt_number == 1 else None)
            calls += 1
            prompt_tokens += attempt.prompt_tokens
            completion_tokens += attempt.completion_tokens
            markdown, problems = self._finish(section, protected, attempt.text)
            if markdown is not None:
                return SectionResult(
                    section.index, markdown, "rewritten", None, calls, prompt_tokens, completion_tokens
                )
            log.info(
                "section rewrite rejected",
                extra={"section": section.index, "attempt": attempt_number, "problems": list(problems)[:5]},
            )
        log.warning("section kept as written after two rejected rewrites", extra={"section": section.index})
        return SectionResult(
            section.index, section.source, "original", FALLBACK_NOTE, calls, prompt_tokens, completion_tokens
        )

    def _finish(self, section: ChapterSection, protected: Protected, reply: str) -> tuple[str | None, tuple[str, ...]]:
        """The section's final Markdown from a reply, or None and what was wrong with it."""
        text = _unwrap(reply)
        expected = [section.heading.level] if section.heading is not None else []
        levels = _heading_levels(text)
        problems: list[str] = []
        if levels != expected:
            problems.append(f"headings {levels} instead of {expected}")
        lines = text.split("\n")
        if expected and not ATX_HEADING.match(lines[0]):
            problems.append("the heading is not the first line")
        restored = restore(text, protected)
        problems.extend(restored.problems)
        if problems:
            return None, tuple(problems)
        result = restored.text
        if section.heading is not None:
            first, _, rest = result.partition("\n")
            heading = self._heading_line(section, first)
            result = heading + ("\n" + rest if rest or "\n" in result else "")
        return result.rstrip("\n") + _trailing_newlines(section.source), ()

    def _heading_line(self, section: ChapterSection, reply_line: str) -> str:
        assert section.heading is not None
        if self.kind == "personalize":
            # The heading's words and anchor stay exactly as written (citations link to them).
            return section.heading.line
        match = ATX_HEADING.match(reply_line)
        translated = (match.group("text") if match else None) or section.heading.source
        # The original anchor, explicit, so links and citations into the chapter still land.
        anchor = f" {{#{section.heading.anchor}}}" if section.heading.anchor else ""
        return "#" * section.heading.level + " " + translated.strip() + anchor

    async def _call(self, protected: Protected, on_delta: DeltaSink | None) -> _Attempt:
        # Imported here: the SDK is slow to import and only a configured model needs it.
        from agents import Agent, Runner

        agent: Agent[None] = Agent(
            name=f"bookchat-{self.kind}",
            instructions=self.instructions,
            model=self.llm.model,
            model_settings=self.llm.model_settings,
        )
        result = Runner.run_streamed(agent, section_input(protected.text), max_turns=1)
        pieces: list[str] = []
        shown = 0
        try:
            async for event in result.stream_events():
                if event.type != "raw_response_event" or event.data.type != "response.output_text.delta":
                    continue
                pieces.append(event.data.delta)
                if on_delta is not None:
                    visible = restore_partial(_unwrap_partial("".join(pieces)), protected)
                    if len(visible) > shown:
                        on_delta(visible[shown:])
                        shown = len(visible)
        finally:
            result.cancel()
        usage = result.context_wrapper.usage
        return _Attempt("".join(pieces), int(usage.input_tokens or 0), int(usage.output_tokens or 0))


def _unwrap_partial(text: str) -> str:
    """A reply still being written, without an opening `<section>` tag or ```markdown fence."""
    stripped = text.lstrip()
    for opener in ("<section>\n", "```markdown\n", "```md\n"):
        if stripped.startswith(opener):
            return stripped[len(opener) :]
    return text
