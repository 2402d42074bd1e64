"""The pod sandbox: a network namespace with eth0, one end of a veth pair whose other end is
a port of the node's bridge, an address from the node's podCIDR and a default route via the
bridge (what the bridge CNI plugin sets up), plus the files `ip netns exec` bind-mounts over
/etc for processes in that namespace (/etc/netns/NAME/resolv.conf and hosts)."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from svcnet.node import netns

ETC_NETNS = Path("/etc/netns")


@dataclass
class NodeNetwork:
    """Where pods of this node attach: NETNS (None = the agent's own) and its bridge."""

    netns: str | None
    bridge: str
    gateway: str
    prefixlen: int

    def ensure_bridge(self) -> None:
        res = netns.ip(self.netns, "link", "show", self.bridge, check=False)
        if res.returncode != 0:
            netns.ip(self.netns, "link", "add", self.bridge, "type", "bridge")
        netns.ip(self.netns, "addr", "replace", f"{self.gateway}/{self.prefixlen}", "dev", self.bridge)
        netns.ip(self.netns, "link", "set", self.bridge, "up")
        netns.sysctl(self.netns, "net.ipv4.ip_forward", "1")
        # As on a Kubernetes node: bridged pod-to-pod traffic must cross iptables, or a pod
        # reaching a service whose endpoint is on the same bridge never gets un-DNATed.
        netns.sysctl(self.netns, "net.bridge.bridge-nf-call-iptables", "1")


def host_veth_name(uid: str) -> str:
    # 15 characters at most (IFNAMSIZ); derived from the uid so a restarted agent finds it.
    return "veth" + hashlib.sha1(uid.encode()).hexdigest()[:8]


def create(node: NodeNetwork, pod_netns: str, uid: str, ip: str, resolv_conf: str, hosts: str) -> None:
    write_etc(pod_netns, resolv_conf, hosts)
    netns.add(pod_netns)
    veth = host_veth_name(uid)
    have = netns.ip(pod_netns, "link", "show", "eth0", check=False).returncode == 0
    if not have:
        # Made inside the pod's namespace and the peer moved straight to the node's, so neither
        # name ever appears in the machine's own namespace.
        node_ns = ["netns", node.netns] if node.netns else []
        netns.ip(pod_netns, "link", "add", "eth0", "type", "veth", "peer", "name", veth, *node_ns)
    netns.ip_batch(
        pod_netns,
        [
            f"addr replace {ip}/{node.prefixlen} dev eth0",
            "link set eth0 up",
            f"route replace default via {node.gateway} dev eth0",
        ],
    )
    netns.ip_batch(
        node.netns,
        [
            f"link set {veth} master {node.bridge}",
            # hairpin, as the bridge plugin sets it: a pod reaching its own Service is DNATed back
            # to itself and the frame must leave through the port it came in on.
            f"link set {veth} type bridge_slave hairpin on",
            f"link set {veth} up",
        ],
    )


def write_etc(pod_netns: str, resolv_conf: str, hosts: str) -> None:
    d = ETC_NETNS / pod_netns
    d.mkdir(parents=True, exist_ok=True)
    (d / "resolv.conf").write_text(resolv_conf)
    (d / "hosts").write_text(hosts)


def destroy(pod_netns: str) -> None:
    if not pod_netns or "/" in pod_netns or pod_netns in (".", ".."):
        return  # never /etc/netns itself or a path outside it
    # Deleting the namespace deletes eth0 and with it the veth's peer on the bridge.
    netns.delete(pod_netns)
    shutil.rmtree(ETC_NETNS / pod_netns, ignore_errors=True)
