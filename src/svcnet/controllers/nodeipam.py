"""Node IPAM: every Node gets spec.podCIDR(s) from --cluster-cidr, one block of
--node-cidr-mask-size (/24 by default for IPv4, /64 for IPv6) each, as kube-controller-manager's
range allocator hands them out; the state is the podCIDRs Nodes already carry."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

Obj = dict[str, Any]


class CIDRExhaustedError(Exception):
    pass


def default_mask(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    return 24 if network.version == 4 else 64


def node_cidrs(node: Obj) -> list[str]:
    spec = node.get("spec", {})
    cidrs = list(spec.get("podCIDRs") or [])
    if not cidrs and spec.get("podCIDR"):
        cidrs = [spec["podCIDR"]]
    return cidrs


def next_free(cluster_cidr: str, mask: int | None, taken: Iterable[str]) -> str:
    """The lowest block of the cluster CIDR that no Node holds."""
    network = ipaddress.ip_network(cluster_cidr, strict=False)
    prefix = mask or default_mask(network)
    if prefix < network.prefixlen:
        raise ValueError(f"node mask /{prefix} is larger than the cluster CIDR {cluster_cidr}")
    used = set()
    for cidr in taken:
        try:
            used.add(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            continue
    for block in network.subnets(new_prefix=prefix):
        if not any(block.overlaps(u) for u in used):
            return str(block)
    raise CIDRExhaustedError(f"no free /{prefix} left in cluster CIDR {cluster_cidr}")
