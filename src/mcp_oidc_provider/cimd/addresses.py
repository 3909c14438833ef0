"""Which IP addresses the CIMD fetcher may connect to (draft §8.6: never a special-use address, RFC 6890).

The table below follows the IANA IPv4 and IPv6 Special-Purpose Address Registries. Forms that
carry an IPv4 address inside an IPv6 one (IPv4-mapped ``::ffff:0:0/96``, 6to4 ``2002::/16``,
NAT64 ``64:ff9b::/96``) are judged by the embedded IPv4 address, so ``::ffff:127.0.0.1`` is loopback
and ``64:ff9b::8.8.8.8`` is public. Teredo (``2001::/32``) is refused outright: it is a tunnel whose
client address is obfuscated and no metadata host needs it. ``ipaddress``'s own ``is_global``
is applied last as a second opinion.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

Refusal = Literal[
    "cloud-metadata",
    "unspecified",
    "loopback",
    "private",
    "shared",
    "link-local",
    "multicast",
    "reserved",
    "documentation",
    "benchmarking",
    "protocol-assignment",
    "teredo",
    "not-global",
    "not-an-address",
]

# Instance metadata endpoints: AWS/GCP/Azure/OCI IMDS, AWS ECS task metadata, AWS IMDS over IPv6,
# Alibaba Cloud, Azure WireServer (the last one is in public address space).
CLOUD_METADATA: frozenset[Address] = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "168.63.129.16")
)

_V4: tuple[tuple[str, Refusal], ...] = (
    ("0.0.0.0/8", "unspecified"),  # "this network", RFC 791
    ("10.0.0.0/8", "private"),  # RFC 1918
    ("100.64.0.0/10", "shared"),  # CGNAT, RFC 6598
    ("127.0.0.0/8", "loopback"),  # RFC 1122
    ("169.254.0.0/16", "link-local"),  # RFC 3927
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "protocol-assignment"),  # RFC 6890
    ("192.0.2.0/24", "documentation"),  # RFC 5737
    ("192.88.99.0/24", "reserved"),  # 6to4 relay anycast, deprecated by RFC 7526
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),  # RFC 2544
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),  # RFC 5771
    ("240.0.0.0/4", "reserved"),  # RFC 1112, includes 255.255.255.255
)

_V6: tuple[tuple[str, Refusal], ...] = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "reserved"),  # IPv4-compatible, deprecated by RFC 4291 §2.5.5.1
    ("64:ff9b:1::/48", "private"),  # local-use NAT64, RFC 8215
    ("100::/64", "reserved"),  # discard-only, RFC 6666
    ("2001::/32", "teredo"),  # RFC 4380
    ("2001::/23", "protocol-assignment"),  # RFC 2928
    ("2001:db8::/32", "documentation"),  # RFC 3849
    ("3fff::/20", "documentation"),  # RFC 9637
    ("5f00::/16", "reserved"),  # SRv6 SIDs, RFC 9602
    ("fc00::/7", "private"),  # unique local, RFC 4193
    ("fe80::/10", "link-local"),
    ("fec0::/10", "link-local"),  # site-local, deprecated by RFC 3879
    ("ff00::/8", "multicast"),
)

_V4_NETS = tuple((ipaddress.IPv4Network(n), r) for n, r in _V4)
_V6_NETS = tuple((ipaddress.IPv6Network(n), r) for n, r in _V6)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, 6to4 or well-known-prefix NAT64 address stands for."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: str | Address) -> Refusal | None:
    """Why the fetcher must not connect to ``address``; ``None`` when it is a public unicast address."""
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    except ValueError:
        return "not-an-address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
    if ip in CLOUD_METADATA:
        return "cloud-metadata"
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None:
            return refusal(inner)
        nets: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Refusal], ...] = _V6_NETS
    else:
        nets = _V4_NETS
    for net, why in nets:
        if ip in net:
            return why
    if not ip.is_global:
        return "not-global"
    return None


def is_loopback(address: str | Address) -> bool:
    """Loopback, also in an embedding form such as ``::ffff:127.0.0.1``: the only class ``allow_loopback`` opens."""
    return refusal(address) == "loopback"
