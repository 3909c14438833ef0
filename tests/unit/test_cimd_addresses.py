"""Which addresses the CIMD fetcher may contact (draft §8.6, RFC 6890 special-use registries)."""

from __future__ import annotations

import pytest

from mcp_oidc_provider.cimd import refusal
from mcp_oidc_provider.cimd.addresses import embedded_ipv4, is_loopback

pytestmark = pytest.mark.unit

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",  # IPv4-mapped public
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "64:ff9b::808:808",  # NAT64 well-known prefix of 8.8.8.8
]

REFUSED = [
    # loopback
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    # private
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("64:ff9b:1::a00:1", "private"),
    # link-local
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%1", "link-local"),
    ("fec0::1", "link-local"),
    # shared address space / CGNAT
    ("100.64.0.1", "shared"),
    ("100.127.255.254", "shared"),
    # multicast
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    # unspecified
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("::", "unspecified"),
    # reserved
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.88.99.1", "reserved"),
    ("100::1", "reserved"),
    ("::10.0.0.1", "reserved"),  # IPv4-compatible, deprecated
    # documentation / benchmarking / protocol assignments
    ("192.0.2.1", "documentation"),
    ("198.51.100.1", "documentation"),
    ("203.0.113.1", "documentation"),
    ("2001:db8::1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("192.0.0.1", "protocol-assignment"),
    # cloud metadata endpoints
    ("169.254.169.254", "cloud-metadata"),
    ("169.254.170.2", "cloud-metadata"),
    ("fd00:ec2::254", "cloud-metadata"),
    ("100.100.100.200", "cloud-metadata"),
    ("168.63.129.16", "cloud-metadata"),
    # IPv4-mapped forms
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "cloud-metadata"),
    ("::ffff:100.64.0.1", "shared"),
    ("::ffff:0.0.0.0", "unspecified"),
    # 6to4 forms
    ("2002:7f00:1::1", "loopback"),
    ("2002:a00:1::1", "private"),
    ("2002:a9fe:a9fe::1", "cloud-metadata"),
    # NAT64 well-known prefix forms
    ("64:ff9b::7f00:1", "loopback"),
    ("64:ff9b::c0a8:101", "private"),
    ("64:ff9b::a9fe:a9fe", "cloud-metadata"),
    # Teredo, whatever it embeds
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "teredo"),
    ("2001::ffff:ffff", "teredo"),
]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_unicast_addresses_are_allowed(address: str) -> None:
    assert refusal(address) is None


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_special_use_addresses_are_refused_with_their_class(address: str, why: str) -> None:
    assert refusal(address) == why


def test_text_that_is_no_address_is_refused() -> None:
    assert refusal("localhost") == "not-an-address"
    assert refusal("1.2.3") == "not-an-address"


def test_loopback_in_any_embedding_counts_as_loopback_and_nothing_else_does() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    assert is_loopback("64:ff9b::7f00:1") and is_loopback("2002:7f00:1::")
    assert not is_loopback("10.0.0.1") and not is_loopback("169.254.169.254") and not is_loopback("8.8.8.8")


def test_embedded_ipv4_is_read_from_mapped_6to4_and_nat64_forms() -> None:
    import ipaddress

    assert str(embedded_ipv4(ipaddress.IPv6Address("::ffff:10.1.2.3"))) == "10.1.2.3"
    assert str(embedded_ipv4(ipaddress.IPv6Address("2002:a01:203::"))) == "10.1.2.3"
    assert str(embedded_ipv4(ipaddress.IPv6Address("64:ff9b::a01:203"))) == "10.1.2.3"
    assert embedded_ipv4(ipaddress.IPv6Address("2606:4700::1")) is None
