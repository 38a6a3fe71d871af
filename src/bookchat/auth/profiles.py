"""Reader profiles: the background a chapter is personalised for, stored on the account (guests have none)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from bookchat.auth import repository
from bookchat.auth.dependencies import Principal
from bookchat.auth.repository import ProfileRecord
from bookchat.auth.schemas import Background, BackgroundPatch
from bookchat.errors import Unauthorized, UnprocessableContent

_EMPTY = ProfileRecord(None, None, None, None)


def background_of(record: ProfileRecord | None) -> Background | None:
    """The stored columns as a `Background`, or None when the reader gave none (software and hardware unset)."""
    if record is None or record.software is None or record.hardware is None:
        return None
    return Background.model_validate(
        {
            "software": record.software,
            "hardware": record.hardware,
            "interests": record.interests,
            "language": record.language,
        }
    )


def _record(background: Background | None) -> ProfileRecord:
    if background is None:
        return _EMPTY
    # Language tags are case-insensitive (BCP 47 §2.1.1); stored lower-case so equal tags compare equal.
    interests = background.interests.strip() if background.interests else None
    language = background.language.lower() if background.language else None
    return ProfileRecord(background.software, background.hardware, interests or None, language)


class ProfileService:
    """Reads and changes the caller's background; routers and the pages service use it."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def background(self, principal: Principal) -> Background | None:
        """The caller's background; None for guests, the service token and readers who gave none."""
        if principal.user_id is None:
            return None
        async with self.pool.acquire() as conn:
            record = await repository.get_profile(conn, principal.user_id)
        return background_of(record)

    async def save(self, user_id: UUID, background: Background | None) -> Background | None:
        """Replace the background of an account (None removes it); 401 when the account is gone."""
        async with self.pool.acquire() as conn:
            stored = await repository.set_profile(conn, user_id, _record(background))
        if not stored:
            raise Unauthorized("The account no longer exists or is disabled.", code="invalid-token")
        return background_of(_record(background))

    async def update(self, principal: Principal, patch: BackgroundPatch | None) -> Background | None:
        """Merge `patch` into the stored background (None deletes it); 422 when software or hardware is missing."""
        if principal.user_id is None:
            raise UnprocessableContent("Only a registered account has a profile.", code="account-required")
        if patch is None:
            return await self.save(principal.user_id, None)
        async with self.pool.acquire() as conn, conn.transaction():
            current = await repository.get_profile(conn, principal.user_id)
            if current is None:
                raise Unauthorized("The account no longer exists or is disabled.", code="invalid-token")
            given = patch.model_dump(exclude_unset=True)
            merged = {
                "software": current.software,
                "hardware": current.hardware,
                "interests": current.interests,
                "language": current.language,
                **given,
            }
            if merged["software"] is None or merged["hardware"] is None:
                raise UnprocessableContent(
                    "A background needs both `software` and `hardware`.", code="incomplete-background"
                )
            background = Background.model_validate(merged)
            await repository.set_profile(conn, principal.user_id, _record(background))
        return background_of(_record(background))
