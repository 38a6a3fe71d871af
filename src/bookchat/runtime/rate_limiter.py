"""Rate limits (the `limits` library, memory or Redis) and the cap on concurrent streams, per identifier string.

A library: it knows no principal and no request; `auth.rate_limits` maps a caller to the identifiers it charges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from bookchat.config import Settings
from bookchat.errors import TooManyRequests

log = logging.getLogger(__name__)

Rule = Literal["auth", "login_pair", "login_account", "chat", "search", "ip", "pages"]

# A stream slot in Redis is a lease: a heartbeat renews it every third of this while the stream lives, so a
# replica that dies without releasing its slots holds them for at most this long.
STREAM_LEASE_SECONDS = 30
# A backstop against a slot whose release() is never called (a bug): its heartbeat stops after this long.
STREAM_MAX_SECONDS = 900

# Both scripts read Redis's clock, not the replica's: leases are short, and replicas' clocks may disagree.
# Scores are the leases' expiry times; KEYS[1] the principal's slots; ARGV: lease (ms), max slots, slot id.
_ACQUIRE_STREAM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

# Renew one slot's lease, only if Redis still holds it (XX): a slot already swept is not brought back, which
# could put the principal over the cap. ARGV: lease (ms), slot id. 0 when the slot is gone.
_RENEW_STREAM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not expires or tonumber(expires) <= now then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""


class RateLimitConfigError(ValueError):
    """A BOOKCHAT_RATE_LIMIT_* value is not a `limits` expression such as "10/minute;100/hour"."""


@dataclass(frozen=True)
class LimitState:
    """Where a caller stands against the tightest limit of a rule, for the RateLimit-* headers."""

    limit: int
    remaining: int
    reset_after: int
    policy: str

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_after),
            "RateLimit-Policy": self.policy,
        }


def _parse(name: str, value: str) -> list[RateLimitItem]:
    try:
        items = parse_many(value)
    except ValueError:
        raise RateLimitConfigError(
            f"BOOKCHAT_RATE_LIMIT_{name.upper()}: {value!r} is not like '10/minute;100/hour'"
        ) from None
    if not items:
        raise RateLimitConfigError(f"BOOKCHAT_RATE_LIMIT_{name.upper()}: empty")
    return items


def _policy(items: list[RateLimitItem]) -> str:
    return ", ".join(f"{item.amount};w={item.get_expiry()}" for item in items)


class RateLimiter:
    """Moving-window limits per rule and identifier; shared by all replicas when Redis is configured."""

    def __init__(self, settings: Settings, *, storage: Storage | None = None) -> None:
        self.enabled = settings.rate_limit_enabled
        self.rules: dict[str, list[RateLimitItem]] = {
            "auth": _parse("auth", settings.rate_limit_auth),
            "login_pair": _parse("login_pair", settings.rate_limit_login_pair),
            "login_account": _parse("login_account", settings.rate_limit_login_account),
            "chat": _parse("chat", settings.rate_limit_chat),
            "search": _parse("search", settings.rate_limit_search),
            "ip": _parse("ip", settings.rate_limit_ip),
            "pages": _parse("pages", settings.rate_limit_pages),
        }
        self.prefix = settings.rate_limit_prefix
        self.max_streams = settings.max_concurrent_streams
        self._redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
        if storage is None:
            if self._redis_url:
                storage = RedisStorage(
                    self._redis_url,
                    implementation="redispy",
                    key_prefix=self.prefix,
                    wrap_exceptions=True,
                )
            else:
                storage = MemoryStorage()
        self.storage = storage
        self.strategy = MovingWindowRateLimiter(storage)
        self._streams: dict[str, int] = {}
        self._redis: Any = None
        # Read here, not at import, so a test can shorten it.
        self.stream_lease = float(STREAM_LEASE_SECONDS)
        self._heartbeats: set[asyncio.Task[None]] = set()
        self._last_storage_warning = 0.0

    async def hit(self, rule: Rule, *identifiers: str) -> LimitState:
        """Count one request; raise TooManyRequests (with Retry-After and RateLimit-*) when over a limit."""
        items = self.rules[rule]
        if not self.enabled:
            return LimitState(items[0].amount, items[0].amount, 0, _policy(items))
        try:
            tightest: LimitState | None = None
            for item in items:
                allowed = await self.strategy.hit(item, rule, *identifiers)
                state = await self._state(item, items, rule, identifiers)
                if not allowed:
                    raise self._refusal(state, rule)
                if tightest is None or state.remaining < tightest.remaining:
                    tightest = state
        except TooManyRequests:
            raise
        except Exception as exc:  # a limiter outage must not take the API down with it
            self._warn_storage(exc)
            return LimitState(items[0].amount, items[0].amount, 0, _policy(items))
        assert tightest is not None
        return tightest

    async def check(self, rule: Rule, *identifiers: str) -> None:
        """Raise TooManyRequests if the budget is already spent, without spending any.

        Check-then-spend is racy (concurrent callers all pass the check): a budget that must hold under
        concurrency is spent up front with `hit` and refunded with `clear`.
        """
        if not self.enabled:
            return
        items = self.rules[rule]
        try:
            for item in items:
                if not await self.strategy.test(item, rule, *identifiers):
                    raise self._refusal(await self._state(item, items, rule, identifiers), rule)
        except TooManyRequests:
            raise
        except Exception as exc:
            self._warn_storage(exc)

    async def spend(self, rule: Rule, *identifiers: str) -> None:
        """Count one event without refusing anything now (e.g. a failed login, refused on the next try)."""
        if not self.enabled:
            return
        try:
            for item in self.rules[rule]:
                await self.strategy.hit(item, rule, *identifiers)
        except Exception as exc:
            self._warn_storage(exc)

    async def count(self, rule: Rule, *identifiers: str) -> int:
        """How many hits the identifiers have on record: the most held by any of the rule's windows.

        0 when limits are off or the storage is unreachable (failing open like the rest).
        """
        if not self.enabled:
            return 0
        try:
            most = 0
            for item in self.rules[rule]:
                stats = await self.strategy.get_window_stats(item, rule, *identifiers)
                most = max(most, item.amount - stats.remaining)
        except Exception as exc:
            self._warn_storage(exc)
            return 0
        return most

    async def clear(self, rule: Rule, *identifiers: str) -> None:
        """Forget every hit of the identifiers in all of the rule's windows (a refund: a successful login).

        The moving window keeps one entry per hit and `limits` can only drop them all, so a refund is
        all or nothing: the identifiers start afresh.
        """
        if not self.enabled:
            return
        try:
            for item in self.rules[rule]:
                await self.strategy.clear(item, rule, *identifiers)
        except Exception as exc:
            self._warn_storage(exc)

    async def reset(self) -> None:
        """Forget all counters (tests, and `bookchat` maintenance)."""
        await self.storage.reset()

    async def _state(
        self, item: RateLimitItem, items: list[RateLimitItem], rule: str, identifiers: tuple[str, ...]
    ) -> LimitState:
        stats = await self.strategy.get_window_stats(item, rule, *identifiers)
        reset_after = max(1, math.ceil(stats.reset_time - time.time()))
        return LimitState(item.amount, max(0, stats.remaining), reset_after, _policy(items))

    def _refusal(self, state: LimitState, rule: str) -> TooManyRequests:
        refused = LimitState(state.limit, 0, state.reset_after, state.policy)
        return TooManyRequests(
            f"Too many requests; retry in {state.reset_after} s.",
            headers={"Retry-After": str(state.reset_after), **refused.headers()},
            code="rate-limited",
        )

    def _warn_storage(self, exc: Exception) -> None:
        # Fail open, loudly but not on every request: an unreachable Redis should page, not flood the log.
        now = time.monotonic()
        if now - self._last_storage_warning > 60:
            self._last_storage_warning = now
            log.warning("rate-limit storage unavailable, limits not enforced: %s", type(exc).__name__)

    @asynccontextmanager
    async def stream_slot(self, identifier: str) -> AsyncIterator[None]:
        """Hold one of the principal's MAX_CONCURRENT_STREAMS slots for the duration of a block."""
        release = await self.acquire_stream(identifier)
        try:
            yield
        finally:
            await release()

    async def acquire_stream(self, identifier: str) -> Callable[[], Awaitable[None]]:
        """Take a stream slot now (429 when none is free); call the returned `release()` when the stream ends.

        For StreamingResponse: acquire before returning the response (a 429 cannot be sent once streaming),
        release in the generator's `finally`. With Redis the slot is a lease of STREAM_LEASE_SECONDS that a
        heartbeat task renews while the stream lives; `release()` stops the heartbeat and removes the slot, and
        the slots of a replica that died lapse within one lease.
        """
        if not self.enabled:
            return _no_release
        refusal = TooManyRequests(
            f"At most {self.max_streams} answers may stream at once; wait for one to finish.",
            headers={"Retry-After": "5"},
            code="too-many-streams",
        )
        if self._redis_url:
            try:
                return _once(await self._acquire_stream_redis(identifier, refusal))
            except TooManyRequests:
                raise
            except Exception as exc:
                self._warn_storage(exc)
        if self._streams.get(identifier, 0) >= self.max_streams:
            raise refusal
        self._streams[identifier] = self._streams.get(identifier, 0) + 1

        async def release() -> None:
            left = self._streams.get(identifier, 1) - 1
            if left <= 0:
                self._streams.pop(identifier, None)
            else:
                self._streams[identifier] = left

        return _once(release)

    async def _acquire_stream_redis(self, identifier: str, refusal: TooManyRequests) -> Callable[[], Awaitable[None]]:
        url = self._redis_url or ""
        if self._redis is None:
            import redis.asyncio as redis_asyncio

            self._redis = redis_asyncio.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        key = f"{self.prefix}:streams:{identifier}"
        slot = uuid.uuid4().hex
        lease_ms = max(1, math.ceil(self.stream_lease * 1000))
        if not await self._redis.eval(_ACQUIRE_STREAM, 1, key, lease_ms, self.max_streams, slot):
            raise refusal
        client = self._redis
        heartbeat = asyncio.create_task(self._renew_lease(client, key, slot), name=f"bookchat-stream-lease-{slot}")
        self._heartbeats.add(heartbeat)
        heartbeat.add_done_callback(self._heartbeats.discard)

        async def release() -> None:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            try:
                await client.zrem(key, slot)
            except Exception as exc:  # the lease expires by itself
                self._warn_storage(exc)

        return release

    async def _renew_lease(self, client: Any, key: str, slot: str) -> None:
        """The heartbeat of one stream slot: renew its lease every third of a lease until cancelled.

        A renewal that fails is tried again at the next beat while the lease may still hold; once Redis no
        longer holds the slot (or could not be reached for a whole lease) the heartbeat logs it once and
        ends, and the slot is simply gone: the stream goes on, uncounted. After STREAM_MAX_SECONDS it ends
        too, so a slot whose release() is never called (a bug) cannot be held for the life of the process.
        """
        lease_ms = max(1, math.ceil(self.stream_lease * 1000))
        interval = self.stream_lease / 3
        started = renewed = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - started >= STREAM_MAX_SECONDS:
                log.warning("stream slot held for %d s: its lease is no longer renewed", STREAM_MAX_SECONDS)
                return
            try:
                held = await client.eval(_RENEW_STREAM, 1, key, lease_ms, slot)
            except Exception as exc:
                if time.monotonic() - renewed + interval < self.stream_lease:
                    continue
                log.warning("stream slot lease not renewed (%s); it lapses", type(exc).__name__)
                return
            if not held:
                log.warning("stream slot lease lost (Redis no longer holds it); not renewed")
                return
            renewed = time.monotonic()

    async def close(self) -> None:
        """Stop renewing the leases of streams still open (they lapse within a lease) and close Redis."""
        for heartbeat in list(self._heartbeats):
            heartbeat.cancel()
        if self._heartbeats:
            await asyncio.gather(*self._heartbeats, return_exceptions=True)
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


async def _no_release() -> None:
    return None


def _once(release: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """A release that frees its slot once, however often a careless caller awaits it."""
    done = False

    async def release_once() -> None:
        nonlocal done
        if not done:
            done = True
            await release()

    return release_once


def create_rate_limiter(settings: Settings) -> RateLimiter:
    """The limiter for `Resources.limiter`; raises RateLimitConfigError on a bad BOOKCHAT_RATE_LIMIT_*."""
    return RateLimiter(settings)
