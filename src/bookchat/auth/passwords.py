"""Password hashing (argon2id via pwdlib, off the event loop) and the password policy."""

from __future__ import annotations

import asyncio
import os
import re
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from importlib import resources

from pwdlib import PasswordHash
from pwdlib.exceptions import PwdlibError
from pwdlib.hashers.argon2 import Argon2Hasher

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 128
# OWASP's argon2id baseline (19 MiB, t=2, p=1): strong, yet a login costs ~50 ms of one core, not a second.
_HASHER = PasswordHash((Argon2Hasher(time_cost=2, memory_cost=19_456, parallelism=1),))
# Each hash holds 19 MiB: a dedicated, bounded pool caps memory and CPU under a login flood, and keeps the
# default executor (used by everything else) free.
_HASH_POOL = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="argon2")
# Words that, padded with digits or symbols ("Password123!"), still make a guessable password.
_BASE_WORDS = frozenset(
    {
        "password",
        "passw0rd",
        "p@ssw0rd",
        "p@ssword",
        "qwerty",
        "letmein",
        "welcome",
        "iloveyou",
        "admin",
        "administrator",
        "monkey",
        "dragon",
        "football",
        "baseball",
        "sunshine",
        "princess",
        "changeme",
        "secret",
        "bookchat",
        "abc",
        "abcdef",
        "qwertyuiop",
        "asdfghjkl",
        "zxcvbnm",
        "trustno1",
        "superman",
        "batman",
    }
)
_PADDING = re.compile(r"^[\d\W_]*(.*?)[\d\W_]*$")


class PasswordPolicyError(ValueError):
    """The password is refused; the message says why in words a user understands."""


@cache
def common_passwords() -> frozenset[str]:
    """The bundled list of common passwords (lower case)."""
    text = resources.files("bookchat.auth").joinpath("data/common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def check_password_policy(password: str, *, email: str | None = None) -> None:
    """Raise PasswordPolicyError when `password` is too short, too long, common or derived from the email."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordPolicyError(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordPolicyError(f"The password must have at most {MAX_PASSWORD_LENGTH} characters.")
    lowered = password.lower()
    core_match = _PADDING.match(lowered)
    core = core_match.group(1) if core_match else lowered
    if lowered in common_passwords() or core in _BASE_WORDS or core in common_passwords():
        raise PasswordPolicyError("This password is too common; choose a longer phrase of unrelated words.")
    if len(set(password)) < 5:
        raise PasswordPolicyError("The password repeats too few different characters.")
    if email:
        local = email.lower().partition("@")[0]
        if lowered == email.lower() or (len(local) >= 4 and local in lowered):
            raise PasswordPolicyError("The password must not contain your email address.")


async def hash_password(password: str) -> str:
    """argon2id hash of `password`, computed in a worker thread so the event loop keeps serving."""
    return await asyncio.get_running_loop().run_in_executor(_HASH_POOL, _HASHER.hash, password)


async def verify_password(password: str, password_hash: str) -> tuple[bool, str | None]:
    """(matches, new hash when the stored one used weaker parameters and should be replaced)."""
    return await asyncio.get_running_loop().run_in_executor(_HASH_POOL, _verify, password, password_hash)


def _verify(password: str, password_hash: str) -> tuple[bool, str | None]:
    try:
        return _HASHER.verify_and_update(password, password_hash)
    except (ValueError, PwdlibError):
        # A corrupt or foreign hash in the database must not turn a login into a 500.
        return False, None


@cache
def _dummy_hash() -> str:
    return _HASHER.hash("bookchat-dummy-password-for-timing")


async def verify_dummy(password: str) -> None:
    """Spend the same work as a real verification, so an unknown email answers as slowly as a known one."""
    dummy = await asyncio.get_running_loop().run_in_executor(_HASH_POOL, _dummy_hash)
    await verify_password(password, dummy)
