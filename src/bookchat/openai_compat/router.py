"""`/v1`: the OpenAI-compatible face of the chat (models, chat completions), errors in OpenAI's format."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from bookchat.auth.dependencies import Principal, TokenCodecDep, principal_from_token
from bookchat.auth.rate_limits import acquire_stream_slot, enforce_rate_limit
from bookchat.chat.router import ChatServiceDep
from bookchat.chat.sse import stream_in_slot
from bookchat.errors import BookchatError
from bookchat.openai_compat.errors import SERVER_ERROR, OpenAIError, from_bookchat, from_validation
from bookchat.openai_compat.keys import match_api_key
from bookchat.openai_compat.schemas import ChatCompletion, ChatCompletionRequest, ErrorResponse, Model, ModelList
from bookchat.openai_compat.service import CompletionService
from bookchat.runtime.dependencies import SettingsDep

log = logging.getLogger(__name__)

ROUTES = {"/v1/models": {"GET"}, "/v1/chat/completions": {"POST"}}


class OpenAIRoute(APIRoute):
    """Renders every failure of a /v1 route — auth, validation, rate limit, upstream — as an OpenAI error."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def openai_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except OpenAIError as exc:
                return exc.response()
            except RequestValidationError as exc:
                return from_validation(exc).response()
            except BookchatError as exc:
                return from_bookchat(exc).response()
            except StarletteHTTPException as exc:
                return OpenAIError(exc.status_code, str(exc.detail), headers=exc.headers).response()
            except Exception:
                log.exception("openai-compatible request failed")
                message = "The server had an error while processing your request."
                return OpenAIError(500, message, type=SERVER_ERROR, code="internal").response()

        return openai_errors


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Invalid or unsupported parameters.",
        401: "Missing or wrong API key / access token (the openai client raises AuthenticationError).",
        404: "Unknown model.",
        429: "Rate limited; see Retry-After.",
        502: "The language model failed.",
        503: "The language model or the search is unavailable; see Retry-After.",
        504: "The language model did not answer in time.",
    }.items()
}

router = APIRouter(prefix="/v1", tags=["openai-compatible"], route_class=OpenAIRoute, responses=_ERRORS)

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKeyOrAccessToken",
    description="An API key of BOOKCHAT_API_KEYS, or a bookchat access token (JWT).",
)


async def openai_principal(
    request: Request,
    settings: SettingsDep,
    codec: TokenCodecDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """An API key (compared as a digest, in constant time) or an access token; 401 otherwise."""
    if credentials is None or not credentials.credentials:
        raise OpenAIError(
            401,
            "You didn't provide an API key. Send `Authorization: Bearer <API key or bookchat access token>`.",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = credentials.credentials
    principal = match_api_key(token, settings.api_keys) or principal_from_token(token, codec, settings)
    request.state.principal = principal  # read by rate limits and access logs
    return principal


OpenAIPrincipalDep = Annotated[Principal, Depends(openai_principal)]


async def get_completion_service(chat: ChatServiceDep, settings: SettingsDep) -> CompletionService:
    return CompletionService(chat, settings.collection)


CompletionServiceDep = Annotated[CompletionService, Depends(get_completion_service)]


@router.get("/models", response_model=ModelList)
async def list_models(principal: OpenAIPrincipalDep, service: CompletionServiceDep) -> ModelList:
    """One model per corpus: its id is the collection name (`BOOKCHAT_COLLECTION`)."""
    return service.models()


@router.get("/models/{model_id}", response_model=Model)
async def retrieve_model(model_id: str, principal: OpenAIPrincipalDep, service: CompletionServiceDep) -> Model:
    return service.get_model(model_id)


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "A chat.completion, or with `stream: true` chat.completion.chunk events "
            "ending with `data: [DONE]`.",
        }
    },
)
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    response: Response,
    principal: OpenAIPrincipalDep,
    service: CompletionServiceDep,
) -> Any:
    """Answer the last user message from the book, the earlier messages being the conversation so far.

    The reply is a normal `chat.completion`; its text ends with a Markdown list of the cited sections, and
    the extra field `citations` holds them structured. Rate limits are those of `POST /api/chat`.
    """
    limits = await enforce_rate_limit(request, "chat", principal, response)
    if not body.stream:
        prepared = await service.prepare(principal.id, body)
        return await service.complete(prepared)
    # A 429 must be sent before the stream starts, so the slot is taken first and released when it ends.
    release = await acquire_stream_slot(request, principal)
    return await stream_in_slot(
        release,
        service.prepare(principal.id, body),
        service.stream,
        headers=limits.headers() if limits.limit else None,
    )


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def unknown(path: str, request: Request) -> Response:
    """Anything else under /v1 (embeddings, responses, ...): OpenAI's 404, or 405 for a known path."""
    full = "/v1/" + path
    if full in ROUTES:
        raise OpenAIError(405, f"Method {request.method} is not allowed on {full}.", code="method_not_allowed")
    message = f"Invalid URL ({request.method} {full}): bookchat serves /v1/models and /v1/chat/completions."
    raise OpenAIError(404, message, code="unknown_url")
