"""/api/auth: register, login (JSON and OAuth2 form), refresh, logout, guest tokens, claim, me."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from bookchat.auth.dependencies import PrincipalDep, TokenCodecDep, UserDep
from bookchat.auth.profiles import ProfileService
from bookchat.auth.rate_limits import client_address, get_rate_limiter, rate_limit
from bookchat.auth.schemas import (
    ClaimRequest,
    ClaimResponse,
    GuestRequest,
    GuestTokenResponse,
    LoginRequest,
    LogoutRequest,
    MeResponse,
    ProfileUpdate,
    RefreshRequest,
    RegisterRequest,
    TokenResponse,
    UserOut,
)
from bookchat.auth.service import AuthService, TokenPair
from bookchat.runtime.dependencies import PoolDep, SettingsDep

PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
AUTH_LIMITED = [Depends(rate_limit("auth"))]

router = APIRouter(prefix="/api/auth", tags=["auth"])


async def get_auth_service(request: Request, pool: PoolDep, codec: TokenCodecDep, settings: SettingsDep) -> AuthService:
    return AuthService(pool, codec, settings, get_rate_limiter(request))


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]


async def get_profile_service(pool: PoolDep) -> ProfileService:
    return ProfileService(pool)


ProfileServiceDep = Annotated[ProfileService, Depends(get_profile_service)]


def _tokens(pair: TokenPair, response: Response) -> TokenResponse:
    # Tokens must never sit in a shared cache (RFC 6749 §5.1).
    response.headers["Cache-Control"] = "no-store"
    return TokenResponse(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
        refresh_expires_in=pair.refresh_expires_in,
    )


def _user(record: object) -> UserOut:
    return UserOut.model_validate(record, from_attributes=True)


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    dependencies=AUTH_LIMITED,
    responses={403: PROBLEM, 409: PROBLEM, 422: PROBLEM, 429: PROBLEM},
)
async def register(body: RegisterRequest, service: AuthServiceDep, profiles: ProfileServiceDep) -> UserOut:
    """Create an account. Closed when `BOOKCHAT_ALLOW_REGISTRATION=false`.

    With `guest_token`, the guest's conversations become the new account's; with `background`, chapters can
    be personalised for the reader right away (`POST /api/pages/personalize`).
    """
    user = await service.register(body.email, body.password, body.display_name, guest_token=body.guest_token)
    if body.background is not None:
        await profiles.save(user.id, body.background)
    return _user(user)


@router.post("/login", dependencies=AUTH_LIMITED, responses={400: PROBLEM, 401: PROBLEM, 429: PROBLEM})
async def login(body: LoginRequest, service: AuthServiceDep, request: Request, response: Response) -> TokenResponse:
    """Sign in with email and password; returns an access token and a single-use refresh token."""
    pair = await service.login(
        body.email, body.password, guest_token=body.guest_token, client_address=client_address(request)
    )
    return _tokens(pair, response)


@router.post("/token", dependencies=AUTH_LIMITED, responses={401: PROBLEM, 429: PROBLEM})
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    service: AuthServiceDep,
    request: Request,
    response: Response,
) -> TokenResponse:
    """OAuth2 password flow (form fields `username` = email, `password`), for Swagger's *Authorize* button."""
    pair = await service.login(form.username[:1024], form.password[:1024], client_address=client_address(request))
    return _tokens(pair, response)


@router.post("/refresh", dependencies=AUTH_LIMITED, responses={401: PROBLEM, 429: PROBLEM})
async def refresh(body: RefreshRequest, service: AuthServiceDep, response: Response) -> TokenResponse:
    """Exchange a refresh token for a new pair. Each refresh token works once; reusing one ends the session."""
    return _tokens(await service.refresh(body.refresh_token), response)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, dependencies=AUTH_LIMITED, responses={429: PROBLEM})
async def logout(body: LogoutRequest, service: AuthServiceDep) -> Response:
    """End the session of this refresh token (or all sessions of the account). Access tokens lapse on their own.

    Always 204: an unknown, expired or already revoked token ends nothing (logging out twice is fine). A token
    that was already rotated by a refresh counts as stolen and ends its own session family, as on refresh.
    """
    await service.logout(body.refresh_token, all_sessions=body.all_sessions)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/guest", dependencies=AUTH_LIMITED, responses={400: PROBLEM, 403: PROBLEM, 429: PROBLEM})
async def guest(
    service: AuthServiceDep, response: Response, body: Annotated[GuestRequest | None, Body()] = None
) -> GuestTokenResponse:
    """A short-lived guest token, so readers chat without an account (when `BOOKCHAT_ALLOW_ANONYMOUS=true`).

    Send the previous guest token to renew it and keep the same conversations.
    """
    issued = service.issue_guest(body.guest_token if body else None)
    response.headers["Cache-Control"] = "no-store"
    return GuestTokenResponse(
        access_token=issued.access_token, expires_in=issued.expires_in, principal_id=issued.principal_id
    )


@router.post("/claim", dependencies=AUTH_LIMITED, responses={400: PROBLEM, 401: PROBLEM, 403: PROBLEM})
async def claim(body: ClaimRequest, principal: UserDep, service: AuthServiceDep) -> ClaimResponse:
    """Move a guest's conversations to the signed-in account."""
    return ClaimResponse(claimed=await service.claim(principal, body.guest_token))


@router.get("/me", responses={401: PROBLEM})
async def me(principal: PrincipalDep, service: AuthServiceDep, profiles: ProfileServiceDep) -> MeResponse:
    """Who the bearer token belongs to: an account (with its background), a guest, or the admin service token."""
    user = await service.profile(principal)
    background = await profiles.background(principal) if user else None
    return MeResponse(
        principal_id=principal.id, role=principal.role, user=_user(user) if user else None, background=background
    )


@router.patch("/me", responses={401: PROBLEM, 403: PROBLEM, 422: PROBLEM})
async def update_me(
    body: ProfileUpdate, principal: UserDep, service: AuthServiceDep, profiles: ProfileServiceDep
) -> MeResponse:
    """Change the reader's background (`software`, `hardware`, `interests`, `language`); `null` removes it.

    Given fields replace the stored ones, the others are kept. Guests have no profile (403).
    """
    user = await service.profile(principal)
    background = await profiles.update(principal, body.background)
    return MeResponse(
        principal_id=principal.id, role=principal.role, user=_user(user) if user else None, background=background
    )
