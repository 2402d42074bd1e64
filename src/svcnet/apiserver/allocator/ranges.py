"""Allocation ranges as kube-apiserver sizes and splits them.

ClusterIPs: offset 0 is the network address + 1; IPv4 loses the network and broadcast
addresses, IPv6 ranges are capped at 65,536 entries (upstream keeps a bitmap of that size).
NodePorts: offset = port - base.

Both use upstream's static/dynamic split: the low band (KEP-3070 for IPs, KEP-3668 for ports)
is preferred for addresses users ask for, so dynamic allocation starts in the upper band and
only falls back to the low band when the upper one is full.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator
from dataclasses import dataclass

IPV6_MAX_ENTRIES = 65536


def ip_range_offset(cidr_size: int) -> int:
    """KEP-3070: min(max(16, size/16), 256); no static band for ranges of 16 or fewer."""
    if cidr_size <= 16:
        return 0
    return min(max(16, cidr_size // 16), 256)


def port_range_offset(size: int) -> int:
    """KEP-3668: min(max(16, size/32), 128); no static band for ranges of 16 or fewer."""
    if size <= 16:
        return 0
    return min(max(16, size // 32), 128)


def _scan_order(size: int, offset: int, rng: random.Random) -> Iterator[int]:
    """Dynamic allocation order: a random start in [offset, size) scanning with wrap-around,
    then the static band [0, offset) the same way."""
    upper = size - offset
    if upper > 0:
        start = rng.randrange(upper)
        for i in range(upper):
            yield offset + (start + i) % upper
    if offset > 0:
        start = rng.randrange(offset)
        for i in range(offset):
            yield (start + i) % offset


@dataclass(frozen=True)
class IPRange:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network

    @classmethod
    def parse(cls, cidr: str) -> IPRange:
        return cls(ipaddress.ip_network(cidr, strict=True))

    @property
    def family(self) -> str:
        return "IPv4" if self.network.version == 4 else "IPv6"

    @property
    def size(self) -> int:
        """How many addresses can be handed out."""
        total = self.network.num_addresses
        if self.network.version == 6:
            return min(total, IPV6_MAX_ENTRIES) - 1
        return max(total - 2, 0)

    @property
    def offset(self) -> int:
        return ip_range_offset(self.network.num_addresses)

    def ip_at(self, index: int) -> str:
        return str(self.network.network_address + 1 + index)

    def index_of(self, ip: str) -> int | None:
        """The address's offset, or None when it is not allocatable in this range."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if addr.version != self.network.version or addr not in self.network:
            return None
        index = int(addr) - int(self.network.network_address) - 1
        return index if 0 <= index < self.size else None

    def first(self) -> str:
        """The address the default/kubernetes Service holds."""
        return self.ip_at(0)

    def dynamic_order(self, rng: random.Random) -> Iterator[str]:
        for index in _scan_order(self.size, self.offset, rng):
            yield self.ip_at(index)

    def __str__(self) -> str:
        return str(self.network)


@dataclass(frozen=True)
class PortRange:
    base: int
    size: int

    @classmethod
    def parse(cls, text: str) -> PortRange:
        """'30000-32767' (inclusive), or 'N' for a single port, as --service-node-port-range."""
        low, sep, high = text.partition("-")
        try:
            first = int(low)
            last = int(high) if sep else first
        except ValueError:
            raise ValueError(f"invalid port range {text!r}: expected FIRST-LAST") from None
        if not (0 < first <= last <= 65535):
            raise ValueError(f"invalid port range {text!r}: ports must be 1-65535 and FIRST <= LAST")
        return cls(first, last - first + 1)

    @property
    def last(self) -> int:
        return self.base + self.size - 1

    @property
    def offset(self) -> int:
        return port_range_offset(self.size)

    def contains(self, port: int) -> bool:
        return self.base <= port <= self.last

    def dynamic_order(self, rng: random.Random) -> Iterator[int]:
        for index in _scan_order(self.size, self.offset, rng):
            yield self.base + index

    def __str__(self) -> str:
        return f"{self.base}-{self.last}"
