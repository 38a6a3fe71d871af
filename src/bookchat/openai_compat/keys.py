"""API keys of `/v1` clients: held only as SHA-256 digests and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Sequence
from functools import lru_cache

from bookchat.auth.dependencies import Principal

log = logging.getLogger(__name__)

HASHED_PREFIX = "sha256:"
PRINCIPAL_PREFIX = "apikey:"


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def hash_api_key(key: str) -> str:
    """The form to put in BOOKCHAT_API_KEYS instead of the key itself: `sha256:<hex>`."""
    return HASHED_PREFIX + digest(key).hex()


@lru_cache(maxsize=8)
def key_digests(entries: tuple[str, ...]) -> tuple[bytes, ...]:
    """BOOKCHAT_API_KEYS as digests: `sha256:<hex>` entries as given, plain keys hashed (then forgotten)."""
    digests: list[bytes] = []
    for position, entry in enumerate(entries, 1):
        value = entry.strip()
        if not value:
            continue
        if value.startswith(HASHED_PREFIX):
            hex_digest = value.removeprefix(HASHED_PREFIX)
            try:
                raw = bytes.fromhex(hex_digest)
            except ValueError:
                raw = b""
            if len(raw) != hashlib.sha256().digest_size:
                # Logged once per configuration (cached); that key just does not work, the others still do.
                log.error("BOOKCHAT_API_KEYS: entry %d is 'sha256:' without 64 hex digits; ignored", position)
                continue
            digests.append(raw)
        else:
            digests.append(digest(value))
    return tuple(digests)


def match_api_key(candidate: str, configured: Sequence[str]) -> Principal | None:
    """The principal of a configured key equal to `candidate`, else None.

    Every configured digest is compared, with `hmac.compare_digest`, so the time taken says nothing about
    which key, or how much of one, matched.
    """
    wanted = digest(candidate)
    found: bytes | None = None
    for known in key_digests(tuple(configured)):
        if hmac.compare_digest(wanted, known):
            found = known
    if found is None:
        return None
    # Not "service:": API-key clients are rate limited like readers. The digest prefix names the key in logs.
    return Principal(id=PRINCIPAL_PREFIX + found.hex()[:16], role="user", user_id=None)
