"""Address helpers shared by the parsers and the tracer.

Addresses are kept as (version, integer) and networks as (version, network-int, mask-int): a
trace compares one packet against thousands of rules, and integer masking is far cheaper than
building ipaddress objects for every comparison.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

Addr = tuple[int, int]  # (ip version, address as int)
Net = tuple[int, int, int]  # (ip version, network as int, mask as int)

LOOPBACK_NETS: tuple[Net, ...] = ()  # filled below


@lru_cache(maxsize=65536)
def parse_addr(text: str) -> Addr:
    """Parse one IP address; ValueError when it is not one."""
    ip = ipaddress.ip_address(text.strip("[]"))
    return (ip.version, int(ip))


@lru_cache(maxsize=65536)
def parse_net(text: str) -> Net:
    """Parse an address or a CIDR (also `a.b.c.d/255.0.0.0`); host bits are ignored as
    iptables and nft ignore them. ValueError when it is neither."""
    if "/" not in text:
        version, value = parse_addr(text)
        bits = 32 if version == 4 else 128
        return (version, value, (1 << bits) - 1)
    net = ipaddress.ip_network(text, strict=False)
    return (net.version, int(net.network_address), int(net.netmask))


def net_contains(net: Net, addr: Addr) -> bool:
    return net[0] == addr[0] and (addr[1] & net[2]) == net[1]


def format_addr(addr: Addr) -> str:
    return str(ipaddress.IPv6Address(addr[1]) if addr[0] == 6 else ipaddress.IPv4Address(addr[1]))


def format_net(net: Net) -> str:
    bits = 32 if net[0] == 4 else 128
    prefix = bin(net[2]).count("1")
    base = format_addr((net[0], net[1]))
    return base if prefix == bits else f"{base}/{prefix}"


def format_endpoint(addr: Addr, port: int | None) -> str:
    text = format_addr(addr)
    if port is None:
        return text
    return f"[{text}]:{port}" if addr[0] == 6 else f"{text}:{port}"


LOOPBACK_NETS = (parse_net("127.0.0.0/8"), parse_net("::1/128"))


class LocalAddresses:
    """What `addrtype LOCAL` / `fib ... type local` match: the node's IPs plus loopback."""

    def __init__(self, node_ips: list[str]) -> None:
        self.node_ips = [parse_addr(ip) for ip in node_ips]
        self._set = set(self.node_ips)

    def is_local(self, addr: Addr) -> bool:
        return addr in self._set or any(net_contains(n, addr) for n in LOOPBACK_NETS)
