"""Fetching a Client ID Metadata Document without becoming an SSRF proxy (draft §5, §8.6, §8.7).

One fetch is: parse the URL (https only), resolve the host once, refuse unless every resolved
address is public (:mod:`.addresses`), then connect to exactly those checked addresses, so a
DNS answer that changes between check and connect (rebinding) is never used. TLS still runs
against the hostname: SNI, the ``Host`` header and certificate verification all use the name
from the URL. No redirect is followed, only ``200`` with a JSON content type is accepted, the
body is read in a stream and abandoned at ``max_bytes``, and one deadline covers resolution,
connect, TLS and body.

Built on ``httpcore2`` (the transport under ``httpx2``) because its network-backend hook is the
public seam where the connect address can be pinned without a second DNS lookup.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpcore2

from .addresses import is_loopback, refusal
from .errors import (
    CimdAddressRefused,
    CimdContentTypeRefused,
    CimdDocumentInvalid,
    CimdFetchFailed,
    CimdHttpStatus,
    CimdRedirectRefused,
    CimdTimeout,
    CimdTooLarge,
    CimdUrlInvalid,
)

#: Draft §8.7: "The recommended maximum size to read is 5 kilobytes."
DEFAULT_MAX_BYTES = 5 * 1024
DEFAULT_TIMEOUT = 5.0
USER_AGENT = "mcp-oidc-provider-cimd/1"

#: ``(host, port) -> IP address strings``. Injected in tests to make a name resolve anywhere.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (``getaddrinfo`` off the event loop)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class FetchedDocument:
    """A parsed JSON object from ``url`` plus the ``Cache-Control`` header it came with."""

    url: str
    document: dict[str, Any]
    cache_control: str | None


class _PinnedBackend(httpcore2.AsyncNetworkBackend):
    """Connects to the already-checked addresses, whatever host name the connection pool asks for."""

    def __init__(self, addresses: Sequence[str]) -> None:
        self._addresses = tuple(addresses)
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 -- httpcore2 interface
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore2.AsyncNetworkStream:
        last: Exception = httpcore2.ConnectError("no address to connect to")
        for address in self._addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except httpcore2.ConnectError as exc:
                last = exc
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 -- httpcore2 interface
        socket_options: Any = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("unix sockets are not used for client metadata documents")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _is_json_media_type(content_type: str | None) -> bool:
    # Draft §4: application/json, or a more specific application/<AS-defined>+json; parameters allowed.
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _refuse_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers reading one document differently is how a checked value gets swapped.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError("duplicate member")
        result[key] = value
    return result


def parse_json_object(body: bytes) -> dict[str, Any]:
    """RFC 8259 JSON object in UTF-8; duplicates, NaN and deep nesting refused."""
    try:
        value = json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicate_keys, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CimdDocumentInvalid("The client metadata document is not valid JSON") from exc
    if not isinstance(value, dict):
        raise CimdDocumentInvalid("The client metadata document is not a JSON object")
    return value


class CimdFetcher:
    """SSRF-safe GET of one client metadata document.

    ``allow_loopback`` (development only; the caller logs it loudly) opens loopback addresses and
    nothing else (draft §8.6 allows exactly this relaxation for local testing). ``ssl_context`` or
    ``ca_bundle`` replace the system trust store (tests use a ``trustme`` CA).
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        ssl_context: ssl.SSLContext | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        allow_loopback: bool = False,
        resolver: Resolver | None = None,
    ) -> None:
        if timeout <= 0 or max_bytes <= 0:
            raise ValueError("timeout and max_bytes must be positive")
        if ssl_context is not None and ca_bundle is not None:
            raise ValueError("give ssl_context or ca_bundle, not both")
        if ssl_context is None:
            ssl_context = ssl.create_default_context(cafile=os.fspath(ca_bundle) if ca_bundle else None)
        if ssl_context.verify_mode != ssl.CERT_REQUIRED or not ssl_context.check_hostname:
            raise ValueError("the ssl_context must verify certificates and host names")
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.allow_loopback = allow_loopback
        self._ssl_context = ssl_context
        self._resolver: Resolver = resolver or system_resolver

    async def fetch(self, url: str) -> FetchedDocument:
        """GET ``url`` and return its JSON object; raises a :class:`.errors.CimdError` subclass."""
        host, port = self._target(url)
        try:
            with anyio.fail_after(self.timeout):
                addresses = await self._resolve(host, port)
                return await self._get(url, addresses)
        except TimeoutError as exc:
            raise CimdTimeout() from exc

    @staticmethod
    def _target(url: str) -> tuple[str, int]:
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port or 443
        except ValueError as exc:
            raise CimdUrlInvalid() from exc
        if parts.scheme != "https" or not host or parts.username is not None or parts.password is not None:
            raise CimdUrlInvalid(
                "Client metadata documents are fetched over https only, from a host without user information"
            )
        if not host.isascii():
            raise CimdUrlInvalid("The client_id host must be written in ASCII (punycode)")
        return host, port

    async def _resolve(self, host: str, port: int) -> list[str]:
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                addresses = list(await self._resolver(host, port))
            except OSError as exc:
                raise CimdFetchFailed("The client_id host name could not be resolved") from exc
        if not addresses:
            raise CimdFetchFailed("The client_id host name could not be resolved")
        for address in addresses:
            # Draft §8.6: every address must be acceptable, not just the first one we would try.
            if refusal(address) is not None and not (self.allow_loopback and is_loopback(address)):
                raise CimdAddressRefused()
        return addresses

    async def _get(self, url: str, addresses: Sequence[str]) -> FetchedDocument:
        timeouts = {"connect": self.timeout, "read": self.timeout, "write": self.timeout, "pool": self.timeout}
        headers = [
            (b"Accept", b"application/json"),
            (b"Accept-Encoding", b"identity"),
            (b"User-Agent", USER_AGENT.encode()),
        ]
        try:
            async with (
                httpcore2.AsyncConnectionPool(
                    ssl_context=self._ssl_context,
                    network_backend=_PinnedBackend(addresses),
                    max_connections=1,
                    http1=True,
                    http2=False,
                    retries=0,
                ) as pool,
                pool.stream("GET", url, headers=headers, extensions={"timeout": timeouts}) as response,
            ):
                status = response.status
                header_map = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
                # Draft §5: MUST NOT follow redirects; only 200 is a document.
                if 300 <= status < 400:
                    raise CimdRedirectRefused()
                if status >= 500 or status == 429:
                    raise CimdFetchFailed("The client metadata document server answered with an error")
                if status != 200:
                    raise CimdHttpStatus()
                if not _is_json_media_type(header_map.get("content-type")):
                    raise CimdContentTypeRefused()
                declared = header_map.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise CimdTooLarge()
                body = bytearray()
                async for chunk in response.aiter_stream():
                    body += chunk
                    if len(body) > self.max_bytes:
                        # Draft §8.7: stop reading at the limit and treat it as an error.
                        raise CimdTooLarge()
        except httpcore2.TimeoutException as exc:
            raise CimdTimeout() from exc
        except (httpcore2.NetworkError, httpcore2.ProtocolError, httpcore2.UnsupportedProtocol, ssl.SSLError) as exc:
            raise CimdFetchFailed() from exc
        return FetchedDocument(
            url=url, document=parse_json_object(bytes(body)), cache_control=header_map.get("cache-control")
        )
