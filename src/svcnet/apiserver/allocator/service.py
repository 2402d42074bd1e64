"""ClusterIP and NodePort allocation inside Service create, update and delete.

Every allocated address or port is a key of its own in the store
(/registry/svcnet/serviceips/<ip>, /registry/svcnet/servicenodeports/<port>), claimed with
"must not exist" and released with a delete, in the SAME transaction as the Service write.
So an allocation can never leak or double up: a crash leaves either both or neither, and two
concurrent claims of one value (in this server or another on the same etcd) cannot both
commit. This is the model upstream moved to with IPAddress objects (MultiCIDRServiceAllocator,
GA in 1.33) instead of 1.32's bitmap snapshot; docs/design.md says why.

The in-memory sets only guide the choice of a free candidate. The store decides: a lost race
shows up as a failed compare on an allocation key, the caller calls ``conflict()`` and retries
with a new plan.
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from svcnet.api.errors import FieldError, StatusError, internal_error, invalid, invalid_value
from svcnet.api.strategy import init_ip_family_fields
from svcnet.apiserver.allocator.ranges import IPRange, PortRange
from svcnet.store.interface import CompareFailedError, Delete, KeyNotFoundError, Op, Put, Store

log = logging.getLogger("svcnet.apiserver.allocator")

IP_PREFIX = "/registry/svcnet/serviceips/"
PORT_PREFIX = "/registry/svcnet/servicenodeports/"

Obj = dict[str, Any]
T = TypeVar("T")


def ip_key(ip: str) -> str:
    return IP_PREFIX + ip


def port_key(port: int) -> str:
    return f"{PORT_PREFIX}{port}"


def owner_value(svc: Obj) -> bytes:
    """The value of an allocation key: the Service that holds it."""
    meta = svc.get("metadata", {})
    return orjson.dumps({"namespace": meta.get("namespace", ""), "name": meta.get("name", "")})


def wants_cluster_ips(svc: Obj) -> bool:
    spec = svc.get("spec", {})
    return (
        spec.get("type", "ClusterIP") != "ExternalName"
        and (spec.get("clusterIPs") or [""])[0] != "None"
        and spec.get("clusterIP") != "None"
    )


def wants_node_ports(svc: Obj) -> bool:
    spec = svc.get("spec", {})
    kind = spec.get("type", "ClusterIP")
    if kind == "NodePort":
        return True
    return kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True) is not False


def needs_health_check(svc: Obj) -> bool:
    spec = svc.get("spec", {})
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def held_ips(svc: Obj | None) -> set[str]:
    if not svc or not wants_cluster_ips(svc):
        return set()
    return {ip for ip in svc.get("spec", {}).get("clusterIPs") or [] if ip and ip != "None"}


def held_ports(svc: Obj | None) -> set[int]:
    if not svc:
        return set()
    spec = svc.get("spec", {})
    ports = {
        p["nodePort"] for p in spec.get("ports") or [] if isinstance(p.get("nodePort"), int) and p["nodePort"]
    }
    hc = spec.get("healthCheckNodePort")
    if isinstance(hc, int) and hc:
        ports.add(hc)
    return ports


@dataclass
class AllocationPlan:
    claim_ips: set[str] = field(default_factory=set)
    release_ips: set[str] = field(default_factory=set)
    claim_ports: set[int] = field(default_factory=set)
    release_ports: set[int] = field(default_factory=set)
    owner: bytes = b""
    # Values this plan picked itself (free when picked); the rest of the claims were requested.
    picked_ips: set[str] = field(default_factory=set)
    picked_ports: set[int] = field(default_factory=set)

    def ops(self) -> list[Op]:
        ops: list[Op] = [Put(ip_key(ip), self.owner, 0) for ip in sorted(self.claim_ips)]
        ops += [Put(port_key(p), self.owner, 0) for p in sorted(self.claim_ports)]
        ops += [Delete(ip_key(ip)) for ip in sorted(self.release_ips)]
        ops += [Delete(port_key(p)) for p in sorted(self.release_ports)]
        return ops

    def keys(self) -> set[str]:
        return {ip_key(ip) for ip in self.claim_ips | self.release_ips} | {
            port_key(p) for p in self.claim_ports | self.release_ports
        }


class ServiceAllocator:
    def __init__(
        self, store: Store, ip_ranges: list[IPRange], port_range: PortRange, rng: random.Random | None = None
    ) -> None:
        if not ip_ranges:
            raise ValueError("at least one service IP range is required")
        if len({r.family for r in ip_ranges}) != len(ip_ranges):
            raise ValueError("service IP ranges must be of different IP families (at most one per family)")
        self.store = store
        self.ip_ranges = {r.family: r for r in ip_ranges}
        self.families = [r.family for r in ip_ranges]  # primary first
        self.port_range = port_range
        self.rng = rng or random.SystemRandom()
        self.used_ips: set[str] = set()
        self.used_ports: set[int] = set()
        # Values handed to a plan not yet committed: concurrent requests must not pick them.
        self._pending_ips: set[str] = set()
        self._pending_ports: set[int] = set()

    async def load(self) -> None:
        """Read every allocation key from the store (at start, and by the repair loop)."""
        ips = await self.store.range(IP_PREFIX)
        ports = await self.store.range(PORT_PREFIX)
        self.used_ips = {kv.key[len(IP_PREFIX) :] for kv in ips.kvs}
        self.used_ports = {int(kv.key[len(PORT_PREFIX) :]) for kv in ports.kvs}

    # -- planning ---------------------------------------------------------------------------

    def plan(self, new: Obj | None, old: Obj | None) -> AllocationPlan:
        """Fill the allocations ``new`` needs (mutating it) and return the claims and releases
        that move from ``old`` to ``new``. ``new`` None is a delete; ``old`` None a create.
        Raises StatusError 422 for requests that cannot be honoured, 500 when a range is full."""
        plan = AllocationPlan(owner=owner_value(new or old or {}))
        try:
            if new is not None:
                errs = init_ip_family_fields(new, old, self.families)
                if errs:
                    raise invalid("Service", new.get("metadata", {}).get("name", ""), errs)
                self._fill_cluster_ips(new, plan)
                self._fill_node_ports(new, plan)
            now_ips, was_ips = held_ips(new), held_ips(old)
            now_ports, was_ports = held_ports(new), held_ports(old)
            plan.claim_ips = now_ips - was_ips
            # Only values the store holds are released: a key the repair loop has not restored
            # yet must not make the Service's own delete fail.
            plan.release_ips = {ip for ip in was_ips - now_ips if ip in self.used_ips}
            plan.claim_ports = now_ports - was_ports
            plan.release_ports = {p for p in was_ports - now_ports if p in self.used_ports}
            self._check_claims(new, plan)
        except StatusError:
            # Only the values this plan picked are its own: a requested value was refused
            # because it is taken, perhaps pending for another request, and must stay so.
            self._pending_ips -= plan.picked_ips
            self._pending_ports -= plan.picked_ports
            raise
        return plan

    def commit(self, plan: AllocationPlan) -> None:
        self.used_ips |= plan.claim_ips
        self.used_ips -= plan.release_ips
        self.used_ports |= plan.claim_ports
        self.used_ports -= plan.release_ports
        self.abort(plan)

    def abort(self, plan: AllocationPlan) -> None:
        self._pending_ips -= plan.claim_ips | plan.picked_ips
        self._pending_ports -= plan.claim_ports | plan.picked_ports

    def conflict(self, plan: AllocationPlan, key: str, exists: bool) -> bool:
        """After a failed transaction: if ``key`` is one of the plan's allocation keys, record
        what the store said about it (another writer won it, or it was already gone) and say
        the caller should re-plan and retry."""
        self.abort(plan)
        if key not in plan.keys():  # noqa: SIM118
            return False
        if key.startswith(IP_PREFIX):
            ip = key[len(IP_PREFIX) :]
            (self.used_ips.add if exists else self.used_ips.discard)(ip)
        elif key.startswith(PORT_PREFIX):
            port = int(key[len(PORT_PREFIX) :])
            (self.used_ports.add if exists else self.used_ports.discard)(port)
        return True

    def _ip_in_range(self, ip: str) -> bool:
        return any(r.index_of(ip) is not None for r in self.ip_ranges.values())

    def _ip_taken(self, ip: str) -> bool:
        return ip in self.used_ips or ip in self._pending_ips

    def _port_taken(self, port: int) -> bool:
        return port in self.used_ports or port in self._pending_ports

    def _fill_cluster_ips(self, svc: Obj, plan: AllocationPlan) -> None:
        spec = svc.setdefault("spec", {})
        if not wants_cluster_ips(svc):
            return
        families = spec.get("ipFamilies") or [self.families[0]]
        ips = list(spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []))
        ips = [ip for ip in ips if ip]
        for family in families[len(ips) :]:
            ip_range = self.ip_ranges.get(family)
            if ip_range is None:
                raise invalid(
                    "Service",
                    svc.get("metadata", {}).get("name", ""),
                    [
                        invalid_value(
                            "spec.ipFamilies", families, f"{family} is not configured on this cluster"
                        )
                    ],
                )
            ips.append(self._next_ip(ip_range, plan))
        spec["clusterIPs"] = ips
        spec["clusterIP"] = ips[0]
        spec["ipFamilies"] = families

    def _next_ip(self, ip_range: IPRange, plan: AllocationPlan) -> str:
        for ip in ip_range.dynamic_order(self.rng):
            if not self._ip_taken(ip):
                self._pending_ips.add(ip)
                plan.picked_ips.add(ip)
                return ip
        raise internal_error("failed to allocate a serviceIP: range is full")

    def _fill_node_ports(self, svc: Obj, plan: AllocationPlan) -> None:
        spec = svc.setdefault("spec", {})
        ports = spec.get("ports") or []
        if wants_node_ports(svc):
            # Ports with the same number (e.g. DNS 53/TCP and 53/UDP) share one node port.
            by_number: dict[int, int] = {p["port"]: p["nodePort"] for p in ports if p.get("nodePort")}
            for p in ports:
                if p.get("nodePort"):
                    continue
                shared = by_number.get(p.get("port"))
                p["nodePort"] = shared if shared else self._next_port(plan)
                by_number[p.get("port")] = p["nodePort"]
        if needs_health_check(svc) and not spec.get("healthCheckNodePort"):
            spec["healthCheckNodePort"] = self._next_port(plan)

    def _next_port(self, plan: AllocationPlan) -> int:
        for port in self.port_range.dynamic_order(self.rng):
            if not self._port_taken(port):
                self._pending_ports.add(port)
                plan.picked_ports.add(port)
                return port
        raise internal_error("failed to allocate a nodePort: range is full")

    def _check_claims(self, svc: Obj | None, plan: AllocationPlan) -> None:
        """Requested values must be in range and free; errors at upstream's field paths."""
        if svc is None:
            return
        errors: list[FieldError] = []
        spec = svc.get("spec", {})
        for ip in sorted(plan.claim_ips - plan.picked_ips):
            reason = None
            if not self._ip_in_range(ip):
                ranges = ", ".join(str(r) for r in self.ip_ranges.values())
                reason = (
                    f"the provided IP ({ip}) is not in the valid range. The range of valid IPs is {ranges}"
                )
            elif self._ip_taken(ip):
                reason = "provided IP is already allocated"
            if reason:
                errors.append(
                    invalid_value(
                        "spec.clusterIPs", spec.get("clusterIPs"), f"failed to allocate IP {ip}: {reason}"
                    )
                )
        requested = plan.claim_ports - plan.picked_ports
        checked: set[int] = set()
        for i, p in enumerate(spec.get("ports") or []):
            port = p.get("nodePort")
            if port not in requested or port in checked:
                continue  # ports sharing one number are checked once
            checked.add(port)
            error = self._port_error(port)
            if error:
                errors.append(invalid_value(f"spec.ports[{i}].nodePort", port, error))
        hc = spec.get("healthCheckNodePort")
        if hc in requested and hc not in checked:
            error = self._port_error(hc)
            if error:
                detail = f"failed to allocate requested HealthCheck NodePort {hc}: {error}"
                errors.append(invalid_value("spec.healthCheckNodePort", hc, detail))
        if errors:
            raise invalid("Service", svc.get("metadata", {}).get("name", ""), errors)
        # Reserved only once every claim is known to be free (plan() relies on this).
        self._pending_ips |= plan.claim_ips
        self._pending_ports |= plan.claim_ports

    def _port_error(self, port: int) -> str | None:
        if not self.port_range.contains(port):
            return f"provided port is not in the valid range. The range of valid ports is {self.port_range}"
        if self._port_taken(port):
            return "provided port is already allocated"
        return None


MAX_ATTEMPTS = 16


async def allocate_and_write(
    allocator: ServiceAllocator,
    new: Obj | None,
    old: Obj | None,
    write: Callable[[Obj | None, list[Op]], Awaitable[T]],
) -> tuple[Obj | None, T]:
    """Plan the allocations for ``old`` -> ``new`` on a copy of ``new``, then call
    ``write(planned, ops)``, which must commit the object and ``ops`` in ONE store transaction.
    A transaction that lost an allocation race is re-planned and retried; any other failure
    propagates. Returns the planned object and what ``write`` returned."""
    for _ in range(MAX_ATTEMPTS):
        planned = copy.deepcopy(new) if new is not None else None
        plan = allocator.plan(planned, old)
        try:
            result = await write(planned, plan.ops())
        except CompareFailedError as exc:
            if allocator.conflict(plan, exc.key, exists=exc.current is not None):
                continue
            raise
        except KeyNotFoundError as exc:
            if allocator.conflict(plan, exc.key, exists=False):
                continue
            raise
        except BaseException:
            allocator.abort(plan)
            raise
        allocator.commit(plan)
        return planned, result
    raise internal_error("failed to allocate: too many concurrent allocation conflicts, try again")
