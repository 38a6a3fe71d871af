"""Access tokens: every way a token can be wrong is a 401, never a 500 and never a success."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import time
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bookchat.auth.dependencies import (
    AdminDep,
    OptionalPrincipalDep,
    Principal,
    PrincipalDep,
    UserDep,
    principal_from_token,
)
from bookchat.auth.tokens import TokenCodec, TokenError, ensure_jwt_secret, hash_refresh_token
from bookchat.config import Settings
from bookchat.edge.problems import install_problem_handlers
from bookchat.errors import Unauthorized

SECRET = "unit-test-secret-0123456789abcdef0123456789"
ADMIN_TOKEN = "unit-admin-token-0123456789abcdef"


def settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "jwt_secret": SECRET,
        "admin_token": ADMIN_TOKEN,
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def codec(tmp_path: Path) -> TokenCodec:
    return TokenCodec.from_settings(settings(tmp_path))


def user_subject() -> str:
    return f"user:{uuid.uuid4()}"


def claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    values: dict[str, object] = {
        "iss": "bookchat",
        "aud": "bookchat-api",
        "sub": user_subject(),
        "role": "user",
        "typ": "access",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    values.update(overrides)
    return {key: value for key, value in values.items() if value is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_round_trip(codec: TokenCodec) -> None:
    subject = user_subject()
    issued = codec.issue_access(subject, "admin")
    decoded = codec.decode_access(issued.token)
    assert decoded.subject == subject
    assert decoded.role == "admin"
    assert issued.expires_in == 900
    guest = codec.issue_access(f"guest:{uuid.uuid4()}", "guest")
    assert guest.expires_in == 3600


def test_expired_token_is_rejected(codec: TokenCodec) -> None:
    old = jwt.encode(claims(iat=1000, nbf=1000, exp=2000), SECRET, algorithm="HS256")
    with pytest.raises(TokenError):
        codec.decode_access(old)


def test_future_token_is_rejected(codec: TokenCodec) -> None:
    later = int(time.time()) + 3600
    token = jwt.encode(claims(nbf=later, iat=later, exp=later + 600), SECRET, algorithm="HS256")
    with pytest.raises(TokenError):
        codec.decode_access(token)


@pytest.mark.parametrize(
    "bad",
    [
        {"aud": "someone-else"},
        {"iss": "evil"},
        {"typ": "refresh"},
        {"role": "superuser"},
        {"role": "guest"},  # a user subject with a guest role
        {"sub": "user:not-a-uuid"},
        {"sub": "service:admin-token", "role": "admin"},
        {"jti": None},
        {"exp": None},
        {"nbf": None},
        {"iat": None},
        {"aud": None},
        {"exp": "tomorrow"},
    ],
)
def test_wrong_claims_are_rejected(codec: TokenCodec, bad: dict[str, object]) -> None:
    token = jwt.encode(claims(**bad), SECRET, algorithm="HS256")
    with pytest.raises(TokenError):
        codec.decode_access(token)


def test_tampered_payload_is_rejected(codec: TokenCodec) -> None:
    token = codec.issue_access(user_subject(), "user").token
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["role"] = "admin"
    forged = f"{header}.{b64(json.dumps(body).encode())}.{signature}"
    with pytest.raises(TokenError):
        codec.decode_access(forged)


def test_wrong_secret_is_rejected(codec: TokenCodec) -> None:
    token = jwt.encode(claims(), "another-secret-0123456789abcdef0123456789", algorithm="HS256")
    with pytest.raises(TokenError):
        codec.decode_access(token)


def test_alg_none_is_rejected(codec: TokenCodec) -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims(role="admin")).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        with pytest.raises(TokenError):
            codec.decode_access(token)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_hmac_algorithms_are_rejected(codec: TokenCodec, alg: str) -> None:
    with pytest.raises(TokenError):
        codec.decode_access(jwt.encode(claims(), SECRET, algorithm=alg))


@pytest.mark.parametrize("garbage", ["", "a", "a.b.c", "....", "eyJ.eyJ.sig", "x" * 9000, "é.ü.ß", "\x00\x01"])
def test_garbage_is_rejected(codec: TokenCodec, garbage: str) -> None:
    with pytest.raises(TokenError):
        codec.decode_access(garbage)


def rsa_pem(tmp_path: Path) -> tuple[Path, Path, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "private.pem").write_bytes(private)
    (tmp_path / "public.pem").write_bytes(public)
    return tmp_path / "private.pem", tmp_path / "public.pem", public


def test_rs256_round_trip_and_hs_rs_confusion(tmp_path: Path) -> None:
    private_path, public_path, public_pem = rsa_pem(tmp_path)
    rs = TokenCodec.from_settings(
        settings(tmp_path, jwt_algorithm="RS256", jwt_private_key_path=private_path, jwt_public_key_path=public_path)
    )
    token = rs.issue_access(user_subject(), "user").token
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert rs.decode_access(token).role == "user"

    # The classic confusion: sign HS256 with the (public!) RSA key as the HMAC secret.
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims(role="admin")).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = b64(hmac.new(public_pem, signing_input, hashlib.sha256).digest())
    with pytest.raises(TokenError):
        rs.decode_access(f"{header}.{payload}.{signature}")

    # And the other way round: an HS256 service must not accept RS256 tokens, however well signed.
    hs = TokenCodec.from_settings(settings(tmp_path))
    with pytest.raises(TokenError):
        hs.decode_access(token)


def test_rs256_inline_pem_and_mismatched_public_key(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    private_path, _, _ = rsa_pem(tmp_path / "a")
    _, other_public, _ = rsa_pem(tmp_path / "b")
    inline = TokenCodec.from_settings(
        settings(tmp_path, jwt_algorithm="RS256", jwt_private_key=private_path.read_text())
    )
    assert inline.decode_access(inline.issue_access(user_subject(), "user").token)
    with pytest.raises(ValueError, match="does not match"):
        TokenCodec.from_settings(
            settings(
                tmp_path, jwt_algorithm="RS256", jwt_private_key_path=private_path, jwt_public_key_path=other_public
            )
        )
    with pytest.raises(ValueError, match="RS256 needs"):
        TokenCodec.from_settings(settings(tmp_path, jwt_algorithm="RS256"))


def test_generated_secret_is_private_and_stable(tmp_path: Path) -> None:
    config = settings(tmp_path, jwt_secret=None)
    first = ensure_jwt_secret(config)
    path = tmp_path / "jwt_secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(first.get_secret_value()) >= 32
    assert ensure_jwt_secret(config).get_secret_value() == first.get_secret_value()
    # A token signed before a restart still verifies after it.
    token = TokenCodec.from_settings(config).issue_access(user_subject(), "user").token
    assert TokenCodec.from_settings(config).decode_access(token)


def test_short_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "jwt_secret").write_text("short\n")
    with pytest.raises(ValueError, match="32 bytes"):
        ensure_jwt_secret(settings(tmp_path, jwt_secret=None))


def test_refresh_hash_is_sha256_hex() -> None:
    assert len(hash_refresh_token("rt_abc")) == 64
    assert hash_refresh_token("rt_abc") != hash_refresh_token("rt_abd")


def test_principal_from_token(tmp_path: Path, codec: TokenCodec) -> None:
    config = settings(tmp_path)
    assert principal_from_token(ADMIN_TOKEN, codec, config) == Principal("service:admin-token", "admin")
    guest_id = uuid.uuid4()
    guest = principal_from_token(codec.issue_access(f"guest:{guest_id}", "guest").token, codec, config)
    assert guest == Principal(f"guest:{guest_id}", "guest")
    with pytest.raises(Unauthorized):
        principal_from_token(ADMIN_TOKEN + "x", codec, config)


def test_dependencies_over_http(tmp_path: Path, codec: TokenCodec) -> None:
    """401 without or with a bad token, 403 for the wrong role, through real FastAPI dependencies."""
    app = FastAPI()
    app.state.settings = settings(tmp_path)
    app.state.token_codec = codec
    install_problem_handlers(app)

    @app.get("/any")
    async def any_principal(principal: PrincipalDep) -> dict[str, str]:
        return {"id": principal.id}

    @app.get("/optional")
    async def optional(principal: OptionalPrincipalDep) -> dict[str, str | None]:
        return {"id": principal.id if principal else None}

    @app.get("/user")
    async def user_only(principal: UserDep) -> dict[str, str]:
        return {"id": principal.id}

    @app.get("/admin")
    async def admin_only(principal: AdminDep) -> dict[str, str]:
        return {"id": principal.id}

    user = codec.issue_access(user_subject(), "user").token
    admin = codec.issue_access(user_subject(), "admin").token
    guest = codec.issue_access(f"guest:{uuid.uuid4()}", "guest").token
    expired = jwt.encode(claims(iat=1000, nbf=1000, exp=2000), SECRET, algorithm="HS256")
    with TestClient(app) as http:

        def status(path: str, token: str | None) -> int:
            headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
            return http.get(path, headers=headers).status_code

        assert status("/any", None) == 401
        assert status("/any", expired) == 401
        assert status("/any", "garbage") == 401
        assert http.get("/any", headers={"Authorization": f"Basic {user}"}).status_code == 401
        assert status("/optional", None) == 200
        assert status("/optional", "garbage") == 401
        assert [status("/user", t) for t in (user, admin, guest, ADMIN_TOKEN)] == [200, 200, 403, 403]
        assert [status("/admin", t) for t in (None, user, guest, admin, ADMIN_TOKEN)] == [401, 403, 403, 200, 200]
        body = http.get("/any", headers={"Authorization": "Bearer garbage"}).json()
        assert body["status"] == 401
        assert "garbage" not in json.dumps(body)


def test_guest_claim_grace(codec: TokenCodec) -> None:
    lapsed = codec.issue_access(f"guest:{uuid.uuid4()}", "guest", ttl=-600).token
    with pytest.raises(TokenError):
        codec.decode_access(lapsed)
    assert codec.decode_guest_for_claim(lapsed, grace=3600).role == "guest"
    with pytest.raises(TokenError):
        codec.decode_guest_for_claim(lapsed, grace=60)
    with pytest.raises(TokenError, match="guest"):
        codec.decode_guest_for_claim(codec.issue_access(user_subject(), "user").token, grace=3600)
