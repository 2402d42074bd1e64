"""Upstream's EndpointSlice reconcile algorithm: given the desired endpoints of a Service and
its existing slices, the creates, updates and deletes that reach the desired state while
rewriting as few slices as possible (one pod's change rewrites one slice)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from svcnet.controllers.endpointslice.desired import (
    CONTROLLER_NAME,
    LABEL_HEADLESS,
    LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
    RESERVED_LABELS,
    Desired,
    DesiredGroup,
    Obj,
    address_types,
    endpoint_identity,
    is_service_ip_set,
    port_map_key,
)

TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
MAX_GENERATE_NAME_PREFIX = 63 - 5  # generateName adds five characters; the result must stay a valid name


@dataclass
class Plan:
    create: list[Obj] = field(default_factory=list)
    update: list[Obj] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def slice_labels(existing: Obj | None, service: Obj) -> tuple[dict[str, str], bool]:
    """The labels a slice of ``service`` carries, and whether ``existing`` differs from them in
    the labels copied from the Service (reserved labels are always set by the controller)."""
    current = {k: v for k, v in ((existing or {}).get("metadata", {}).get("labels") or {}).items()
               if k not in RESERVED_LABELS}
    wanted = {k: v for k, v in (service.get("metadata", {}).get("labels") or {}).items()
              if k not in RESERVED_LABELS}
    changed = current != wanted
    if not is_service_ip_set(service):
        wanted[LABEL_HEADLESS] = ""
    wanted[LABEL_SERVICE_NAME] = service["metadata"]["name"]
    wanted[LABEL_MANAGED_BY] = CONTROLLER_NAME
    if existing is not None:
        reserved_now = {k: v for k, v in (existing.get("metadata", {}).get("labels") or {}).items()
                        if k in RESERVED_LABELS}
        reserved_wanted = {k: v for k, v in wanted.items() if k in RESERVED_LABELS}
        changed = changed or reserved_now != reserved_wanted
    return wanted, changed


def owner_reference(service: Obj) -> Obj:
    meta = service["metadata"]
    return {"apiVersion": "v1", "kind": "Service", "name": meta["name"], "uid": meta.get("uid", ""),
            "controller": True, "blockOwnerDeletion": True}


def owned_by(slice_: Obj, service: Obj) -> bool:
    uid = service["metadata"].get("uid", "")
    return any(ref.get("uid") == uid and ref.get("kind") == "Service" and ref.get("apiVersion") == "v1"
               for ref in slice_.get("metadata", {}).get("ownerReferences") or [])


def generate_name_prefix(service_name: str) -> str:
    prefix = f"{service_name}-"
    return prefix if len(prefix) <= MAX_GENERATE_NAME_PREFIX else service_name


def new_slice(service: Obj, address_type: str, ports: list[Obj]) -> Obj:
    labels, _ = slice_labels(None, service)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "generateName": generate_name_prefix(service["metadata"]["name"]),
            "namespace": service["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(service)],
        },
        "addressType": address_type,
        "ports": copy.deepcopy(ports),
        "endpoints": [],
    }


def _sorted_remaining(remaining: dict[tuple, Obj]) -> list[tuple]:
    # Upstream pops from a hash set in no particular order; a fixed order keeps results repeatable.
    return sorted(remaining)


def _slice_to_fill(unchanged: list[Obj], count: int, limit: int) -> Obj | None:
    """The unchanged slice that the remaining ``count`` endpoints fill most closely."""
    best, best_gap = None, limit
    for candidate in unchanged:
        gap = limit - (count + len(candidate["endpoints"]))
        if 0 <= gap < best_gap:
            best, best_gap = candidate, gap
            if gap == 0:
                break
    if best is not None:
        unchanged.remove(best)
    return best


def reconcile_port_group(service: Obj, existing: list[Obj], group: DesiredGroup, limit: int) -> Plan:
    plan = Plan()
    remaining = dict(group.endpoints)
    unchanged: list[Obj] = []
    # 1. keep what is still desired in each existing slice
    for current in existing:
        kept: list[Obj] = []
        endpoint_changed = False
        for endpoint in current.get("endpoints") or []:
            wanted = remaining.pop(endpoint_identity(endpoint), None)
            if wanted is not None:
                kept.append(wanted)
                endpoint_changed = endpoint_changed or wanted != endpoint
        labels, labels_changed = slice_labels(current, service)
        if endpoint_changed or len(kept) != len(current.get("endpoints") or []):
            if not kept:
                plan.delete.append(current)
            else:
                updated = copy.deepcopy(current)
                updated["metadata"]["labels"] = labels
                updated["endpoints"] = kept
                plan.update.append(updated)
        elif labels_changed:
            updated = copy.deepcopy(current)
            updated["metadata"]["labels"] = labels
            plan.update.append(updated)
        else:
            unchanged.append(current)
    # Sorted once: the loops below take from the front (a sort per slice was quadratic).
    order = _sorted_remaining(remaining)
    taken = 0
    # 2. top up the slices being rewritten anyway, fullest first
    if remaining and plan.update:
        for updated in sorted(plan.update, key=lambda s: -len(s["endpoints"])):
            room = max(limit - len(updated["endpoints"]), 0)
            for key in order[taken : taken + room]:
                updated["endpoints"].append(remaining.pop(key))
            taken += min(room, len(order) - taken)
            if not remaining:
                break
    # 3. the rest: into the unchanged slice they fit best, else new slices
    while remaining:
        target = None
        if len(remaining) < limit and unchanged:
            target = _slice_to_fill(unchanged, len(remaining), limit)
        is_new = target is None
        target = new_slice(service, group.address_type, group.ports) if is_new else copy.deepcopy(target)
        room = max(limit - len(target["endpoints"]), 0)
        for key in order[taken : taken + room]:
            target["endpoints"].append(remaining.pop(key))
        taken += min(room, len(order) - taken)
        (plan.create if is_new else plan.update).append(target)
    return plan


def _is_placeholder(slice_: Obj, service: Obj, address_type: str) -> bool:
    return (slice_.get("addressType") == address_type and not slice_.get("ports")
            and not slice_.get("endpoints") and owned_by(slice_, service))


def reconcile(service: Obj, desired: Desired, existing: list[Obj], limit: int = 100) -> Plan:
    """The whole plan for one Service across its address types and port sets."""
    plan = Plan()
    wanted_types = set(address_types(service))
    by_type: dict[str, list[Obj]] = {}
    for current in existing:
        if current.get("metadata", {}).get("deletionTimestamp"):
            continue
        if current.get("addressType") not in wanted_types:
            plan.delete.append(current)
        else:
            by_type.setdefault(current["addressType"], []).append(current)
    for address_type in address_types(service):
        current = by_type.get(address_type, [])
        type_plan = _reconcile_address_type(service, desired, current, address_type, limit)
        plan.create += type_plan.create
        plan.update += type_plan.update
        plan.delete += type_plan.delete
    return _reuse_deleted_names(service, plan)


def _reconcile_address_type(service: Obj, desired: Desired, existing: list[Obj], address_type: str,
                            limit: int) -> Plan:
    plan = Plan()
    by_ports: dict[str, list[Obj]] = {}
    for current in existing:
        if owned_by(current, service):
            by_ports.setdefault(port_map_key(current.get("ports") or []), []).append(current)
        else:
            plan.delete.append(current)  # a slice left by an older Service of the same name
    groups = {key: g for (kind, key), g in desired.groups.items() if kind == address_type}
    for key, group in groups.items():
        sub = reconcile_port_group(service, by_ports.get(key, []), group, limit)
        plan.create += sub.create
        plan.update += sub.update
        plan.delete += sub.delete
    for key, stale in by_ports.items():
        if key not in groups:
            plan.delete += stale
    # A Service with nothing to publish still gets one empty placeholder slice.
    if len(existing) == len(plan.delete) and not plan.create:
        if len(plan.delete) == 1 and _is_placeholder(plan.delete[0], service, address_type):
            plan.delete = []
        else:
            plan.create.append(new_slice(service, address_type, []))
    return plan


def _reuse_deleted_names(service: Obj, plan: Plan) -> Plan:
    """Turn a create plus a delete into one update of the doomed slice (same address type,
    owned by this Service), so names are reused and watchers see fewer events."""
    i = 0
    while i < len(plan.delete) and plan.create:
        doomed = plan.delete[i]
        fresh = plan.create[-1]
        if doomed.get("addressType") == fresh["addressType"] and owned_by(doomed, service):
            reused = copy.deepcopy(fresh)
            reused["metadata"] = copy.deepcopy(doomed["metadata"])
            reused["metadata"]["labels"] = fresh["metadata"]["labels"]
            plan.create.pop()
            plan.update.append(reused)
            plan.delete.pop(i)
        else:
            i += 1
    return plan
