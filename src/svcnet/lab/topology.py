"""The lab's namespaces and links (no processes).

    external (172.30.0.2) --+
    node-1   (172.30.0.11) -+-- br0 in the "net" namespace (172.30.0.1: the underlay, cluster DNS)
    node-2   (172.30.0.12) -+
    ...

Every namespace name starts with the lab's unique prefix; every link is created inside a lab
namespace (never in the machine's own), so deleting the namespaces removes everything.
Pod namespaces hang off each node's own bridge (made by the node agent)."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field

from svcnet.node import netns

UNDERLAY = ipaddress.ip_network("172.30.0.0/24")
GATEWAY_IP = "172.30.0.1"
EXTERNAL_IP = "172.30.0.2"
LB_POOL = "172.30.1.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/12"
CLUSTER_DNS_IP = "10.96.0.10"


def new_prefix() -> str:
    return "svl" + secrets.token_hex(2)


@dataclass
class LabNode:
    name: str
    netns: str
    ip: str
    pod_cidr: str


@dataclass
class Topology:
    prefix: str
    nodes: list[LabNode] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    @property
    def net(self) -> str:
        return f"{self.prefix}-net"

    @property
    def external(self) -> str:
        return f"{self.prefix}-ext"

    @classmethod
    def plan(cls, prefix: str, n_nodes: int) -> Topology:
        topo = cls(prefix)
        for i in range(1, n_nodes + 1):
            topo.nodes.append(
                LabNode(
                    f"node-{i}",
                    f"{prefix}-node-{i}",
                    str(UNDERLAY.network_address + 10 + i),
                    f"10.244.{i}.0/24",
                )
            )
        return topo

    def _ns(self, name: str) -> None:
        netns.add(name)
        self.created.append(name)

    def _attach(self, ns: str, port: str, ip: str) -> None:
        """eth0 in NS, its peer PORT on the underlay bridge."""
        netns.ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", self.net)
        netns.ip_batch(ns, [f"addr add {ip}/{UNDERLAY.prefixlen} dev eth0", "link set eth0 up"])
        netns.ip_batch(self.net, [f"link set {port} master br0", f"link set {port} up"])

    def build(self) -> None:
        self._ns(self.net)
        netns.ip_batch(
            self.net,
            [
                "link add br0 type bridge",
                f"addr add {GATEWAY_IP}/{UNDERLAY.prefixlen} dev br0",
                "link set br0 up",
            ],
        )
        netns.sysctl(self.net, "net.ipv4.ip_forward", "1")
        self._ns(self.external)
        self._attach(self.external, "ext", EXTERNAL_IP)
        for i, node in enumerate(self.nodes, 1):
            self._ns(node.netns)
            self._attach(node.netns, f"n{i}", node.ip)
            netns.ip(node.netns, "route", "add", "default", "via", GATEWAY_IP)
            netns.sysctl(node.netns, "net.ipv4.ip_forward", "1")
            # Nodes reach each other on the same link: no ICMP redirects through the gateway.
            for conf in ("all", "default", "eth0"):
                netns.sysctl(node.netns, f"net.ipv4.conf.{conf}.send_redirects", "0")
        # Services and pods are reached through the nodes; the outside world has no route to
        # them unless the lab adds one (load-balancer IPs, see routes.py).

    def destroy(self) -> None:
        for name in reversed(self.created):
            netns.kill_processes(name)
            netns.delete(name)
        self.created.clear()


def sweep(prefix: str) -> list[str]:
    """Remove every namespace whose name starts with PREFIX (and the processes in them):
    the last line of cleanup, also for a lab that crashed. Returns what it removed."""
    import shutil

    from svcnet.node.sandbox import ETC_NETNS

    removed = []
    for name in netns.list_names(prefix):
        netns.kill_processes(name)
        netns.delete(name)
        removed.append(name)
    if ETC_NETNS.is_dir():
        for d in ETC_NETNS.iterdir():
            if d.name.startswith(prefix):
                shutil.rmtree(d, ignore_errors=True)
    return removed
