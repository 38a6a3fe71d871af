"""Accounts and sessions: register, login, refresh rotation with reuse detection, guests, claims, roles."""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol
from uuid import UUID

from bookchat.auth import repository
from bookchat.auth.dependencies import Principal
from bookchat.auth.passwords import (
    PasswordPolicyError,
    check_password_policy,
    hash_password,
    verify_dummy,
    verify_password,
)
from bookchat.auth.repository import EmailTaken, UserRecord
from bookchat.auth.tokens import TokenCodec, TokenError, TokenExpired, hash_refresh_token, new_refresh_token
from bookchat.config import Settings
from bookchat.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized, UnprocessableContent

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = "The email or password is incorrect."
# Expired refresh tokens deleted beside each login and refresh: more than either creates (one row), so a
# backlog shrinks, yet bounded, so a sign-in never waits on a big purge.
PURGE_BATCH = 100


LoginRule = Literal["login_pair", "login_account"]


class LoginThrottle(Protocol):
    """The login budgets (bookchat.runtime.rate_limiter.RateLimiter provides them); see `AuthService.login`."""

    async def count(self, rule: LoginRule, *identifiers: str) -> int: ...

    async def hit(self, rule: LoginRule, *identifiers: str) -> object: ...

    async def spend(self, rule: LoginRule, *identifiers: str) -> None: ...

    async def clear(self, rule: LoginRule, *identifiers: str) -> None: ...


@dataclass(frozen=True)
class _LoginAttempt:
    account: str
    address: str
    # An address that had failed before is charged to the account budget up front, not after its failure.
    charged_to_account: bool


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int


@dataclass(frozen=True)
class GuestToken:
    access_token: str
    expires_in: int
    principal_id: str


