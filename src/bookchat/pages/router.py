"""/api/pages/personalize and /api/pages/translate (JSON or Server-Sent Events), and GET /api/features."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from bookchat.auth.dependencies import OptionalPrincipalDep, Principal
from bookchat.auth.rate_limits import acquire_stream_slot, get_rate_limiter
from bookchat.chat.sse import accepts_event_stream, encode_events, stream_in_slot
from bookchat.errors import Forbidden, Unauthorized
from bookchat.pages.languages import direction
from bookchat.pages.schemas import FeaturesResponse, PageResponse, PagesFeatures, PersonalizeRequest, TranslateRequest
from bookchat.pages.service import SIGN_IN, PageJob, PagesService
from bookchat.runtime.dependencies import ResourcesDep, SettingsDep

router = APIRouter(tags=["pages"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The chapter as JSON, or with `stream: true` / `Accept: text/event-stream` a stream of "
        "`meta`, then per section `delta` (provisional text) and `section` (final), then `done` or `error`.",
        "content": {"text/event-stream": {}},
    },
    401: {**_PROBLEM, "description": "No token, or a guest's: these pages are for signed-in readers."},
    403: {**_PROBLEM, "description": "The admin service token is not a reader."},
    404: {**_PROBLEM, "description": "No chapter matches `page`."},
    409: {**_PROBLEM, "description": "No background to personalise for, or the chapter is being ingested."},
    413: {**_PROBLEM, "description": "The chapter has too many sections."},
    422: {**_PROBLEM, "description": "Invalid request body."},
    429: {**_PROBLEM, "description": "Too many chapters rewritten (BOOKCHAT_RATE_LIMIT_PAGES) or open streams."},
    502: {**_PROBLEM, "description": "The language model failed."},
    503: {**_PROBLEM, "description": "No language model is configured, or it is rate limited."},
    504: {**_PROBLEM, "description": "The language model did not answer in time."},
}


async def signed_in_caller(principal: OptionalPrincipalDep, settings: SettingsDep) -> Principal:
    """A signed-in reader, or a guest when BOOKCHAT_PAGES_ALLOW_GUESTS is on; checked before the body is, so
    a guest learns why first (the service checks the rest: a guest must give a background to personalise)."""
    if principal is None or (principal.role == "guest" and not settings.pages_allow_guests):
        raise Unauthorized(SIGN_IN, code="sign-in-required")
    if principal.is_service:
        raise Forbidden("The admin service token is not a reader; sign in as one.", code="account-required")
    return principal


CallerDep = Annotated[Principal, Depends(signed_in_caller)]


async def get_pages_service(request: Request, resources: ResourcesDep) -> PagesService:
    settings = resources.settings
    limiter = get_rate_limiter(request)
    return PagesService(resources.database.pool, resources.llm, settings, limiter, settings.collection)


PagesServiceDep = Annotated[PagesService, Depends(get_pages_service)]


async def _reply(request: Request, principal: Principal, job: Any, service: PagesService, stream: bool) -> Any:
    if not (stream or accepts_event_stream(request.headers.get("accept"))):
        prepared: PageJob = await job
        return await service.complete(prepared)
    # The stream slot first, so a 429 can still be a plain response; the job is checked inside it.
    release = await acquire_stream_slot(request, principal)
    return await stream_in_slot(release, job, lambda ready: encode_events(service.events(ready)))


@router.post("/api/pages/personalize", response_model=PageResponse, responses=_RESPONSES)
async def personalize(
    body: PersonalizeRequest, request: Request, principal: CallerDep, service: PagesServiceDep
) -> Any:
    """The chapter rewritten for the reader's background (`PATCH /api/auth/me`): the same facts and headings,
    the explanations adapted — basics for beginners, depth for advanced readers, hardware analogies for those
    who build things.

    Code blocks, math, links, images and admonition markers come back byte for byte: the model never sees them.
    Long chapters are rewritten section by section, several at once, and sent in order. Results are cached per
    (chapter version, background bucket, model, prompt version): a second reader with the same background gets
    them at once, with no model call.
    """
    return await _reply(request, principal, service.personalize(principal, body), service, body.stream)


@router.post("/api/pages/translate", response_model=PageResponse, responses=_RESPONSES)
async def translate(body: TranslateRequest, request: Request, principal: CallerDep, service: PagesServiceDep) -> Any:
    """The chapter translated (Urdu unless `language` or the reader's profile says otherwise): technical terms
    kept in English where the field uses them (BOOKCHAT_PAGES_GLOSSARY pins terms), headings translated with
    their original anchors, code and links untouched. `direction` is `rtl` for right-to-left languages.
    """
    return await _reply(request, principal, service.translate(principal, body), service, body.stream)


@router.get("/api/features")
async def features(resources: ResourcesDep, settings: SettingsDep) -> FeaturesResponse:
    """What this server offers readers, so the widget shows only what works (e.g. no page buttons without a
    language model)."""
    has_llm = resources.llm is not None
    return FeaturesResponse(
        llm=has_llm,
        registration=settings.allow_registration,
        anonymous=settings.allow_anonymous,
        pages=PagesFeatures(
            personalize=has_llm,
            translate=has_llm,
            default_language=settings.pages_default_language.lower(),
            direction=direction(settings.pages_default_language),
            guests=settings.pages_allow_guests,
        ),
    )
