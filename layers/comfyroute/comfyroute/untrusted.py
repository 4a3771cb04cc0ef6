"""Fetching a URL an executor handed us (a RunPod worker's ``s3_url`` output), as untrusted input.

The URL is the executor's choice, so it could name anything the backend can reach: the
instance metadata service, a VPC-internal host, a loopback port. Before any request the host
is resolved and every address it resolves to must be a public one; only https is spoken;
redirects are never followed (a public host could redirect to a private one); the body is
read up to a size cap. ``allow_networks`` (config ``UNTRUSTED_FETCH_ALLOW``, CIDRs) exempts
the networks listed from the address and scheme checks: the tests' loopback servers, or a
deployment's own private storage.

The address is checked at resolution, not at connection: a host whose DNS answer changes
between the two (rebinding) is not caught here; the Lambda functions run outside a VPC, where
private addresses lead nowhere of ours.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Union
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import requests

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]  # noqa: UP007
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]  # noqa: UP007
Resolver = Callable[[str, int], Sequence[str]]

CHUNK_BYTES = 64 * 1024
TIMEOUT = (5.0, 30.0)


class FetchRefused(Exception):
    """The URL was not fetched, or its answer not taken; ``str()`` says why, without the URL's
    query (presigned URLs carry credentials there)."""


def parse_networks(spec: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    """``"127.0.0.0/8, ::1"`` (or a list of such) as networks; a bare address is a /32 (/128)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip())


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _public(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def describe_url(url: str) -> str:
    """The URL as errors show it: scheme, host and path, never the query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"[:200]


def check_url(url: str, allow_networks: Sequence[IPNetwork] = (), resolver: Resolver = _system_resolver) -> None:
    """Refuse (``FetchRefused``) a URL the backend must not fetch."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise FetchRefused("the URL is malformed") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchRefused("only http(s) URLs with a host are fetched")
    if parts.username is not None or parts.password is not None:
        raise FetchRefused("URLs carrying user:password@ are not fetched")
    host = parts.hostname
    try:
        addresses = {ipaddress.ip_address(a.split("%")[0]) for a in resolver(host, port or 443)}
    except (OSError, UnicodeError, ValueError):
        raise FetchRefused(f"the host {host[:100]} does not resolve") from None
    if not addresses:
        raise FetchRefused(f"the host {host[:100]} does not resolve")
    if all(any(ip in net for net in allow_networks) for ip in addresses):
        return
    if parts.scheme != "https":
        raise FetchRefused("only https URLs are fetched")
    private = sorted(str(ip) for ip in addresses if not _public(ip))
    if private:
        raise FetchRefused(f"the host {host[:100]} resolves to a non-public address ({private[0]})")


def fetch_untrusted(
    url: str,
    *,
    max_bytes: int,
    allow_networks: Sequence[IPNetwork] = (),
    session: requests.Session | None = None,
    resolver: Resolver = _system_resolver,
) -> tuple[bytes, str | None]:
    """The body at ``url`` (at most ``max_bytes``) and its Content-Type, or ``FetchRefused``."""
    # Imported here: the poll task loads this module on every start, and fetches only RunPod's files.
    import requests

    check_url(url, allow_networks, resolver)
    http = session or requests.Session()
    try:
        with http.get(url, stream=True, allow_redirects=False, timeout=TIMEOUT) as resp:
            if 300 <= resp.status_code < 400:
                raise FetchRefused(f"the server answered a redirect ({resp.status_code}), which is not followed")
            if resp.status_code != 200:
                raise FetchRefused(f"the server answered {resp.status_code}")
            declared = resp.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise FetchRefused(f"the file is {declared} bytes; the limit is {max_bytes}")
            body = bytearray()
            for chunk in resp.iter_content(CHUNK_BYTES):
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise FetchRefused(f"the file is over the limit of {max_bytes} bytes")
            return bytes(body), resp.headers.get("Content-Type")
    except requests.RequestException as exc:
        raise FetchRefused(f"the download failed ({type(exc).__name__})") from None
