"""IP parsing the way kube-proxy reads addresses from the API.

kube-proxy parses with netutils.ParseIPSloppy / ParseCIDRSloppy, which keep Go's pre-1.17
behaviour: IPv4 octets with leading zeros are read as *decimal* ("010.0.0.1" is 10.0.0.1).
Python's ipaddress rejects such strings, so IPv4 is parsed here by hand before falling back
to ipaddress for IPv6.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

IPV4 = "IPv4"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_V4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")  # no leading zeros: already canonical
IPV6 = "IPv6"


def _sloppy_v4(text: str) -> ipaddress.IPv4Address | None:
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not part or not part.isdigit() or not part.isascii():
            return None
        octet = int(part, 10)
        if octet > 255:
            return None
        value = (value << 8) | octet
    return ipaddress.IPv4Address(value)


@lru_cache(maxsize=65536)
def parse_ip(text: str) -> IPAddress | None:
    """The address ParseIPSloppy would return, or None when it would return nil."""
    if not isinstance(text, str) or not text:
        return None
    if ":" not in text:
        return _sloppy_v4(text)
    try:
        addr = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    # Go renders IPv4-mapped IPv6 addresses as plain IPv4 and treats them as IPv4.
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@lru_cache(maxsize=262144)
def normalize_ip(text: str) -> str | None:
    """The canonical text of an address as ParseIPSloppy reads it, or None if unparsable.

    A fast path for the common case (already canonical IPv4): the proxy normalizes every
    endpoint address of every slice, so this is on the hot path at 10k services.
    """
    if not isinstance(text, str):
        return None
    if _CANONICAL_V4.fullmatch(text):
        return text
    addr = parse_ip(text)
    return None if addr is None else str(addr)


def parse_cidr(text: str) -> IPNetwork | None:
    """ParseCIDRSloppy: address (sloppy IPv4) / prefix; host bits are masked as Go does."""
    if not isinstance(text, str) or "/" not in text:
        return None
    addr_text, _, prefix_text = text.partition("/")
    if not prefix_text.isdigit():
        return None
    addr = parse_ip(addr_text) if ":" not in addr_text else _parse_v6_exact(addr_text)
    if addr is None:
        return None
    prefix = int(prefix_text)
    if prefix > addr.max_prefixlen:
        return None
    return ipaddress.ip_network(f"{addr}/{prefix}", strict=False)


def _parse_v6_exact(text: str) -> ipaddress.IPv6Address | None:
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None


def family_of(addr: IPAddress | IPNetwork) -> str:
    return IPV6 if addr.version == 6 else IPV4


def family_of_text(text: str) -> str | None:
    addr = parse_ip(text)
    return None if addr is None else family_of(addr)


def join_host_port(ip: str, port: int) -> str:
    """net.JoinHostPort: IPv6 hosts go in brackets."""
    if ":" in ip:
        return f"[{ip}]:{port}"
    return f"{ip}:{port}"
