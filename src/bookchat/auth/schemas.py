"""Request and response bodies of /api/auth."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from bookchat.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from bookchat.text import StorableStr

TOKEN_PATTERN = r"^[A-Za-z0-9._~+/=-]+$"  # noqa: S105 - a regex, not a secret


TokenStr = Annotated[str, Field(min_length=16, max_length=4096, pattern=TOKEN_PATTERN)]
# A BCP-47 language tag as readers and browsers write them: "ur", "ur-PK", "zh-Hant", "pt-BR".
LANGUAGE_TAG_PATTERN = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$"
LanguageTag = Annotated[str, Field(min_length=2, max_length=35, pattern=LANGUAGE_TAG_PATTERN, examples=["ur"])]
SoftwareLevel = Literal["none", "beginner", "intermediate", "advanced"]
HardwareLevel = Literal["none", "hobbyist", "professional"]
MAX_INTERESTS_CHARS = 300


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Background(_Body):
    """A reader's background: what chapters are personalised for. Asked at sign-up, changed any time."""

    software: SoftwareLevel = Field(description="Programming experience.", examples=["beginner"])
    hardware: HardwareLevel = Field(description="Experience with electronics and robots.", examples=["hobbyist"])
    interests: Annotated[
        StorableStr | None,
        Field(max_length=MAX_INTERESTS_CHARS, description="What the reader wants to do with the book.",
              examples=["building a small rover with a Raspberry Pi"]),
    ] = None  # fmt: skip
    language: Annotated[LanguageTag | None, Field(description="Preferred language for translations.")] = None


class BackgroundPatch(_Body):
    """Fields of the background to change; the others keep their stored values."""

    software: SoftwareLevel | None = Field(None, examples=["advanced"])
    hardware: HardwareLevel | None = Field(None, examples=["professional"])
    interests: Annotated[StorableStr | None, Field(max_length=MAX_INTERESTS_CHARS, examples=["drones"])] = None
    language: LanguageTag | None = None


class ProfileUpdate(_Body):
    """`PATCH /api/auth/me`: change the background (`null` removes it)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"background": {"software": "beginner", "hardware": "none"}}]}
    )

    background: BackgroundPatch | None = Field(
        description="Fields to change, merged into the stored background; `null` deletes the background."
    )


class RegisterRequest(_Body):
    """A new account. The email is compared case-insensitively; the password is checked against common ones."""

    email: Annotated[EmailStr, Field(max_length=320, examples=["reader@example.org"])]
    password: Annotated[
        StorableStr,
        Field(
            min_length=MIN_PASSWORD_LENGTH,
            max_length=MAX_PASSWORD_LENGTH,
            examples=["plum-ferry-quartz-lantern"],
            description=f"{MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters, not a common password.",
        ),
    ]
    display_name: Annotated[StorableStr | None, Field(min_length=1, max_length=100, examples=["Ada"])] = None
    guest_token: Annotated[
        TokenStr | None, Field(description="A guest access token whose conversations the new account keeps.")
    ] = None
    background: Background | None = Field(None, description="The reader's background, for personalised chapters.")


class LoginRequest(_Body):
    """Email and password; optionally a guest token whose conversations move to this account."""

    email: Annotated[StorableStr, Field(min_length=3, max_length=320, examples=["reader@example.org"])]
    password: Annotated[StorableStr, Field(min_length=1, max_length=1024, examples=["plum-ferry-quartz-lantern"])]
    guest_token: Annotated[TokenStr | None, Field(description="Claim this guest's conversations.")] = None


class RefreshRequest(_Body):
    """A refresh token; it is single-use and is replaced by the one in the response."""

    refresh_token: Annotated[str, Field(min_length=16, max_length=512, pattern=TOKEN_PATTERN, examples=["rt_…"])]


class LogoutRequest(_Body):
    """The session to end (its refresh token), or every session of that account."""

    refresh_token: Annotated[str, Field(min_length=16, max_length=512, pattern=TOKEN_PATTERN, examples=["rt_…"])]
    all_sessions: bool = Field(False, description="Revoke every refresh token of the account.")


class GuestRequest(_Body):
    """Optionally the previous guest token (even if expired, within the renewal window) to stay the same guest."""

    guest_token: Annotated[TokenStr | None, Field(description="Renew this guest instead of starting a new one.")] = None


class ClaimRequest(_Body):
    """A guest token whose conversations move to the signed-in account."""

    guest_token: TokenStr


class TokenResponse(BaseModel):
    """An access token (send as `Authorization: Bearer …`) and the refresh token that renews it."""

    access_token: str = Field(examples=["eyJhbGciOiJIUzI1NiIs…"])
    refresh_token: str = Field(examples=["rt_Q2hhbmdlIG1l…"])
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int = Field(description="Seconds the access token is valid.", examples=[900])
    refresh_expires_in: int = Field(description="Seconds the refresh token is valid.", examples=[2_592_000])


class GuestTokenResponse(BaseModel):
    """A short-lived guest access token; no refresh token (renew with POST /api/auth/guest)."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int = Field(examples=[3600])
    principal_id: str = Field(examples=["guest:9f1c2a52-7d0e-4d0b-9a53-3cbb3f6f1d2e"])


class ClaimResponse(BaseModel):
    """How many conversations moved to the account."""

    claimed: int = Field(ge=0, examples=[2])


class UserOut(BaseModel):
    """An account as its owner sees it."""

    id: UUID
    email: str = Field(examples=["reader@example.org"])
    display_name: str | None = Field(examples=["Ada"])
    role: Literal["user", "admin"]
    created_at: datetime


class MeResponse(BaseModel):
    """The caller: an account, a guest, or the admin service token."""

    principal_id: str = Field(examples=["user:0b6f7a3e-52b8-4c8e-9a1f-3f7e1b2c4d5e"])
    role: Literal["guest", "user", "admin"]
    user: UserOut | None = None
    background: Background | None = Field(None, description="The reader's background; guests have none.")
