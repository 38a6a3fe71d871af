"""The FastAPI side of rate limiting: which identifiers (principal, client address) a request is charged to."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import Request, Response

from bookchat.auth.dependencies import Principal, PrincipalDep
from bookchat.edge.middleware import client_ip, rate_limit_address
from bookchat.runtime.rate_limiter import LimitState, RateLimiter


def get_rate_limiter(request: Request) -> RateLimiter:
    """`Resources.limiter` when the lifespan set one, else one built lazily for this app."""
    resources = getattr(request.app.state, "resources", None)
    limiter = getattr(resources, "limiter", None)
    if isinstance(limiter, RateLimiter):
        return limiter
    limiter = getattr(request.app.state, "rate_limiter", None)
    if not isinstance(limiter, RateLimiter):
        limiter = RateLimiter(request.app.state.settings)
        request.app.state.rate_limiter = limiter
    return limiter


def client_address(request: Request) -> str:
    """The client address as rate limits count it: IPv4 per address, IPv6 per BOOKCHAT_RATE_LIMIT_IPV6_PREFIX."""
    settings = getattr(request.app.state, "settings", None)
    prefix = settings.rate_limit_ipv6_prefix if settings is not None else 64
    return rate_limit_address(client_ip(request), prefix)


async def enforce_rate_limit(
    request: Request, rule: Literal["chat", "search"], principal: Principal, response: Response | None = None
) -> LimitState:
    """Charge one request to the principal (rule) and to the client address; for routers with their own auth."""
    limiter = get_rate_limiter(request)
    # The admin service token is a CI credential: it is not throttled like a reader.
    if principal.is_service:
        return LimitState(0, 0, 0, "")
    # The principal first: a request its own budget refuses does not also eat the shared IP budget.
    state = await limiter.hit(rule, principal.id)
    ip_state = await limiter.hit("ip", client_address(request))
    tightest = state if state.remaining <= ip_state.remaining else ip_state
    if response is not None:
        response.headers.update(tightest.headers())
    return tightest


def rate_limit(rule: Literal["auth", "chat", "search"]) -> Callable[..., Awaitable[None]]:
    """A dependency for `dependencies=[Depends(rate_limit("chat"))]`: 429 problem+json when over the limit.

    "auth" counts per client IP (no principal needed); "chat" and "search" count per principal and per IP,
    and authenticate the caller (the result is cached by FastAPI, so the route's own auth costs nothing more).
    """
    if rule == "auth":

        async def limit_by_ip(request: Request, response: Response) -> None:
            state = await get_rate_limiter(request).hit("auth", client_address(request))
            response.headers.update(state.headers())

        return limit_by_ip

    async def limit_principal(request: Request, response: Response, principal: PrincipalDep) -> None:
        await enforce_rate_limit(request, rule, principal, response)

    return limit_principal


async def acquire_stream_slot(request: Request, principal: Principal) -> Callable[[], Awaitable[None]]:
    """Take a stream slot before building a StreamingResponse; await the returned release() in its finally."""
    return await get_rate_limiter(request).acquire_stream(principal.id)