def account_key(email: str) -> str:
    """A digest of the email for limiter keys: Redis is no place for personal data."""
    return hashlib.sha256(email.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def normalize_email(email: str) -> str:
    """Emails are stored and compared in lower case (the unique index is on lower(email) as well)."""
    return email.strip().lower()


def _plausible_email(email: str) -> bool:
    # Garbage never reaches SQL (NUL bytes, lone surrogates or huge strings would make the driver fail).
    if not email or len(email) > 320 or "\x00" in email or "@" not in email:
        return False
    try:
        email.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _principal_id(user_id: UUID) -> str:
    return f"user:{user_id}"


class AuthService:
    """The account logic; routers call it, the CLI too (with `limiter=None`)."""

    def __init__(self, pool: Any, codec: TokenCodec, settings: Settings, limiter: LoginThrottle | None = None) -> None:
        self.pool = pool
        self.codec = codec
        self.settings = settings
        self.limiter = limiter

    # --- accounts -------------------------------------------------------------------------------------------

    async def register(
        self, email: str, password: str, display_name: str | None = None, *, guest_token: str | None = None
    ) -> UserRecord:
        """Create a user account (role user); optionally move a guest's conversations to it."""
        if not self.settings.allow_registration:
            raise Forbidden("Registration is closed on this server.", code="registration-disabled")
        guest = self._guest_for_claim(guest_token) if guest_token else None
        user = await self.create_user(email, password, display_name=display_name, role="user")
        if guest is not None:
            await self._claim(guest, user)
        return user

    async def create_user(
        self, email: str, password: str, *, display_name: str | None = None, role: str = "user"
    ) -> UserRecord:
        """Validate and insert an account (also `bookchat users create`); 409 when the email is taken."""
        email = normalize_email(email)
        if not _plausible_email(email):
            raise UnprocessableContent("The email address is not valid.", code="invalid-email")
        if role not in ("user", "admin"):
            raise UnprocessableContent("The role must be user or admin.", code="invalid-role")
        try:
            check_password_policy(password, email=email)
        except PasswordPolicyError as exc:
            raise UnprocessableContent(str(exc), code="weak-password") from None
        password_hash = await hash_password(password)
        try:
            async with self.pool.acquire() as conn:
                return await repository.create_user(
                    conn, email=email, password_hash=password_hash, display_name=display_name, role=role
                )
        except EmailTaken:
            # Registration necessarily reveals that an email has an account; the limiter caps how fast.
            raise Conflict("An account with this email already exists.", code="email-taken") from None

    async def set_role(self, email: str, role: str) -> UserRecord:
        """Make an account a user or an admin (`bookchat users set-role`)."""
        if role not in ("user", "admin"):
            raise UnprocessableContent("The role must be user or admin.", code="invalid-role")
        async with self.pool.acquire() as conn:
            user = await repository.set_role(conn, normalize_email(email), role)
        if user is None:
            raise NotFound(f"No account with email {email}.")
        return user

    async def set_disabled(self, email: str, disabled: bool) -> UserRecord:
        """Disable (or re-enable) an account; disabling also ends all its sessions."""
        async with self.pool.acquire() as conn, conn.transaction():
            user = await repository.set_disabled(conn, normalize_email(email), disabled)
            if user is None:
                raise NotFound(f"No account with email {email}.")
            if disabled:
                await repository.revoke_all_for_user(conn, user.id)
        return user

    # --- sessions -------------------------------------------------------------------------------------------

    async def login(
        self, email: str, password: str, *, guest_token: str | None = None, client_address: str = "unknown"
    ) -> TokenPair:
        """Check the password (same work whether or not the account exists) and start a session.

        `client_address` is the caller's rate-limit address (`auth.rate_limits.client_address`); the login
        budgets are charged before the password is checked (see `_begin_login`).
        """
        email = normalize_email(email)
        guest = None
        if guest_token:
            guest = self._guest_for_claim(guest_token)
        attempt = await self._begin_login(account_key(email), client_address)
        user: UserRecord | None = None
        if _plausible_email(email):
            async with self.pool.acquire() as conn:
                user = await repository.get_user_by_email(conn, email)
        if user is None:
            await verify_dummy(password)
            await self._failed_login(attempt)
            raise Unauthorized(INVALID_CREDENTIALS, code="invalid-credentials")
        ok, new_hash = await verify_password(password, user.password_hash)
        if not ok or user.disabled:
            await self._failed_login(attempt)
            raise Unauthorized(INVALID_CREDENTIALS, code="invalid-credentials")
        if self.limiter is not None:
            # The refund: the right password forgives this address its failures for the account.
            await self.limiter.clear("login_pair", attempt.account, attempt.address)
        async with self.pool.acquire() as conn:
            if new_hash is not None:
                await repository.update_password_hash(conn, user.id, new_hash)
        if guest is not None:
            await self._claim(guest, user)
        return await self._start_session(user)

    async def _begin_login(self, account: str, address: str) -> _LoginAttempt:
        """Charge a login attempt before the password is looked at; 429 (and no hashing) when over a budget.

        * `login_pair`, per (account, address): one hit up front, atomic in the storage, so concurrent guesses
          cannot all slip past a budget that used to be spent only after the hash. A successful login clears it.
        * `login_account`, per account over all addresses: its failures. It refuses only an address with a
          pair record (a failure in the pair's windows, or an attempt still in flight), whose attempt it counts
          up front. An address with a clean record, the owner's, is never refused by it: its attempt is
          counted after it fails. Once the budget is spent, a guesser spread over many addresses gets one
          guess per address until that address's pair record expires (the pair rule's longest window).
        """
        if self.limiter is None:
            return _LoginAttempt(account, address, charged_to_account=False)
        failed_before = await self.limiter.count("login_pair", account, address) > 0
        if failed_before:
            # Before the pair hit: a refusal here leaves no entry that would keep the address on record longer.
            await self.limiter.hit("login_account", account)
        await self.limiter.hit("login_pair", account, address)
        return _LoginAttempt(account, address, charged_to_account=failed_before)

    async def _failed_login(self, attempt: _LoginAttempt) -> None:
        if self.limiter is not None and not attempt.charged_to_account:
            await self.limiter.spend("login_account", attempt.account)

    async def _start_session(self, user: UserRecord, *, family_id: UUID | None = None) -> TokenPair:
        refresh = new_refresh_token()
        ttl = self.settings.refresh_token_ttl
        async with self.pool.acquire() as conn:
            await repository.insert_refresh_token(
                conn,
                user_id=user.id,
                family_id=family_id or uuid.uuid4(),
                token_hash=hash_refresh_token(refresh),
                expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
            )
            await self._purge_expired_refresh_tokens(conn)
        access = self.codec.issue_access(_principal_id(user.id), "admin" if user.role == "admin" else "user")
        return TokenPair(access.token, refresh, access.expires_in, ttl)

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate: the presented token is spent and a new pair issued in the same family.

        Presenting a token that was already rotated means it was copied: the whole family (every token
        descended from that login) is revoked, so both the thief and the owner must sign in again.
        """
        token_hash = hash_refresh_token(refresh_token)
        new_refresh = new_refresh_token()
        ttl = self.settings.refresh_token_ttl
        reused = False
        user: UserRecord | None = None
        async with self.pool.acquire() as conn, conn.transaction():
            record = await repository.lock_refresh_token(conn, token_hash)
            if record is None:
                raise Unauthorized("The refresh token is invalid.", code="invalid-refresh-token")
            if record.revoked_at is not None:
                if record.replaced_by is not None:
                    reused = True
                    await repository.revoke_family(conn, record.family_id)
            elif record.expires_at <= datetime.now(UTC):
                raise Unauthorized("The refresh token has expired.", code="invalid-refresh-token")
            else:
                user = await repository.get_user_by_id(conn, record.user_id)
                if user is None or user.disabled:
                    await repository.revoke_family(conn, record.family_id)
                else:
                    new_id = await repository.insert_refresh_token(
                        conn,
                        user_id=user.id,
                        family_id=record.family_id,
                        token_hash=hash_refresh_token(new_refresh),
                        expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
                    )
                    await repository.mark_rotated(conn, record.id, new_id)
        if user is not None and not user.disabled:
            async with self.pool.acquire() as conn:
                await self._purge_expired_refresh_tokens(conn)
        if reused:
            log.warning("refresh token reused: session family revoked", extra={"user_id": str(record.user_id)})
            raise Unauthorized("The refresh token was already used; sign in again.", code="refresh-token-reused")
        if user is None or user.disabled:
            raise Unauthorized("The refresh token is invalid.", code="invalid-refresh-token")
        access = self.codec.issue_access(_principal_id(user.id), "admin" if user.role == "admin" else "user")
        return TokenPair(access.token, new_refresh, access.expires_in, ttl)

    async def logout(self, refresh_token: str, *, all_sessions: bool = False) -> None:
        """End the session of a current refresh token (or, with `all_sessions`, every session of its account).

        Only a current token ends anything: an unknown, expired or revoked one revokes nothing (the router
        answers 204 all the same, logout is idempotent), so a stale token cannot sign anyone out. A *rotated*
        token is the exception, as on refresh: it was copied, so its family is revoked (never all sessions).
        """
        async with self.pool.acquire() as conn, conn.transaction():
            record = await repository.lock_refresh_token(conn, hash_refresh_token(refresh_token))
            if record is None:
                return
            current = record.revoked_at is None and record.expires_at > datetime.now(UTC)
            reused = record.revoked_at is not None and record.replaced_by is not None
            if current and all_sessions:
                await repository.revoke_all_for_user(conn, record.user_id)
            elif current or reused:
                await repository.revoke_family(conn, record.family_id)
        if reused:
            log.warning("refresh token reused at logout: family revoked", extra={"user_id": str(record.user_id)})

    async def _purge_expired_refresh_tokens(self, conn: Any) -> None:
        """Delete up to PURGE_BATCH tokens expired more than REFRESH_TOKEN_RETENTION ago; never fails the caller."""
        cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.refresh_token_retention)
        try:
            deleted = await repository.delete_expired_refresh_tokens(conn, expired_before=cutoff, limit=PURGE_BATCH)
        except Exception as exc:  # housekeeping: the next login tries again
            log.warning("expired refresh tokens not purged: %s", type(exc).__name__)
        else:
            log.debug("expired refresh tokens purged", extra={"count": deleted})

    # --- guests ---------------------------------------------------------------------------------------------

    def issue_guest(self, previous_token: str | None = None) -> GuestToken:
        """A guest token; a previous one (expired at most GUEST_RENEWAL_GRACE ago) renews the same guest.

        One expired longer ago gets a new guest (the old identity is not carried over); a forged one is a 400.
        """
        if not self.settings.allow_anonymous:
            raise Forbidden("Anonymous access is turned off; sign in.", code="anonymous-disabled")
        subject = f"guest:{uuid.uuid4()}"
        if previous_token:
            try:
                claims = self.codec.decode_guest_for_claim(previous_token, grace=self.settings.guest_renewal_grace)
            except TokenExpired:
                log.info("guest token expired beyond the renewal grace: a new guest starts")
            except TokenError:
                raise BadRequest("The guest token is invalid.", code="invalid-guest-token") from None
            else:
                subject = claims.subject
        issued = self.codec.issue_access(subject, "guest")
        return GuestToken(issued.token, issued.expires_in, subject)

    def _guest_for_claim(self, token: str) -> Principal:
        # A guest keeps their history for as long as a refresh token would have kept a user signed in.
        try:
            claims = self.codec.decode_guest_for_claim(token, grace=self.settings.refresh_token_ttl)
        except TokenError:
            raise BadRequest("The guest token is invalid.", code="invalid-guest-token") from None
        return Principal(id=claims.subject, role="guest")

    async def claim(self, principal: Principal, guest_token: str) -> int:
        """Move the guest's conversations to the signed-in account; returns how many moved."""
        if principal.user_id is None:
            raise Forbidden("Claiming needs a registered account.", code="account-required")
        guest = self._guest_for_claim(guest_token)
        async with self.pool.acquire() as conn, conn.transaction():
            return await repository.claim_guest_data(
                conn, guest_principal=guest.id, user_principal=_principal_id(principal.user_id)
            )

    async def _claim(self, guest: Principal, user: UserRecord) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            moved = await repository.claim_guest_data(
                conn, guest_principal=guest.id, user_principal=_principal_id(user.id)
            )
        if moved:
            log.info("guest conversations claimed", extra={"count": moved})
        return moved

    async def profile(self, principal: Principal) -> UserRecord | None:
        """The caller's account, or None for guests and the service token; 401 if the account is gone."""
        if principal.user_id is None:
            return None
        async with self.pool.acquire() as conn:
            user = await repository.get_user_by_id(conn, principal.user_id)
        if user is None or user.disabled:
            raise Unauthorized("The account no longer exists or is disabled.", code="invalid-token")
        return user


# --- for the CLI (`bookchat users ...`): the lead opens a Database and passes its pool --------------------------


async def cli_create_user(
    pool: Any, settings: Settings, *, email: str, password: str, admin: bool = False, display_name: str | None = None
) -> UserRecord:
    """`bookchat users create --email --password [--admin]`; raises BookchatError subclasses with a message."""
    service = AuthService(pool, _NoTokens(), settings)
    return await service.create_user(email, password, display_name=display_name, role="admin" if admin else "user")


async def cli_set_role(pool: Any, settings: Settings, *, email: str, role: str) -> UserRecord:
    """`bookchat users set-role --email --role user|admin`."""
    return await AuthService(pool, _NoTokens(), settings).set_role(email, role)


async def cli_set_disabled(pool: Any, settings: Settings, *, email: str, disabled: bool) -> UserRecord:
    """`bookchat users disable/enable --email` (disabling also revokes every session)."""
    return await AuthService(pool, _NoTokens(), settings).set_disabled(email, disabled)


class _NoTokens(TokenCodec):
    """The CLI issues no tokens, so it needs no signing key (and must not generate a secret file)."""

    def __init__(self) -> None:
        super().__init__(algorithm="HS256", signing_key=None, verifying_key=None)
