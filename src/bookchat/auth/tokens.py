"""JWT access tokens (PyJWT, algorithm pinned), opaque refresh tokens, and the start-up signing secret."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import jwt
from pydantic import SecretStr

from bookchat.config import Settings

log = logging.getLogger(__name__)

Role = Literal["guest", "user", "admin"]
ROLES: frozenset[str] = frozenset({"guest", "user", "admin"})
ACCESS_TYPE = "access"
REQUIRED_CLAIMS = ("exp", "iat", "nbf", "iss", "aud", "sub", "jti", "role", "typ")
SECRET_FILE_NAME = "jwt_secret"  # noqa: S105 - a file name
DEFAULT_ISSUER = "bookchat"
DEFAULT_AUDIENCE = "bookchat-api"


class TokenError(Exception):
    """A token that must not be trusted: malformed, expired, wrongly signed or with unexpected claims."""


class TokenExpired(TokenError):
    """A token that is genuine (signature and claims check out) but expired, beyond any grace allowed."""


@dataclass(frozen=True)
class AccessClaims:
    """The verified content of an access token."""

    subject: str
    role: Role
    jti: str
    expires_at: int
    issued_at: int


@dataclass(frozen=True)
class IssuedToken:
    """A freshly signed access token and its lifetime in seconds."""

    token: str
    expires_in: int
    jti: str


def _read_secret_file(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return text or None


def ensure_jwt_secret(settings: Settings) -> SecretStr:
    """The HS256 secret: BOOKCHAT_JWT_SECRET, else DATA_DIR/jwt_secret, generated (0600) on first start."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret
    path = Path(settings.data_dir) / SECRET_FILE_NAME
    existing = _read_secret_file(path)
    if existing is not None:
        if len(existing.encode()) < 32:
            raise ValueError(f"{path} holds fewer than 32 bytes; delete it to have a new secret generated")
        return SecretStr(existing)
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # O_EXCL: two workers starting together must not overwrite each other's secret (the loser reads the winner's).
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raced = _read_secret_file(path)
        if raced is None:
            raise ValueError(f"{path} exists but is empty; delete it") from None
        return SecretStr(raced)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret + "\n")
    log.warning(
        "no BOOKCHAT_JWT_SECRET set: generated a signing secret into %s (mode 0600); "
        "set BOOKCHAT_JWT_SECRET on every replica in production",
        path,
    )
    return SecretStr(secret)


