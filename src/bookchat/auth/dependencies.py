"""Who is calling: the `Principal` and the FastAPI dependencies that authenticate bearer tokens."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Literal
from uuid import UUID

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from starlette.applications import Starlette

from bookchat.auth.tokens import TokenCodec, TokenError
from bookchat.config import Settings
from bookchat.errors import Forbidden, Unauthorized
from bookchat.runtime.dependencies import SettingsDep

Role = Literal["guest", "user", "admin"]
ADMIN_SERVICE_ID = "service:admin-token"

# auto_error=False: we raise our own problem+json 401; tokenUrl makes Swagger's *Authorize* button work.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `id` is what owns data: "user:<uuid>", "guest:<uuid>" or "service:admin-token"."""

    id: str
    role: Role
    user_id: UUID | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_service(self) -> bool:
        return self.id.startswith("service:")


ADMIN_SERVICE_PRINCIPAL = Principal(id=ADMIN_SERVICE_ID, role="admin", user_id=None)


def app_token_codec(app: Starlette) -> TokenCodec:
    """The app's TokenCodec: set by the lifespan (`app.state.token_codec`), else built once from settings."""
    codec: TokenCodec | None = getattr(app.state, "token_codec", None)
    if codec is None:
        settings: Settings = app.state.settings
        codec = TokenCodec.from_settings(settings)
        app.state.token_codec = codec
    return codec


async def get_token_codec(request: Request) -> TokenCodec:
    return app_token_codec(request.app)


TokenCodecDep = Annotated[TokenCodec, Depends(get_token_codec)]


def is_admin_token(token: str, settings: Settings) -> bool:
    """True when `token` is the static BOOKCHAT_ADMIN_TOKEN; constant time, so timing leaks nothing."""
    if settings.admin_token is None:
        return False
    expected = settings.admin_token.get_secret_value().encode("utf-8")
    return bool(expected) and hmac.compare_digest(token.encode("utf-8", "surrogatepass"), expected)


def principal_from_token(token: str, codec: TokenCodec, settings: Settings) -> Principal:
    """Authenticate a raw bearer value (JWT access token or the admin token); raise Unauthorized otherwise."""
    if is_admin_token(token, settings):
        return ADMIN_SERVICE_PRINCIPAL
    try:
        claims = codec.decode_access(token)
    except TokenError:
        # One message for every failure: the caller learns nothing about which check failed.
        raise Unauthorized("The access token is invalid or expired.", code="invalid-token") from None
    user_id = UUID(claims.subject.partition(":")[2]) if claims.role != "guest" else None
    return Principal(id=claims.subject, role=claims.role, user_id=user_id)


def _remember(request: Request, principal: Principal) -> Principal:
    # Rate limits and access logs read it from here without re-decoding the token.
    request.state.principal = principal
    return principal


async def optional_principal(
    request: Request,
    settings: SettingsDep,
    codec: TokenCodecDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Principal | None:
    """The caller, or None when no bearer token was sent; a bad token is still a 401, never silently anonymous."""
    if not token:
        return None
    return _remember(request, principal_from_token(token, codec, settings))


async def current_principal(
    request: Request,
    settings: SettingsDep,
    codec: TokenCodecDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Principal:
    """The authenticated caller (user, admin, guest or the admin service token); 401 problem otherwise."""
    if not token:
        raise Unauthorized("Authentication required: send `Authorization: Bearer <token>`.", code="missing-token")
    return _remember(request, principal_from_token(token, codec, settings))


async def require_user(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """A registered account (user or admin); guests and the service token get 403."""
    if principal.user_id is None:
        raise Forbidden("This needs a registered account.", code="account-required")
    return principal


async def require_admin(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """An admin: an admin-role access token or the static BOOKCHAT_ADMIN_TOKEN; 401 without credentials, else 403."""
    if not principal.is_admin:
        raise Forbidden("Administrator role required.", code="admin-required")
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
OptionalPrincipalDep = Annotated[Principal | None, Depends(optional_principal)]
UserDep = Annotated[Principal, Depends(require_user)]
AdminDep = Annotated[Principal, Depends(require_admin)]
