"""Rate limits count IPv6 clients per /64 (BOOKCHAT_RATE_LIMIT_IPV6_PREFIX), IPv4 clients per address (issue 13).

One customer line gets a whole /64 (often a /56 or /48): counted per /128, it would mint guest tokens without end.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from bookchat.auth.tokens import TokenCodec
from bookchat.config import Settings
from bookchat.edge.middleware import rate_limit_address
from tests.auth.helpers import client, running
from tests.security.test_ratelimit import assert_429, http, limited_app
from tests.security.test_ratelimit import make_settings as unit_settings


async def test_guest_tokens_are_counted_per_ipv6_64(make_settings: Callable[..., Settings]) -> None:
    async with running(make_settings(rate_limit_enabled=True, rate_limit_auth="3/minute")) as app:
        for n in range(3):
            async with client(app, ip=f"2001:db8:aa:1::{n + 1:x}") as caller:
                assert (await caller.post("/api/auth/guest")).status_code == 200
        # Another address of the same /64 (a privacy address, say) shares the spent budget.
        async with client(app, ip="2001:db8:aa:1:8a2e:370:7334:1") as neighbour:
            refused = await neighbour.post("/api/auth/guest")
            assert_429(refused, 3)
        # The next /64 is someone else.
        async with client(app, ip="2001:db8:aa:2::1") as other:
            assert (await other.post("/api/auth/guest")).status_code == 200


async def test_ipv4_is_still_counted_per_address(make_settings: Callable[..., Settings]) -> None:
    async with running(make_settings(rate_limit_enabled=True, rate_limit_auth="2/minute")) as app:
        async with client(app, ip="192.0.2.80") as caller:
            assert [(await caller.post("/api/auth/guest")).status_code for _ in range(3)] == [200, 200, 429]
        async with client(app, ip="192.0.2.81") as neighbour:
            assert (await neighbour.post("/api/auth/guest")).status_code == 200
        # An IPv4-mapped IPv6 peer (a dual-stack socket) is the IPv4 address it carries.
        async with client(app, ip="::ffff:192.0.2.80") as mapped:
            assert (await mapped.post("/api/auth/guest")).status_code == 429


async def test_the_chat_ip_budget_is_shared_by_a_64(tmp_path: Path) -> None:
    settings = unit_settings(tmp_path, rate_limit_chat="10/minute", rate_limit_ip="2/minute")
    app = limited_app(settings)
    codec = TokenCodec.from_settings(settings)

    def guest() -> dict[str, str]:
        return {"Authorization": f"Bearer {codec.issue_access(f'guest:{uuid.uuid4()}', 'guest').token}"}

    # Each request a new guest from a new address of one /64: the per-IP budget is what holds.
    statuses = []
    for n in range(3):
        async with http(app, peer=f"2001:db8:bb:7::{n + 1:x}", **guest()) as caller:
            statuses.append((await caller.post("/api/chat")).status_code)
    assert statuses == [200, 200, 429]
    async with http(app, peer="2001:db8:bb:8::1", **guest()) as other:
        assert (await other.post("/api/chat")).status_code == 200


@pytest.mark.parametrize(
    ("ip", "prefix", "expected"),
    [
        ("192.0.2.7", 64, "192.0.2.7"),
        ("::ffff:192.0.2.7", 64, "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"),
        ("2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6/128"),
        ("fe80::1%eth0", 64, "fe80::/64"),
        ("::1", 64, "::/64"),
        ("unknown", 64, "unknown"),
        ("testclient", 64, "testclient"),
    ],
)
def test_rate_limit_address(ip: str, prefix: int, expected: str) -> None:
    assert rate_limit_address(ip, prefix) == expected


def test_ipv6_prefix_setting(tmp_path: Path) -> None:
    assert unit_settings(tmp_path).rate_limit_ipv6_prefix == 64
    for bad in (31, 129):
        with pytest.raises(ValidationError):
            unit_settings(tmp_path, rate_limit_ipv6_prefix=bad)


async def test_prefix_128_counts_every_ipv6_address_alone(tmp_path: Path) -> None:
    app = limited_app(unit_settings(tmp_path, rate_limit_auth="1/minute", rate_limit_ipv6_prefix=128))
    async with http(app, peer="2001:db8:cc:1::1") as one, http(app, peer="2001:db8:cc:1::2") as two:
        assert (await one.post("/api/auth/thing")).status_code == 200
        assert_429(await one.post("/api/auth/thing"), 1)
        assert (await two.post("/api/auth/thing")).status_code == 200