def hash_refresh_token(token: str) -> str:
    """SHA-256 hex of a refresh token; only this is stored, so a database leak yields no usable tokens."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_refresh_token() -> str:
    """An opaque, unguessable refresh token (256 bits)."""
    return "rt_" + secrets.token_urlsafe(32)


class TokenCodec:
    """Signs and verifies access tokens with one pinned algorithm; nothing in a token chooses how it is checked."""

    def __init__(
        self,
        *,
        algorithm: Literal["HS256", "RS256"],
        signing_key: Any,
        verifying_key: Any,
        issuer: str = DEFAULT_ISSUER,
        audience: str = DEFAULT_AUDIENCE,
        access_ttl: int = 900,
        guest_ttl: int = 86_400,
        leeway: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.algorithm = algorithm
        self._signing_key = signing_key
        self._verifying_key = verifying_key
        self.issuer = issuer
        self.audience = audience
        self.access_ttl = access_ttl
        self.guest_ttl = guest_ttl
        self.leeway = leeway
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, *, secret: SecretStr | None = None) -> TokenCodec:
        """Build the codec settings describe; HS256 uses `secret` (or ensure_jwt_secret), RS256 the PEM key files."""
        algorithm = cast(Literal["HS256", "RS256"], getattr(settings, "jwt_algorithm", "HS256"))
        common: dict[str, Any] = {
            "issuer": getattr(settings, "jwt_issuer", DEFAULT_ISSUER),
            "audience": getattr(settings, "jwt_audience", DEFAULT_AUDIENCE),
            "access_ttl": int(getattr(settings, "access_token_ttl", 900)),
            "guest_ttl": int(getattr(settings, "guest_token_ttl", 86_400)),
        }
        if algorithm == "RS256":
            signing, verifying = _load_rsa_keys(settings)
            return cls(algorithm="RS256", signing_key=signing, verifying_key=verifying, **common)
        key = (secret or ensure_jwt_secret(settings)).get_secret_value()
        return cls(algorithm="HS256", signing_key=key, verifying_key=key, **common)

    def issue_access(self, subject: str, role: Role, *, ttl: int | None = None) -> IssuedToken:
        """Sign an access token for principal `subject` ("user:<uuid>" / "guest:<uuid>") with `role`."""
        lifetime = ttl if ttl is not None else (self.guest_ttl if role == "guest" else self.access_ttl)
        now = int(self._clock())
        jti = uuid.uuid4().hex
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "role": role,
            "typ": ACCESS_TYPE,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": jti,
        }
        token = jwt.encode(claims, self._signing_key, algorithm=self.algorithm, headers={"typ": "JWT"})
        return IssuedToken(token=token, expires_in=lifetime, jti=jti)

    def decode_access(self, token: str) -> AccessClaims:
        """Verify signature, algorithm, expiry, issuer, audience and our own claims; raise TokenError otherwise."""
        return self._decode(token, expiry_grace=0)

    def decode_guest_for_claim(self, token: str, *, grace: int) -> AccessClaims:
        """A guest token, valid or expired at most `grace` seconds ago: a reader who signs up late keeps history."""
        claims = self._decode(token, expiry_grace=grace)
        if claims.role != "guest":
            raise TokenError("not a guest token")
        return claims

    def _decode(self, token: str, *, expiry_grace: int) -> AccessClaims:
        if not token or len(token) > 8192:
            raise TokenError("token missing or too long")
        try:
            header = jwt.get_unverified_header(token)
            # Refuse early and explicitly: `alg` in the token never selects the verification method.
            if header.get("alg") != self.algorithm:
                raise TokenError("unexpected signing algorithm")
            claims = jwt.decode(
                token,
                self._verifying_key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                # Expiry is checked below, so a grace period can apply to it alone (not to nbf / iat).
                options={"require": list(REQUIRED_CLAIMS), "verify_signature": True, "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(type(exc).__name__) from None
        except (ValueError, TypeError) as exc:  # malformed keys/segments PyJWT does not wrap
            raise TokenError(type(exc).__name__) from None
        result = _validated_claims(claims)
        if result.expires_at + self.leeway + expiry_grace <= self._clock():
            raise TokenExpired("ExpiredSignatureError")
        return result


def _validated_claims(claims: dict[str, Any]) -> AccessClaims:
    if claims.get("typ") != ACCESS_TYPE:
        raise TokenError("not an access token")
    role = claims.get("role")
    subject = claims.get("sub")
    if role not in ROLES or not isinstance(subject, str):
        raise TokenError("bad role or subject")
    kind, _, raw_id = subject.partition(":")
    expected_kind = "guest" if role == "guest" else "user"
    if kind != expected_kind:
        raise TokenError("subject does not match role")
    try:
        uuid.UUID(raw_id)
    except ValueError:
        raise TokenError("bad subject id") from None
    jti, exp, iat = claims.get("jti"), claims.get("exp"), claims.get("iat")
    if not isinstance(jti, str) or not isinstance(exp, int) or not isinstance(iat, int):
        raise TokenError("bad claim types")
    return AccessClaims(subject=subject, role=cast(Role, role), jti=jti, expires_at=exp, issued_at=iat)


def _load_rsa_keys(settings: Settings) -> tuple[Any, Any]:
    """Load the RS256 key pair from files or PEM settings; fail at start-up, not on the first request."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private_pem = _pem(settings, "jwt_private_key")
    public_pem = _pem(settings, "jwt_public_key")
    if private_pem is None:
        raise ValueError(
            "BOOKCHAT_JWT_ALGORITHM=RS256 needs BOOKCHAT_JWT_PRIVATE_KEY_PATH (or BOOKCHAT_JWT_PRIVATE_KEY)"
        )
    private_key = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(private_key, rsa.RSAPrivateKey) or private_key.key_size < 2048:
        raise ValueError("the JWT private key must be an RSA key of 2048 bits or more")
    public_key: Any = private_key.public_key()
    if public_pem is not None:
        loaded = serialization.load_pem_public_key(public_pem)
        if not isinstance(loaded, rsa.RSAPublicKey):
            raise ValueError("the JWT public key must be an RSA key")
        if loaded.public_numbers() != private_key.public_key().public_numbers():
            raise ValueError("the JWT public key does not match the private key")
        public_key = loaded
    return private_key, public_key


def _pem(settings: Settings, name: str) -> bytes | None:
    inline = getattr(settings, name, None)
    if isinstance(inline, SecretStr) and inline.get_secret_value().strip():
        return inline.get_secret_value().encode()
    path = getattr(settings, f"{name}_path", None)
    if path is not None:
        return Path(path).read_bytes()
    return None
