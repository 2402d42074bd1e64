"""Load-balancer IP assignment for bare metal, in the spirit of MetalLB and k3s's ServiceLB:
addresses come from configured pools, the state is what Services' status already holds (so a
restart or a second controller derives the same view), and a Service may ask for an address
with spec.loadBalancerIP or the svcnet.io/lb-ip annotation."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

LB_IP_ANNOTATION = "svcnet.io/lb-ip"

Obj = dict[str, Any]


class PoolExhaustedError(Exception):
    pass


class RequestedIPError(Exception):
    pass


def handles(service: Obj) -> bool:
    """Only LoadBalancer Services without a loadBalancerClass are ours (another class is some
    other controller's job, as upstream's service controller leaves them alone)."""
    spec = service.get("spec", {})
    return spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerClass")


def ingress_ips(service: Obj) -> list[str]:
    ingress = service.get("status", {}).get("loadBalancer", {}).get("ingress") or []
    return [i["ip"] for i in ingress if i.get("ip")]


def requested_ip(service: Obj) -> str | None:
    ann = (service.get("metadata", {}).get("annotations") or {}).get(LB_IP_ANNOTATION)
    return ann or service.get("spec", {}).get("loadBalancerIP") or None


@dataclass
class LBPools:
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]

    @classmethod
    def parse(cls, cidrs: Iterable[str]) -> LBPools:
        return cls([ipaddress.ip_network(c, strict=False) for c in cidrs])

    def contains(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in n for n in self.networks)

    def candidates(self) -> Iterable[str]:
        """Usable addresses in pool order, lowest first (network and broadcast skipped for
        IPv4 pools larger than a /31, as MetalLB does by default)."""
        for net in self.networks:
            hosts = net.hosts() if net.version == 4 and net.prefixlen < 31 else iter(net)
            for addr in hosts:
                yield str(addr)

    def assign(self, service: Obj, in_use: dict[str, str]) -> str:
        """The address ``service`` should have. ``in_use`` maps addresses to the key
        ("ns/name") of the Service holding them, including this one's current address."""
        me = f"{service['metadata'].get('namespace', '')}/{service['metadata']['name']}"
        wanted = requested_ip(service)
        if wanted:
            if not self.contains(wanted):
                raise RequestedIPError(f"requested IP {wanted} is not in any configured pool")
            holder = in_use.get(wanted)
            if holder and holder != me:
                raise RequestedIPError(f"requested IP {wanted} is already assigned to {holder}")
            return wanted
        for current in ingress_ips(service):
            if self.contains(current) and in_use.get(current) in (None, me):
                return current  # keep what it has
        for candidate in self.candidates():
            if candidate not in in_use:
                return candidate
        raise PoolExhaustedError("no available IPs in the load-balancer pools")
