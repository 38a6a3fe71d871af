"""Personalised and translated chapters: who may ask, the cache, the rate limit, and sections rewritten
concurrently (bounded) and handed on in order."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
from pydantic import BaseModel

from bookchat.auth.dependencies import Principal
from bookchat.auth.profiles import ProfileService
from bookchat.auth.schemas import Background
from bookchat.config import Settings
from bookchat.errors import BookchatError, Conflict, Forbidden, PayloadTooLarge, ServiceUnavailable, Unauthorized
from bookchat.llm.errors import is_known_upstream_error, upstream_error
from bookchat.pages import prompts
from bookchat.pages.chapters import chapter_markdown, find_chapter
from bookchat.pages.languages import direction, normalize_tag
from bookchat.pages.rendering import render_section
from bookchat.pages.repository import CachedSection, CacheKey, ChapterRow, cached_sections, store_section
from bookchat.pages.rewriter import Kind, SectionResult, SectionRewriter
from bookchat.pages.schemas import (
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    PageMeta,
    PageResponse,
    PageSection,
    PageUsage,
    PersonalizeRequest,
    TranslateRequest,
)
from bookchat.pages.sections import ChapterSection, join_sections, split_chapter
from bookchat.runtime.rate_limiter import RateLimiter

if TYPE_CHECKING:  # the SDK behind it is slow to import; only a configured model needs it
    from bookchat.llm.provider import LLM

log = logging.getLogger(__name__)

# A chapter of more sections than this is a book, not a chapter: refused before any model call.
MAX_SECTIONS = 400
NO_MODEL = (
    "Personalised and translated chapters need a language model. Set BOOKCHAT_LLM_API_KEY (or GEMINI_API_KEY) "
    "for Gemini, or BOOKCHAT_LLM_PROVIDER=openai with BOOKCHAT_LLM_BASE_URL and BOOKCHAT_LLM_MODEL for any "
    "OpenAI-compatible server, and restart."
)
SIGN_IN = (
    "Personalised and translated chapters are for signed-in readers: sign in (POST /api/auth/login) or create "
    "an account (POST /api/auth/register)."
)
# What a cache write may fail with: the reader still gets the section, the next reader pays for it again.
_STORE_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


@dataclass
class Tally:
    """What a request cost so far."""

    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    fallbacks: int = 0

    def usage(self) -> PageUsage:
        return PageUsage(
            model_calls=self.model_calls, prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens
        )


@dataclass
class PageJob:
    """A request checked and ready: the chapter's sections, those already cached, and how to make the rest."""

    meta: PageMeta
    key: CacheKey
    sections: list[ChapterSection]
    cached: dict[int, CachedSection]
    rewriter: SectionRewriter
    tally: Tally = field(default_factory=Tally)


