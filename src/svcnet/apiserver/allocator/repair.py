"""The allocation repair loop: upstream's ipallocator and portallocator repair controllers
for svcnet's key-per-value allocation state.

At start and every ``interval`` seconds it reads the Services and the allocation keys AT ONE
store revision (so an allocation and its Service, written in one transaction, are never seen
half-way) and compares them:

- a ClusterIP or NodePort a Service holds without its key: the key is recreated (Events
  ClusterIPNotAllocated / PortNotAllocated, as upstream's "repairing");
- a value held by two Services: Event ClusterIPAlreadyAllocated / PortAlreadyAllocated on the
  later one ("please recreate service");
- a value outside the configured range (the range changed): Event ClusterIPOutOfRange /
  PortOutOfRange, and it is left alone;
- a key no Service holds: released once it has been leaked in two consecutive checks
  (upstream waits for several repair passes before cleaning up, so an allocation that is
  still being written is never reclaimed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from svcnet.api import resources
from svcnet.apiserver.allocator.service import (
    IP_PREFIX,
    PORT_PREFIX,
    ServiceAllocator,
    held_ips,
    held_ports,
    ip_key,
    owner_value,
    port_key,
)
from svcnet.store.interface import CompareFailedError, Delete, KeyNotFoundError, Put, Store

log = logging.getLogger("svcnet.apiserver.allocator.repair")

SERVICES = resources.by_path("", "v1", "services")
assert SERVICES is not None

IP_COMPONENT = "ipallocator-repair-controller"
PORT_COMPONENT = "portallocator-repair-controller"
# A key must be seen unowned in this many consecutive checks before it is released.
LEAK_CHECKS = 2

Obj = dict[str, Any]
EventSink = Callable[[Obj, str, str, str], Awaitable[None]]  # (service, reason, message, component)


@dataclass
class RepairReport:
    """What one pass found. ``clean`` means it had nothing to fix or report."""

    revision: int = 0
    recreated_ips: list[str] = field(default_factory=list)
    recreated_ports: list[int] = field(default_factory=list)
    released_ips: list[str] = field(default_factory=list)
    released_ports: list[int] = field(default_factory=list)
    leaked_ips: list[str] = field(default_factory=list)  # seen unowned, not released yet
    leaked_ports: list[int] = field(default_factory=list)
    duplicate_ips: list[str] = field(default_factory=list)
    duplicate_ports: list[int] = field(default_factory=list)
    out_of_range_ips: list[str] = field(default_factory=list)
    out_of_range_ports: list[int] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not any(getattr(self, name) for name in self.__dataclass_fields__ if name != "revision")


def _svc_name(svc: Obj) -> str:
    md = svc.get("metadata", {})
    return f"{md.get('namespace', '')}/{md.get('name', '')}"


class AllocationRepair:
    def __init__(
        self,
        store: Store,
        allocator: ServiceAllocator,
        interval: float = 180.0,
        emit_event: EventSink | None = None,
    ) -> None:
        self.store = store
        self.allocator = allocator
        self.interval = interval
        self.emit_event = emit_event
        self.last_report: RepairReport | None = None
        self.passes = 0
        self._suspect_ips: set[str] = set()
        self._suspect_ports: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None and self.interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="allocation-repair")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("allocation repair pass failed; retrying at the next interval")

    # -- one pass ----------------------------------------------------------------------------

    async def run_once(self) -> RepairReport:
        services_result = await self.store.range(SERVICES.prefix())
        revision = services_result.revision
        ip_result = await self.store.range(IP_PREFIX, revision=revision)
        port_result = await self.store.range(PORT_PREFIX, revision=revision)
        ip_keys = {kv.key[len(IP_PREFIX) :]: kv for kv in ip_result.kvs}
        port_keys = {}
        for kv in port_result.kvs:
            try:
                port_keys[int(kv.key[len(PORT_PREFIX) :])] = kv
            except ValueError:
                log.warning("ignoring malformed allocation key %s", kv.key)
        report = RepairReport(revision=revision)

        ip_owner: dict[str, Obj] = {}
        port_owner: dict[int, Obj] = {}
        services: list[Obj] = []
        for kv in services_result.kvs:
            try:
                services.append(orjson.loads(kv.value))
            except orjson.JSONDecodeError:
                log.error("skipping undecodable Service at %s", kv.key)
        services.sort(key=lambda s: (s.get("metadata", {}).get("creationTimestamp", ""), _svc_name(s)))
        for svc in services:
            for ip in sorted(held_ips(svc)):
                if not self.allocator._ip_in_range(ip):
                    report.out_of_range_ips.append(ip)
                    ranges = ", ".join(str(r) for r in self.allocator.ip_ranges.values())
                    await self._event(
                        svc,
                        "ClusterIPOutOfRange",
                        f"Cluster IP [{_family(ip)}]:{ip} is not within the configured Service CIDR "
                        f"{ranges}; please recreate service",
                        IP_COMPONENT,
                    )
                elif ip in ip_owner:
                    report.duplicate_ips.append(ip)
                    await self._event(
                        svc,
                        "ClusterIPAlreadyAllocated",
                        f"Cluster IP [{_family(ip)}]:{ip} was assigned to multiple services; "
                        "please recreate service",
                        IP_COMPONENT,
                    )
                else:
                    ip_owner[ip] = svc
            for port in sorted(held_ports(svc)):
                if not self.allocator.port_range.contains(port):
                    report.out_of_range_ports.append(port)
                    await self._event(
                        svc,
                        "PortOutOfRange",
                        f"Port {port} is not within the port range {self.allocator.port_range}; "
                        "please recreate service",
                        PORT_COMPONENT,
                    )
                elif port in port_owner:
                    report.duplicate_ports.append(port)
                    await self._event(
                        svc,
                        "PortAlreadyAllocated",
                        f"Port {port} was assigned to multiple services; please recreate service",
                        PORT_COMPONENT,
                    )
                else:
                    port_owner[port] = svc

        for ip, svc in ip_owner.items():
            if ip not in ip_keys and await self._create(ip_key(ip), svc):
                report.recreated_ips.append(ip)
                self.allocator.used_ips.add(ip)
                await self._event(
                    svc,
                    "ClusterIPNotAllocated",
                    f"Cluster IP [{_family(ip)}]:{ip} is not allocated; repairing",
                    IP_COMPONENT,
                )
        for port, svc in port_owner.items():
            if port not in port_keys and await self._create(port_key(port), svc):
                report.recreated_ports.append(port)
                self.allocator.used_ports.add(port)
                await self._event(svc, "PortNotAllocated", f"Port {port} is not allocated; repairing",
                                  PORT_COMPONENT)

        leaked_ips = {ip for ip in ip_keys if ip not in ip_owner}
        leaked_ports = {p for p in port_keys if p not in port_owner}
        for ip in sorted(leaked_ips):
            if ip in self._suspect_ips and await self._delete(ip_keys[ip].key, ip_keys[ip].mod_revision):
                log.warning("the ClusterIP %s appears to have leaked: cleaning up", ip)
                report.released_ips.append(ip)
                self.allocator.used_ips.discard(ip)
            else:
                report.leaked_ips.append(ip)
        for port in sorted(leaked_ports):
            kv = port_keys[port]
            if port in self._suspect_ports and await self._delete(kv.key, kv.mod_revision):
                log.warning("the node port %d appears to have leaked: cleaning up", port)
                report.released_ports.append(port)
                self.allocator.used_ports.discard(port)
            else:
                report.leaked_ports.append(port)
        self._suspect_ips = set(report.leaked_ips)
        self._suspect_ports = set(report.leaked_ports)
        # What the store holds now is the allocator's view (keys written by a peer included).
        self.allocator.used_ips |= set(ip_keys) - set(report.released_ips)
        self.allocator.used_ports |= set(port_keys) - set(report.released_ports)

        self.passes += 1
        self.last_report = report
        if report.clean:
            log.info("allocation repair at revision %d: nothing to fix", revision)
        else:
            log.warning("allocation repair at revision %d: %s", revision, _summary(report))
        return report

    async def _create(self, key: str, svc: Obj) -> bool:
        try:
            await self.store.txn([Put(key, owner_value(svc), 0)])
        except CompareFailedError:
            return False  # written meanwhile (by the Service's own transaction)
        return True

    async def _delete(self, key: str, revision: int) -> bool:
        try:
            await self.store.txn([Delete(key, revision)])
        except (CompareFailedError, KeyNotFoundError):
            return False  # claimed again or released meanwhile: not a leak any more
        return True

    async def _event(self, svc: Obj, reason: str, message: str, component: str) -> None:
        log.warning("%s %s: %s", _svc_name(svc), reason, message)
        if self.emit_event is None:
            return
        try:
            await self.emit_event(svc, reason, message, component)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("recording event %s for %s", reason, _svc_name(svc))


def _family(ip: str) -> str:
    return "IPv6" if ":" in ip else "IPv4"


def _summary(report: RepairReport) -> str:
    parts = []
    for name in report.__dataclass_fields__:
        value = getattr(report, name)
        if name != "revision" and value:
            parts.append(f"{name}={value}")
    return ", ".join(parts)
