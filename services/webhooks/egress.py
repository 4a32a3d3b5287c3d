"""The only way a webhook leaves the platform: URL rules, an SSRF guard, and one bounded HTTP POST.

A receiver's URL is the customer's to choose, so unchecked it would let anyone make the platform call its own
network (and `test()` reports the status code, which would scan internal ports). Every send resolves the host
once, checks every address it got, and connects only to those checked addresses (a pinned resolver: a second
lookup that answers differently — DNS rebinding — never happens); https keeps the name for SNI and the
certificate. No redirects are followed, proxy variables are ignored, the answer is read up to a bound.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from shared.contracts.errors import BadRequest
from shared.settings import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], Awaitable[list[str]]]  # host name -> IP addresses
MAX_URL_CHARS = 2048
USER_AGENT = "LoRAServe-Webhooks/1"
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
CGNAT = ipaddress.ip_network("100.64.0.0/10")
# refused everywhere unless allow-listed; the rest of the non-public space only in production
ALWAYS_REFUSED = {"cloud metadata", "unspecified", "multicast", "reserved", "non-public"}


class UrlRefused(BadRequest):
    """A receiver URL the platform will not call: 400 invalid_url with the reason."""

    def __init__(self, reason: str, param: str = "url"):
        super().__init__(f"url refused: {reason}", param=param, code="invalid_url")
        self.reason = reason


@dataclass(frozen=True)
class SendResult:
    status: int | None  # the receiver's HTTP status; None when none came back
    latency_ms: float
    error: str | None  # why no status came back (or why the send was refused)
    blocked: bool  # refused by the URL rules or the SSRF guard: nothing was connected
    body: bytes = b""  # the start of the receiver's answer (up to webhook_max_response_bytes)


async def system_resolver(host: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_kind(address: Address) -> str | None:
    """Why an address is not on the public internet, or None when it is."""
    if address in METADATA:
        return "cloud metadata"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is not None:
            return address_kind(embedded)
    checks = (("unspecified", address.is_unspecified), ("loopback", address.is_loopback),
              ("link-local", address.is_link_local), ("multicast", address.is_multicast),
              ("CGNAT (100.64.0.0/10)", address in CGNAT), ("reserved", address.is_reserved),
              ("private", address.is_private), ("non-public", not address.is_global))
    return next((kind for kind, hit in checks if hit), None)


def parse_cidrs(text: str) -> list[Network]:
    return [ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()]


class PinnedResolver(AbstractResolver):
    """Answers aiohttp's lookup with the addresses already checked, and nothing else."""

    def __init__(self, host: str, addresses: list[Address]):
        self.host, self.addresses = host, addresses

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        if host != self.host:
            raise OSError(f"refusing to resolve {host!r}: only {self.host!r} was checked")
        return [ResolveResult(hostname=host, host=str(a), port=port, proto=0, flags=socket.AI_NUMERICHOST,
                              family=socket.AF_INET6 if a.version == 6 else socket.AF_INET)
                for a in self.addresses]

    async def close(self) -> None:
        return None


class Egress:
    def __init__(self, settings: Settings, resolver: Resolver | None = None):
        self.settings = settings
        self.resolver = resolver or system_resolver
        self.allowed = parse_cidrs(settings.webhook_allowed_cidrs)
        allow_private = settings.webhook_allow_private
        self.allow_private = (not settings.production) if allow_private is None else allow_private

    def parse(self, url: str) -> URL:
        """The URL if its form is acceptable (scheme, host, no credentials), else UrlRefused."""
        if len(url) > MAX_URL_CHARS:
            raise UrlRefused(f"longer than {MAX_URL_CHARS} characters")
        try:
            parsed = URL(url)
        except (ValueError, TypeError) as exc:
            raise UrlRefused(f"not a URL ({exc})") from None
        schemes = ("https",) if self.settings.production else ("https", "http")
        if parsed.scheme not in schemes:
            raise UrlRefused("only https:// URLs are accepted" if self.settings.production
                             else "only http:// and https:// URLs are accepted")
        try:
            host, port = parsed.host, parsed.port  # yarl checks the port's range only when asked
        except ValueError as exc:
            raise UrlRefused(f"not a URL ({exc})") from None
        if not host or port is None:
            raise UrlRefused("the URL has no host")
        if parsed.user is not None or parsed.password is not None:
            raise UrlRefused("credentials in the URL are not accepted")
        return parsed

    def refusal(self, address: Address) -> str | None:
        """The kind of address that keeps a delivery from `address`, or None when it may be sent."""
        if any(address in network for network in self.allowed if network.version == address.version):
            return None
        kind = address_kind(address)
        if kind is None or (self.allow_private and kind not in ALWAYS_REFUSED):
            return None
        return kind

    async def checked_addresses(self, host: str) -> list[Address]:
        """Every address `host` stands for, all of them allowed; UrlRefused otherwise."""
        literal = host.strip("[]")
        try:
            addresses = [ipaddress.ip_address(literal)]
        except ValueError:
            try:
                found = await asyncio.wait_for(self.resolver(host), self.settings.webhook_connect_timeout_seconds)
                addresses = [ipaddress.ip_address(a) for a in found]
            except TimeoutError:
                raise UrlRefused(f"{host} did not resolve in time") from None
            except (OSError, ValueError) as exc:  # UnicodeError (a bad IDNA label) is a ValueError
                raise UrlRefused(f"{host} does not resolve ({exc})") from None
        if not addresses:
            raise UrlRefused(f"{host} does not resolve")
        for address in addresses:
            kind = self.refusal(address)
            if kind:
                where = f"{host} resolves to {address}," if str(address) != literal else f"{address} is"
                raise UrlRefused(f"{where} a {kind} address")
        return addresses

    async def check_url(self, url: str) -> None:
        """Raise UrlRefused (a 400 invalid_url naming why) unless a delivery to `url` would be sent."""
        await self.checked_addresses(self.parse(url).host)

    async def post(self, url: str, body: bytes, headers: dict) -> SendResult:
        started = time.monotonic()
        try:
            parsed = self.parse(url)
            addresses = await self.checked_addresses(parsed.host)
        except UrlRefused as refused:
            return SendResult(status=None, latency_ms=0.0, error=refused.message, blocked=True)
        return await self._send(parsed, addresses, body, headers, started)

    async def _send(self, url: URL, addresses: list[Address], body: bytes, headers: dict,
                    started: float) -> SendResult:
        timeout = aiohttp.ClientTimeout(total=self.settings.webhook_timeout_seconds,
                                        sock_connect=self.settings.webhook_connect_timeout_seconds)
        connector = aiohttp.TCPConnector(resolver=PinnedResolver(url.host, addresses), use_dns_cache=False,
                                         force_close=True)
        try:
            async with (aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False,
                                              auto_decompress=False) as session,
                        session.post(url, data=body, headers={"user-agent": USER_AGENT, **headers},
                                     allow_redirects=False) as response):
                answer = await response.content.read(self.settings.webhook_max_response_bytes)
                return SendResult(status=response.status, latency_ms=_since(started), error=None, blocked=False,
                                  body=answer)
        except TimeoutError:
            return SendResult(status=None, latency_ms=_since(started), error="timed out", blocked=False)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return SendResult(status=None, latency_ms=_since(started), error=_describe(exc), blocked=False)


def _since(started: float) -> float:
    return (time.monotonic() - started) * 1000.0


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