class PagesService:
    """Builds `PageJob`s for the router and runs them to a whole reply or to a stream of events."""

    def __init__(
        self, pool: Any, llm: LLM | None, settings: Settings, limiter: RateLimiter | None, collection: str
    ) -> None:
        self.pool = pool
        self.llm = llm
        self.settings = settings
        self.limiter = limiter
        self.collection = collection

    # --- preparing a request ----------------------------------------------------------------------------------

    def _model(self) -> LLM:
        if self.llm is None:
            raise ServiceUnavailable(NO_MODEL, code="llm-required")
        return self.llm

    def _check_reader(self, principal: Principal | None, *, has_background: bool, kind: Kind) -> Principal:
        if principal is not None and principal.is_service:
            raise Forbidden("The admin service token is not a reader; sign in as one.", code="account-required")
        if principal is not None and principal.user_id is not None:
            return principal
        if principal is not None and self.settings.pages_allow_guests and (has_background or kind == "translate"):
            return principal
        detail = SIGN_IN
        if principal is not None and self.settings.pages_allow_guests:
            detail += " Guests may personalise when they give their background in the request."
        raise Unauthorized(detail, code="sign-in-required")

    async def personalize(self, principal: Principal | None, body: PersonalizeRequest) -> PageJob:
        """A checked personalisation: 401 for guests, 503 without a model, 409 without a background."""
        reader = self._check_reader(principal, has_background=body.background is not None, kind="personalize")
        llm = self._model()
        background: Background | None = body.background
        if background is None:
            background = await ProfileService(self.pool).background(reader)
        if background is None:
            raise Conflict(
                "Tell bookchat your background first: PATCH /api/auth/me with "
                '{"background": {"software": "beginner", "hardware": "none"}} (or give it in the request).',
                code="background-required",
            )
        rewriter = SectionRewriter(llm, "personalize", prompts.personalize_instructions(background))
        return await self._job(reader, body.page, "personalize", prompts.profile_bucket(background), None, rewriter)

    async def translate(self, principal: Principal | None, body: TranslateRequest) -> PageJob:
        """A checked translation into `body.language`, else the profile's language, else the server's default."""
        reader = self._check_reader(principal, has_background=False, kind="translate")
        llm = self._model()
        language = body.language
        if language is None and reader.user_id is not None:
            stored = await ProfileService(self.pool).background(reader)
            language = stored.language if stored is not None else None
        language = normalize_tag(language or self.settings.pages_default_language)
        glossary = list(self.settings.pages_glossary)
        variant = language
        if glossary:
            variant += ";glossary=" + hashlib.sha256("\n".join(glossary).encode()).hexdigest()[:16]
        rewriter = SectionRewriter(llm, "translate", prompts.translate_instructions(language, glossary))
        return await self._job(reader, body.page, "translate", variant, language, rewriter)

    async def _job(
        self,
        reader: Principal,
        page: str,
        kind: Kind,
        variant: str,
        language: str | None,
        rewriter: SectionRewriter,
    ) -> PageJob:
        async with self.pool.acquire() as conn:
            chapter = await find_chapter(conn, self.collection, page)
        sections = await asyncio.to_thread(self._split, chapter)
        # The section size is part of the version: another size cuts the chapter elsewhere, so section n of one
        # cut is not section n of the other (even when both have as many sections).
        version = f"{prompts.PROMPT_VERSION}/{self.settings.pages_section_chars}"
        key = CacheKey(chapter.id, chapter.content_hash, kind, variant, rewriter.llm.model_name, version)
        async with self.pool.acquire() as conn:
            cached = await cached_sections(conn, key, len(sections))
        missing = [s for s in sections if s.index not in cached and rewriter.needs_model(s)]
        if missing and self.limiter is not None and not reader.is_service:
            # Cache misses cost money: charged once per chapter the model is asked to rewrite.
            await self.limiter.hit("pages", reader.id)
        meta = PageMeta(
            document_id=chapter.id,
            title=chapter.title,
            url=chapter.url,
            content_hash=chapter.content_hash,
            kind=kind,
            language=language,
            direction=direction(language) if language else "ltr",
            model=key.model,
            prompt_version=key.prompt_version,
            section_count=len(sections),
            cached_sections=len(cached),
        )
        log.info(
            "page job",
            extra={"kind": kind, "sections": len(sections), "cached": len(cached), "to_rewrite": len(missing)},
        )
        return PageJob(meta, key, sections, cached, rewriter)

    def _split(self, chapter: ChapterRow) -> list[ChapterSection]:
        sections = split_chapter(chapter_markdown(chapter), max_chars=self.settings.pages_section_chars)
        if len(sections) > MAX_SECTIONS:
            raise PayloadTooLarge(
                f"This chapter has {len(sections)} sections; at most {MAX_SECTIONS} are rewritten at once.",
                code="page-too-long",
            )
        return sections

    # --- running it -------------------------------------------------------------------------------------------

    async def complete(self, job: PageJob) -> PageResponse:
        """The whole chapter (an upstream failure is raised as 502/503/504; finished sections stay cached)."""
        sections = [item async for item in self._ordered(job, deltas=False) if isinstance(item, PageSection)]
        return PageResponse(
            **job.meta.model_dump(),
            markdown=join_sections([section.markdown for section in sections]),
            sections=sections,
            cached=job.tally.model_calls == 0,
            usage=job.tally.usage(),
        )

    async def events(self, job: PageJob) -> AsyncIterator[tuple[str, BaseModel]]:
        """`meta`, then per section in order its `delta`s and its `section`, then `done` (or `error`)."""
        yield "meta", job.meta
        try:
            async for item in self._ordered(job, deltas=True):
                yield ("delta" if isinstance(item, DeltaEvent) else "section"), item
        except BookchatError as exc:
            yield "error", ErrorEvent(code=exc.code, message=exc.detail)
            return
        yield (
            "done",
            DoneEvent(
                content_hash=job.meta.content_hash,
                cached=job.tally.model_calls == 0,
                fallbacks=job.tally.fallbacks,
                usage=job.tally.usage(),
            ),
        )

    async def _ordered(self, job: PageJob, *, deltas: bool) -> AsyncIterator[PageSection | DeltaEvent]:
        """Sections in order while up to PAGES_CONCURRENCY are rewritten at once; the one at the head of the
        order streams its deltas (those behind it are sent whole when their turn comes)."""
        semaphore = asyncio.Semaphore(self.settings.pages_concurrency)
        queues: dict[int, asyncio.Queue[str]] = {}
        tasks: dict[int, asyncio.Task[SectionResult]] = {}

        async def work(section: ChapterSection) -> SectionResult:
            queue = queues[section.index]
            async with semaphore:
                result = await job.rewriter.rewrite(section, queue.put_nowait if deltas else None)
            await self._store(job, result)
            return result

        for section in job.sections:
            if section.index not in job.cached:
                queues[section.index] = asyncio.Queue()
                tasks[section.index] = asyncio.create_task(work(section))
        try:
            for section in job.sections:
                cached = job.cached.get(section.index)
                if cached is not None:
                    yield await self._section(section, cached.markdown, "rewritten", cached=True)
                    continue
                task = tasks[section.index]
                if deltas:
                    async for text in _deltas(queues[section.index], task):
                        yield DeltaEvent(index=section.index, text=text)
                try:
                    result = await task
                except BookchatError:
                    raise
                except Exception as exc:
                    if not is_known_upstream_error(exc):
                        log.exception("section rewrite failed")
                    else:
                        log.warning("section rewrite failed: %s", type(exc).__name__)
                    raise upstream_error(exc) from exc
                self._count(job.tally, result)
                yield await self._section(section, result.markdown, result.status, cached=False, note=result.note)
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)

    @staticmethod
    def _count(tally: Tally, result: SectionResult) -> None:
        tally.model_calls += result.calls
        tally.prompt_tokens += result.prompt_tokens
        tally.completion_tokens += result.completion_tokens
        tally.fallbacks += result.status == "original"

    async def _section(
        self, section: ChapterSection, markdown: str, status: Any, *, cached: bool, note: str | None = None
    ) -> PageSection:
        heading = section.heading
        anchor = heading.anchor if heading is not None else None
        html = await asyncio.to_thread(render_section, markdown, anchor)
        return PageSection(
            index=section.index,
            heading=heading.text if heading is not None else None,
            level=heading.level if heading is not None else None,
            anchor=anchor,
            markdown=markdown,
            html=html,
            status=status,
            cached=cached,
            note=note,
        )

    async def _store(self, job: PageJob, result: SectionResult) -> None:
        """Cache a rewritten section; a failed write is logged, never the reader's problem."""
        if result.status != "rewritten":
            return  # nothing paid for (unchanged), or a fallback the next request should try again
        try:
            async with self.pool.acquire() as conn:
                stored = await store_section(
                    conn,
                    job.key,
                    index=result.index,
                    section_count=len(job.sections),
                    markdown=result.markdown,
                    prompt_tokens=result.prompt_tokens,
                    completion_tokens=result.completion_tokens,
                )
        except _STORE_ERRORS as exc:
            log.warning("rewritten section not cached: %s", type(exc).__name__)
            return
        if not stored:
            log.info("rewritten section not cached: the chapter changed meanwhile", extra={"section": result.index})


async def _deltas(queue: asyncio.Queue[str], task: asyncio.Task[SectionResult]) -> AsyncIterator[str]:
    """Text queued for a section until its task ends; what piled up while waiting goes as one piece."""
    if task.done():
        return  # finished before its turn: its `section` event says it all
    while not task.done():
        getter = asyncio.ensure_future(queue.get())
        try:
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
        if getter.done() and not getter.cancelled():
            pieces = [getter.result()]
            while not queue.empty():
                pieces.append(queue.get_nowait())
            yield "".join(pieces)
