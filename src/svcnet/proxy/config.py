"""Node configuration shared by every backend (the `--node-*` flags of `svcnet proxy`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from svcnet.proxy.ipnet import IPV4, IPV6, family_of, parse_cidr, parse_ip


@dataclass
class NodeConfig:
    family: str = IPV4
    node_name: str = ""
    node_ips: list[str] = field(default_factory=list)  # primary first
    cluster_cidrs: list[str] = field(default_factory=list)  # local-traffic detector
    masquerade_all: bool = False
    masquerade_bit: int = 14
    nodeport_addresses: list[str] = field(default_factory=list)  # CIDRs; empty = all local addresses
    localhost_nodeports: bool = True
    service_cidrs: list[str] = field(default_factory=list)
    node_labels: dict[str, str] = field(default_factory=dict)
    # Addresses on the node's interfaces, used to expand --nodeport-addresses. The daemon
    # reads them from the kernel; offline rendering uses node_ips plus loopback.
    local_addresses: list[str] | None = None
    # What the node's iptables supports (upstream probes these at start-up).
    random_fully: bool = True
    conntrack_tcp_liberal: bool = False
    nfacct: bool = False
    # Upstream formats the mark with Go's "%#08x" (0x00004000); its unit tests inject "0x4000".
    short_masquerade_mark: bool = False

    @property
    def is_ipv6(self) -> bool:
        return self.family == IPV6

    @property
    def masquerade_mark(self) -> str:
        value = 1 << self.masquerade_bit
        return hex(value) if self.short_masquerade_mark else f"0x{value:08x}"

    @property
    def primary_node_ip(self) -> str | None:
        for text in self.node_ips:
            addr = parse_ip(text)
            if addr is not None and family_of(addr) == self.family:
                return str(addr)
        return None

    @property
    def local_cidr(self) -> str | None:
        """The cluster CIDR of this family: the local-traffic detector (None = no detector)."""
        for text in self.cluster_cidrs:
            net = parse_cidr(text)
            if net is not None and family_of(net) == self.family:
                return str(net)
        return None

    def nodeport_cidrs(self) -> list:
        nets = [parse_cidr(c.strip()) for c in self.nodeport_addresses if c.strip()]
        return [n for n in nets if n is not None and family_of(n) == self.family]

    @property
    def nodeports_match_all(self) -> bool:
        """No CIDR of this family given, or a zero CIDR (0.0.0.0/0, ::/0): every local address."""
        nets = self.nodeport_cidrs()
        return not nets or any(n.prefixlen == 0 for n in nets)

    def effective_localhost_nodeports(self) -> bool:
        """localhostNodePorts only applies when nodeport addresses include IPv4 loopback."""
        if not self.localhost_nodeports or self.is_ipv6:
            return False
        if self.nodeports_match_all:
            return True
        loopback = parse_ip("127.0.0.1")
        return any(loopback in net for net in self.nodeport_cidrs())

    def nodeport_ips(self) -> list[str]:
        """The node IPs matching --nodeport-addresses (GetNodeIPs)."""
        candidates = self.local_addresses
        if candidates is None:
            candidates = [*self.node_ips, "::1" if self.is_ipv6 else "127.0.0.1"]
        nets = self.nodeport_cidrs()
        out: list[str] = []
        for text in candidates:
            addr = parse_ip(text)
            if addr is None or family_of(addr) != self.family:
                continue
            if any(addr in net for net in nets) and str(addr) not in out:
                out.append(str(addr))
        return out
