"""SQL for accounts, refresh tokens and claiming a guest's conversations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

UserRole = str  # "user" | "admin" (the database CHECK constraint is the authority)


class EmailTaken(Exception):
    """An account with this email (compared case-insensitively) already exists."""


@dataclass(frozen=True)
class UserRecord:
    """A row of `users`."""

    id: UUID
    email: str
    password_hash: str
    display_name: str | None
    role: str
    disabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class RefreshTokenRecord:
    """A row of `refresh_tokens` (the token itself is never stored, only its SHA-256)."""

    id: UUID
    user_id: UUID
    family_id: UUID
    expires_at: datetime
    revoked_at: datetime | None
    replaced_by: UUID | None


@dataclass(frozen=True)
class ProfileRecord:
    """The profile columns of a `users` row (all None for a reader who gave no background)."""

    software: str | None
    hardware: str | None
    interests: str | None
    language: str | None


def _user(row: Any) -> UserRecord:
    return UserRecord(**dict(row))


async def create_user(
    conn: Any, *, email: str, password_hash: str, display_name: str | None, role: str = "user"
) -> UserRecord:
    """Insert an account; raise EmailTaken when the email is in use."""
    try:
        row = await conn.fetchrow(
            "INSERT INTO users (email, password_hash, display_name, role) VALUES ($1, $2, $3, $4)"
            " RETURNING id, email, password_hash, display_name, role, disabled, created_at, updated_at",
            email,
            password_hash,
            display_name,
            role,
        )
    except asyncpg.UniqueViolationError:
        raise EmailTaken(email) from None
    return _user(row)


async def get_user_by_email(conn: Any, email: str) -> UserRecord | None:
    row = await conn.fetchrow(
        "SELECT id, email, password_hash, display_name, role, disabled, created_at, updated_at"
        " FROM users WHERE lower(email) = lower($1)",
        email,
    )
    return _user(row) if row is not None else None


async def get_user_by_id(conn: Any, user_id: UUID) -> UserRecord | None:
    row = await conn.fetchrow(
        "SELECT id, email, password_hash, display_name, role, disabled, created_at, updated_at"
        " FROM users WHERE id = $1",
        user_id,
    )
    return _user(row) if row is not None else None


async def update_password_hash(conn: Any, user_id: UUID, password_hash: str) -> None:
    await conn.execute("UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1", user_id, password_hash)


async def set_role(conn: Any, email: str, role: str) -> UserRecord | None:
    row = await conn.fetchrow(
        "UPDATE users SET role = $2, updated_at = now() WHERE lower(email) = lower($1)"
        " RETURNING id, email, password_hash, display_name, role, disabled, created_at, updated_at",
        email,
        role,
    )
    return _user(row) if row is not None else None


async def set_disabled(conn: Any, email: str, disabled: bool) -> UserRecord | None:
    row = await conn.fetchrow(
        "UPDATE users SET disabled = $2, updated_at = now() WHERE lower(email) = lower($1)"
        " RETURNING id, email, password_hash, display_name, role, disabled, created_at, updated_at",
        email,
        disabled,
    )
    return _user(row) if row is not None else None


async def insert_refresh_token(
    conn: Any, *, user_id: UUID, family_id: UUID, token_hash: str, expires_at: datetime
) -> UUID:
    token_id: UUID = await conn.fetchval(
        "INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at) VALUES ($1, $2, $3, $4) RETURNING id",
        user_id,
        family_id,
        token_hash,
        expires_at,
    )
    return token_id


async def lock_refresh_token(conn: Any, token_hash: str) -> RefreshTokenRecord | None:
    """The token row, locked until the transaction ends, so two refreshes of one token serialise."""
    row = await conn.fetchrow(
        "SELECT id, user_id, family_id, expires_at, revoked_at, replaced_by FROM refresh_tokens"
        " WHERE token_hash = $1 FOR UPDATE",
        token_hash,
    )
    return RefreshTokenRecord(**dict(row)) if row is not None else None


async def mark_rotated(conn: Any, token_id: UUID, replaced_by: UUID) -> None:
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now(), replaced_by = $2 WHERE id = $1", token_id, replaced_by
    )


async def revoke_family(conn: Any, family_id: UUID) -> int:
    result: str = await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL", family_id
    )
    return int(result.split()[-1])


async def revoke_all_for_user(conn: Any, user_id: UUID) -> int:
    result: str = await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL", user_id
    )
    return int(result.split()[-1])


async def delete_expired_refresh_tokens(conn: Any, *, expired_before: datetime, limit: int) -> int:
    """Housekeeping: delete at most `limit` tokens that expired before `expired_before`, oldest first.

    Bounded, so it can run beside a login; SKIP LOCKED, so replicas purging at once neither wait for nor
    deadlock with each other (or with a refresh holding its token's row). Returns how many were deleted.
    """
    result: str = await conn.execute(
        "DELETE FROM refresh_tokens WHERE id IN (SELECT id FROM refresh_tokens WHERE expires_at < $1"
        " ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        expired_before,
        limit,
    )
    return int(result.split()[-1])


async def claim_guest_data(conn: Any, *, guest_principal: str, user_principal: str) -> int:
    """Move a guest's conversations (and their feedback) to a user; returns the number of conversations."""
    result: str = await conn.execute(
        "UPDATE conversations SET owner_id = $2 WHERE owner_id = $1", guest_principal, user_principal
    )
    # A user may already have rated a message the guest rated too; keep the user's rating then.
    await conn.execute(
        "UPDATE feedback AS f SET owner_id = $2 WHERE f.owner_id = $1 AND NOT EXISTS"
        " (SELECT 1 FROM feedback AS u WHERE u.message_id = f.message_id AND u.owner_id = $2)",
        guest_principal,
        user_principal,
    )
    await conn.execute("DELETE FROM feedback WHERE owner_id = $1", guest_principal)
    return int(result.split()[-1])


async def get_profile(conn: Any, user_id: UUID) -> ProfileRecord | None:
    """The profile columns of an enabled account; None when there is no such account."""
    row = await conn.fetchrow(
        "SELECT profile_software AS software, profile_hardware AS hardware, profile_interests AS interests,"
        " profile_language AS language FROM users WHERE id = $1 AND NOT disabled",
        user_id,
    )
    return ProfileRecord(**dict(row)) if row is not None else None


async def set_profile(conn: Any, user_id: UUID, profile: ProfileRecord) -> bool:
    """Store the profile columns; False when the account is gone or disabled."""
    result: str = await conn.execute(
        "UPDATE users SET profile_software = $2, profile_hardware = $3, profile_interests = $4,"
        " profile_language = $5, profile_updated_at = now(), updated_at = now() WHERE id = $1 AND NOT disabled",
        user_id,
        profile.software,
        profile.hardware,
        profile.interests,
        profile.language,
    )
    return result.split()[-1] == "1"
