"""The lab's network controller: what flannel's host-gw backend and a cloud load balancer
(or MetalLB) would do for this topology.

- host-gw: every node namespace (and the underlay) gets a route to every other node's
  spec.podCIDR via that node's InternalIP.
- load balancers: each IP in a LoadBalancer Service's status.loadBalancer.ingress is routed
  from the `external` namespace to the nodes (ECMP): all Ready nodes for
  externalTrafficPolicy Cluster; for Local only the nodes whose healthCheckNodePort answers
  200, checked from outside as a cloud load balancer checks it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

from svcnet.client.informer import InformerSource
from svcnet.lab.topology import Topology
from svcnet.node import netns

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def node_address(node: Obj) -> str | None:
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == "InternalIP":
            return a.get("address")
    return None


def node_ready(node: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )


async def health_check(from_netns: str, ip: str, port: int, timeout: float = 1.0) -> bool:
    """GET / on the kube-proxy service health server: 200 when the node has local endpoints."""
    with netns.entered(from_netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (ip, port)), timeout)
        reader, writer = await asyncio.open_connection(sock=sock)
    except (OSError, TimeoutError):
        sock.close()
        return False
    # From here the transport owns the socket: close it through the writer, whatever happens.
    try:
        writer.write(f"GET / HTTP/1.1\r\nHost: {ip}:{port}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
    parts = line.split()
    return len(parts) > 1 and parts[1] == b"200"


class LabNetwork:
    def __init__(self, topo: Topology, source: InformerSource, health_period: float = 1.0) -> None:
        self.topo = topo
        self.source = source
        self.health_period = health_period
        self.lab_names = {n.name for n in topo.nodes}
        self.pod_routes: dict[str, dict[str, str]] = {}  # netns -> cidr -> via
        self.lb_routes: dict[str, tuple[str, ...]] = {}  # LB IP -> node IPs
        self._kick = asyncio.Event()
        source.informer("nodes")
        source.informer("services")
        for r in ("nodes", "services"):
            source.add_handler(
                r,
                on_add=lambda _o: self._kick.set(),
                on_update=lambda _o, _n: self._kick.set(),
                on_delete=lambda _o: self._kick.set(),
            )

    def _nodes(self) -> list[Obj]:
        return [n for n in self.source.store("nodes").list() if n["metadata"]["name"] in self.lab_names]

    def sync_pod_routes(self) -> None:
        cidrs = {}
        for node in self._nodes():
            ip, cidr = node_address(node), (node.get("spec") or {}).get("podCIDR")
            if ip and cidr:
                cidrs[node["metadata"]["name"]] = (cidr, ip)
        targets = [(n.netns, n.name) for n in self.topo.nodes] + [(self.topo.net, None)]
        for ns, own in targets:
            want = {cidr: ip for name, (cidr, ip) in cidrs.items() if name != own}
            have = self.pod_routes.setdefault(ns, {})
            for cidr, via in want.items():
                if have.get(cidr) != via:
                    netns.ip(ns, "route", "replace", cidr, "via", via, check=False)
                    have[cidr] = via
            for cidr in set(have) - set(want):
                netns.ip(ns, "route", "del", cidr, check=False)
                del have[cidr]

    async def sync_lb_routes(self) -> None:
        nodes = [n for n in self._nodes() if node_ready(n) and node_address(n)]
        want: dict[str, tuple[str, ...]] = {}
        for svc in self.source.store("services").list():
            spec = svc.get("spec") or {}
            if spec.get("type") != "LoadBalancer":
                continue
            ips = [
                i.get("ip")
                for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
                if i.get("ip") and ":" not in i.get("ip")
            ]
            if not ips:
                continue
            targets = [node_address(n) for n in nodes]
            if spec.get("externalTrafficPolicy") == "Local" and spec.get("healthCheckNodePort"):
                port = int(spec["healthCheckNodePort"])
                checks = await asyncio.gather(*(health_check(self.topo.external, ip, port) for ip in targets))
                targets = [ip for ip, ok in zip(targets, checks, strict=True) if ok]
            for ip in ips:
                want[ip] = tuple(sorted(t for t in targets if t))
        for ip, hops in want.items():
            if self.lb_routes.get(ip) == hops:
                continue
            if hops:
                args = ["route", "replace", f"{ip}/32"]
                for h in hops:
                    args += ["nexthop", "via", h]
                netns.ip(self.topo.external, *args, check=False)
            else:
                netns.ip(self.topo.external, "route", "del", f"{ip}/32", check=False)
            log.info("load balancer %s -> %s", ip, ", ".join(hops) or "(no healthy node)")
            self.lb_routes[ip] = hops
        for ip in set(self.lb_routes) - set(want):
            netns.ip(self.topo.external, "route", "del", f"{ip}/32", check=False)
            del self.lb_routes[ip]

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._kick.clear()
            try:
                await asyncio.to_thread(self.sync_pod_routes)
                await self.sync_lb_routes()
            except Exception:
                log.exception("lab network sync failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.health_period)
