"""Login throttling (issue 13): spent before the password is checked, refunded on success, per account and address.

The budgets under test are the defaults: `BOOKCHAT_RATE_LIMIT_LOGIN_PAIR` 5/minute;20/hour per (account, client
address) and `BOOKCHAT_RATE_LIMIT_LOGIN_ACCOUNT` 30/hour per account, which only refuses addresses that already
failed for that account. The per-address `auth` rule is set generously so it never decides these tests.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bookchat.config import Settings
from bookchat.errors import TooManyRequests
from bookchat.runtime.rate_limiter import RateLimiter
from tests.auth.helpers import PASSWORD, client, register, running, unique_email
from tests.security.conftest import REDIS_URL
from tests.security.test_ratelimit import make_settings as unit_settings

WRONG = "not-the-right-password-at-all"
SETUP_IP = "192.0.2.200"


def throttled(make_settings: Callable[..., Settings], **overrides: Any) -> Settings:
    return make_settings(rate_limit_enabled=True, rate_limit_auth="1000/minute", **overrides)


async def attempt(http: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await http.post("/api/auth/login", json={"email": email, "password": password})


def codes(responses: list[httpx.Response]) -> list[int]:
    return [response.status_code for response in responses]


@pytest.mark.parametrize("shared", [False, True], ids=["memory", "redis"])
async def test_concurrent_wrong_guesses_cannot_overrun_the_budget(
    make_settings: Callable[..., Settings], redis_prefix: str, shared: bool
) -> None:
    extra: dict[str, Any] = {"redis_url": REDIS_URL, "rate_limit_prefix": redis_prefix} if shared else {}
    async with running(throttled(make_settings, **extra)) as app:
        async with client(app, ip=SETUP_IP) as setup:
            email = unique_email("raced")
            await register(setup, email)
        async with client(app, ip="198.51.100.30") as attacker:
            answers = await asyncio.gather(*(attempt(attacker, email, WRONG) for _ in range(20)))
        counted = Counter(codes(answers))
        # The pair budget (5/minute) is taken before the hash: only 5 guesses are judged, the rest are refused.
        assert counted == {401: 5, 429: 15}, counted
        for refused in (answer for answer in answers if answer.status_code == 429):
            assert refused.json()["code"] == "rate-limited"
            assert int(refused.headers["retry-after"]) >= 1


async def test_an_attacker_cannot_lock_the_owner_out(make_settings: Callable[..., Settings]) -> None:
    async with running(throttled(make_settings)) as app:
        async with client(app, ip=SETUP_IP) as setup:
            email = unique_email("owner")
            await register(setup, email)
        async with client(app, ip="203.0.113.66") as attacker:
            guesses = [await attempt(attacker, email, WRONG) for _ in range(7)]
            assert codes(guesses) == [401] * 5 + [429] * 2
            # Spent up front: from this address even the right password is not checked any more.
            assert (await attempt(attacker, email, PASSWORD)).status_code == 429
        async with client(app, ip="192.0.2.10") as owner:
            assert (await attempt(owner, email, PASSWORD)).status_code == 200
        async with client(app, ip="203.0.113.66") as attacker:
            assert (await attempt(attacker, email, WRONG)).status_code == 429


async def test_a_spent_account_budget_slows_only_addresses_that_failed(make_settings: Callable[..., Settings]) -> None:
    # A distributed guesser: once the account's failure budget is spent, an address that already failed for the
    # account is refused and a fresh one gets a single guess. The owner, who has not failed, still signs in.
    async with running(throttled(make_settings, rate_limit_login_account="4/hour")) as app:
        async with client(app, ip=SETUP_IP) as setup:
            email = unique_email("spread")
            await register(setup, email)
        bots = [client(app, ip=f"198.51.100.{40 + n}") for n in range(5)]
        try:
            first = [await attempt(bot, email, WRONG) for bot in bots[:4]]
            assert codes(first) == [401] * 4  # the account's 4 failures are spent
            again = await attempt(bots[0], email, WRONG)
            assert again.status_code == 429  # has failed before: refused
            assert again.json()["code"] == "rate-limited"
            newcomer = [await attempt(bots[4], email, WRONG) for _ in range(2)]
            assert codes(newcomer) == [401, 429]  # one guess, then it has failed too
        finally:
            for bot in bots:
                await bot.aclose()
        async with client(app, ip="192.0.2.11") as owner:
            assert (await attempt(owner, email, PASSWORD)).status_code == 200


async def test_a_successful_login_refunds_the_address(make_settings: Callable[..., Settings]) -> None:
    # "Refund": a correct password clears the (account, address) record, so the address has its whole pair budget
    # (5 failures a minute) again instead of being one typo away from a 429.
    async with running(throttled(make_settings)) as app:
        async with client(app, ip=SETUP_IP) as setup:
            email = unique_email("typist")
            await register(setup, email)
        async with client(app, ip="192.0.2.12") as owner:
            typos = [await attempt(owner, email, WRONG) for _ in range(4)]
            assert codes(typos) == [401] * 4
            assert (await attempt(owner, email, PASSWORD)).status_code == 200
            later = [await attempt(owner, email, WRONG) for _ in range(6)]
            assert codes(later) == [401] * 5 + [429]
            # Spent: the right password waits too, on this address.
            assert (await attempt(owner, email, PASSWORD)).status_code == 429


async def test_the_form_route_and_an_ipv6_64_share_the_pair_budget(make_settings: Callable[..., Settings]) -> None:
    # /api/auth/token is the same login; rotating addresses inside one /64 does not buy fresh guesses.
    async with running(throttled(make_settings)) as app:
        async with client(app, ip=SETUP_IP) as setup:
            email = unique_email("form")
            await register(setup, email)
        statuses = []
        for n in range(6):
            async with client(app, ip=f"2001:db8:77:1::{n + 1:x}") as rotating:
                form = {"username": email, "password": WRONG}
                statuses.append((await rotating.post("/api/auth/token", data=form)).status_code)
        assert statuses == [401] * 5 + [429]
        async with client(app, ip="2001:db8:77:2::1") as owner:
            assert (await owner.post("/api/auth/token", data={"username": email, "password": PASSWORD})).is_success


@pytest.mark.parametrize("shared", [False, True], ids=["memory", "redis"])
async def test_limiter_count_and_clear(tmp_path: Path, redis_prefix: str, shared: bool) -> None:
    extra: dict[str, Any] = {"redis_url": REDIS_URL, "rate_limit_prefix": redis_prefix} if shared else {}
    limiter = RateLimiter(unit_settings(tmp_path, rate_limit_login_pair="2/minute;3/hour", **extra))
    try:
        assert await limiter.count("login_pair", "acct", "192.0.2.1") == 0
        await limiter.hit("login_pair", "acct", "192.0.2.1")
        await limiter.hit("login_pair", "acct", "192.0.2.1")
        await limiter.hit("login_pair", "acct", "192.0.2.2")
        assert await limiter.count("login_pair", "acct", "192.0.2.1") == 2
        with pytest.raises(TooManyRequests):
            await limiter.hit("login_pair", "acct", "192.0.2.1")
        await limiter.clear("login_pair", "acct", "192.0.2.1")
        # Every window of the rule is forgotten, and only for these identifiers.
        assert await limiter.count("login_pair", "acct", "192.0.2.1") == 0
        assert await limiter.count("login_pair", "acct", "192.0.2.2") == 1
        for _ in range(2):
            await limiter.hit("login_pair", "acct", "192.0.2.1")
    finally:
        await limiter.close()


async def test_limiter_count_and_clear_fail_open(tmp_path: Path) -> None:
    limiter = RateLimiter(unit_settings(tmp_path, redis_url="redis://127.0.0.1:1/0"))
    assert await limiter.count("login_pair", "acct", "192.0.2.1") == 0
    await limiter.clear("login_pair", "acct", "192.0.2.1")
