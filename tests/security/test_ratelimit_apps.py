"""Rate limits on the real app: two instances sharing Redis count together, as replicas behind a balancer do."""

from __future__ import annotations

from collections.abc import Callable

from bookchat.config import Settings
from tests.auth.helpers import client, running
from tests.security.conftest import REDIS_URL


async def test_two_app_instances_share_limits_through_redis(
    make_settings: Callable[..., Settings], redis_prefix: str
) -> None:
    def replica() -> Settings:
        return make_settings(
            rate_limit_enabled=True, rate_limit_auth="5/minute", redis_url=REDIS_URL, rate_limit_prefix=redis_prefix
        )

    async with running(replica()) as first, running(replica()) as second:
        async with client(first, ip="192.0.2.50") as one, client(second, ip="192.0.2.50") as two:
            answers = [await (one if i % 2 else two).post("/api/auth/guest") for i in range(5)]
            assert [a.status_code for a in answers] == [200] * 5
            assert [a.headers["ratelimit-remaining"] for a in answers] == ["4", "3", "2", "1", "0"]
            for http in (one, two):
                refused = await http.post("/api/auth/guest")
                assert refused.status_code == 429
                assert refused.headers["content-type"].startswith("application/problem+json")
                assert int(refused.headers["retry-after"]) >= 1
                assert refused.headers["ratelimit-limit"] == "5"
                assert refused.headers["ratelimit-remaining"] == "0"
        # Another client IP is not affected by this one's budget.
        async with client(first, ip="192.0.2.51") as other:
            assert (await other.post("/api/auth/guest")).status_code == 200
