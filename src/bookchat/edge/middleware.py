"""The HTTP edge: CORS, security headers, the client IP behind trusted proxies, and per-route body limits."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bookchat.config import Settings

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

AUTH_BODY_LIMIT = 16 * 1024
HSTS_VALUE = "max-age=31536000; includeSubDomains"
# The API serves JSON; a CSP on it costs nothing and stops a sniffed response from running anything.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
# HTML pages of our own (the widget demo, error pages): scripts only from this origin.
HTML_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# Swagger UI / ReDoc load their bundle from jsdelivr and start it with an inline script.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")
CORS_ALLOW_HEADERS = ("Authorization", "Content-Type", "Accept", "X-Request-ID", "Last-Event-ID")
CORS_EXPOSE_HEADERS = (
    "X-Request-ID",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
)
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


class EdgeConfigError(ValueError):
    """An edge setting (CORS, proxies) cannot be used; the message names the variable and the fix."""


def cors_origins(settings: Settings) -> list[str]:
    """The validated CORS origin list; a wildcard with credentials, or a malformed origin, is a start-up error."""
    origins = [origin.strip().rstrip("/") for origin in settings.cors_origins if origin.strip()]
    if "*" in origins:
        if settings.cors_allow_credentials:
            raise EdgeConfigError(
                "BOOKCHAT_CORS_ORIGINS: '*' is refused while BOOKCHAT_CORS_ALLOW_CREDENTIALS=true; "
                "list the book's origins explicitly, e.g. https://book.example.org"
            )
        if len(origins) > 1:
            raise EdgeConfigError("BOOKCHAT_CORS_ORIGINS: '*' must be the only entry")
        return origins
    bad = [origin for origin in origins if not _ORIGIN.match(origin)]
    if bad:
        raise EdgeConfigError(f"BOOKCHAT_CORS_ORIGINS: {bad[0]!r} is not an origin (scheme://host[:port], no path)")
    return origins


def parse_trusted_proxies(values: Iterable[str]) -> list[IPNetwork]:
    """IPs and CIDRs of the reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed."""
    networks: list[IPNetwork] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise EdgeConfigError(f"BOOKCHAT_TRUSTED_PROXIES: {value!r} is not an IP address or CIDR") from None
    return networks


def body_limit_for(settings: Settings) -> Callable[[str], int]:
    """Per-route body limits: uploads get MAX_UPLOAD_BYTES, auth forms a few KiB, the rest MAX_BODY_BYTES."""

    def limit(path: str) -> int:
        if path.startswith("/api/documents"):
            return max(settings.max_upload_bytes, settings.max_body_bytes)
        if path.startswith("/api/auth/"):
            return min(AUTH_BODY_LIMIT, settings.max_body_bytes)
        return settings.max_body_bytes

    return limit


def client_ip(request: Request) -> str:
    """The caller's IP (already corrected by TrustedProxyMiddleware when the peer is a trusted proxy).

    The real address, for logs; rate limits count `rate_limit_address(client_ip(request), prefix)` instead.
    """
    return request.client.host if request.client else "unknown"


def rate_limit_address(ip: str, ipv6_prefix: int = 64) -> str:
    """The identifier a client address is rate-limited under: an IPv4 address as it is, IPv6 by network.

    One IPv6 customer gets a /64 at least, so counting per /128 would hand them 2**64 budgets: an IPv6
    address counts as its `/ipv6_prefix` network (`2001:db8:1:2::/64`). An IPv4-mapped address
    (`::ffff:192.0.2.1`, from a dual-stack socket) counts as the IPv4 address. Anything that is not an IP
    (`unknown`, a test client's name) is returned unchanged.
    """
    if not 0 <= ipv6_prefix <= 128:
        raise ValueError(f"an IPv6 prefix length is 0..128, not {ipv6_prefix}")
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    # Built from the integer: a scope id (fe80::1%eth0) would make ip_network() refuse the text.
    host_bits = 128 - ipv6_prefix
    network = ipaddress.IPv6Network(((int(address) >> host_bits) << host_bits, ipv6_prefix))
    return network.with_prefixlen


def _is_trusted(host: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)


class TrustedProxyMiddleware:
    """Rewrites the client address and scheme from X-Forwarded-* only when the TCP peer is a trusted proxy.

    Walking X-Forwarded-For from the right and stopping at the first untrusted hop means a client cannot
    spoof its address by sending its own X-Forwarded-For: everything left of that hop is ignored.
    """

    def __init__(self, app: ASGIApp, trusted: Sequence[IPNetwork]) -> None:
        self.app = app
        self.trusted = list(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.trusted:
            peer = scope.get("client")
            if peer and _is_trusted(peer[0], self.trusted):
                self._rewrite(scope)
        await self.app(scope, receive, send)

    def _rewrite(self, scope: Scope) -> None:
        forwarded_for: list[str] = []
        proto: str | None = None
        for name, value in scope.get("headers", ()):
            if name == b"x-forwarded-for":
                forwarded_for.extend(part.strip() for part in value.decode("latin-1").split(","))
            elif name == b"x-forwarded-proto":
                proto = value.decode("latin-1").split(",")[-1].strip().lower()
        client: str | None = None
        for hop in reversed([hop for hop in forwarded_for if hop]):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                break
            client = hop
            if not _is_trusted(hop, self.trusted):
                break
        if client is not None:
            port = scope["client"][1] if scope.get("client") else 0
            scope["client"] = (client, port)
        if proto in ("http", "https"):
            scope["scheme"] = proto if scope["type"] == "http" else ("wss" if proto == "https" else "ws")


class SecurityHeadersMiddleware:
    """Adds nosniff, Referrer-Policy, a CSP fitting the content type and, over TLS, HSTS.

    Headers a route set itself are kept, so a page with special needs can send its own CSP.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        secure = scope.get("scheme") == "https"
        path: str = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[tuple[bytes, bytes]] = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                content_type = next((value for name, value in headers if name.lower() == b"content-type"), b"")
                is_html = content_type.startswith(b"text/html")
                csp = DOCS_CSP if path.startswith(DOCS_PATHS) else HTML_CSP if is_html else API_CSP
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"strict-origin-when-cross-origin"),
                    (b"content-security-policy", csp.encode()),
                ]
                if is_html:
                    extra.append((b"x-frame-options", b"DENY"))
                if secure:
                    extra.append((b"strict-transport-security", HSTS_VALUE.encode()))
                headers.extend((name, value) for name, value in extra if name not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_edge(app: FastAPI, settings: Settings) -> None:
    """Add security headers, CORS and trusted-proxy handling; call after the app's other middleware.

    Starlette runs the last-added middleware first, so the proxy rewrite happens before anything reads the
    client IP, and CORS headers land on every response, 413 and 429 included (browsers can read the error).
    Raises EdgeConfigError for unusable settings, so a misconfiguration stops start-up.
    """
    origins = cors_origins(settings)
    trusted = parse_trusted_proxies(settings.trusted_proxies)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_credentials=settings.cors_allow_credentials,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=list(CORS_ALLOW_HEADERS),
        expose_headers=list(CORS_EXPOSE_HEADERS),
        max_age=600,
    )
    app.add_middleware(TrustedProxyMiddleware, trusted=trusted)
