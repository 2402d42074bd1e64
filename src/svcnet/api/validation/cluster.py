"""Validation of the remaining kinds, upstream's basics: v1 Namespace and Node
(cluster-scoped), v1 Event (legacy core events) and coordination.k8s.io/v1 Lease."""

from __future__ import annotations

from typing import Any

from svcnet.api.errors import FieldError, duplicate, forbidden, invalid_value, required
from svcnet.api.validation.common import (
    GoValue,
    as_dict,
    as_int,
    as_list,
    as_str,
    go_quote,
    go_slice,
    is_dns1123_subdomain,
    is_dual_stack,
    is_valid_cidr,
    is_valid_label_value,
    name_is_dns_label,
    name_is_dns_subdomain,
    validate_label_name,
    validate_qualified_name,
    validate_required_enum,
)
from svcnet.api.validation.meta import STANDARD_FINALIZERS, validate_object_meta, validate_object_meta_update

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

# --------------------------------------------------------------------------------------------
# Namespace


def _validate_namespace_finalizer(name: str, path: str) -> list[FieldError]:
    errs = validate_qualified_name(name, path)
    if "/" not in name and name not in STANDARD_FINALIZERS:
        errs.append(
            invalid_value(path, name, "name is neither a standard finalizer name nor is it fully qualified")
        )
    return errs


def validate_namespace(namespace: Any) -> list[FieldError]:
    namespace = as_dict(namespace)
    errs = validate_object_meta(namespace.get("metadata"), False, name_is_dns_label)
    for finalizer in as_list(as_dict(namespace.get("spec")).get("finalizers")):
        errs.extend(_validate_namespace_finalizer(as_str(finalizer), "spec.finalizers"))
    return errs


def validate_namespace_update(namespace: Any, old: Any) -> list[FieldError]:
    """The namespace strategy runs ValidateNamespace and then ValidateNamespaceUpdate."""
    errs = validate_namespace(namespace)
    errs.extend(validate_object_meta_update(as_dict(namespace).get("metadata"), as_dict(old).get("metadata")))
    return errs


def validate_namespace_status_update(namespace: Any, old: Any) -> list[FieldError]:
    namespace = as_dict(namespace)
    errs = validate_object_meta_update(namespace.get("metadata"), as_dict(old).get("metadata"))
    phase = as_str(as_dict(namespace.get("status")).get("phase"))
    if not as_dict(namespace.get("metadata")).get("deletionTimestamp"):
        if phase != "Active":
            errs.append(
                invalid_value("status.Phase", phase, "may only be 'Active' if `deletionTimestamp` is empty")
            )
    elif phase != "Terminating":
        errs.append(
            invalid_value(
                "status.Phase", phase, "may only be 'Terminating' if `deletionTimestamp` is not empty"
            )
        )
    return errs


# --------------------------------------------------------------------------------------------
# Node


def _validate_taints(taints: list[Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    unique: dict[str, set[str]] = {}
    for i, taint in enumerate(taints):
        taint = as_dict(taint)
        tpath = f"{path}[{i}]"
        key = as_str(taint.get("key"))
        errs.extend(validate_label_name(key, f"{tpath}.key"))
        value = as_str(taint.get("value"))
        messages = is_valid_label_value(value)
        if messages:
            errs.append(invalid_value(f"{tpath}.value", value, ";".join(messages)))
        effect = as_str(taint.get("effect"))
        errs.extend(validate_required_enum(effect, f"{tpath}.effect", TAINT_EFFECTS))
        if key in unique.get(effect, set()):
            error = duplicate(tpath, f"{key}={value}:{effect}")
            error.detail = "taints must be unique by key and effect pair"
            errs.append(error)
            continue
        unique.setdefault(effect, set()).add(key)
    return errs


def _validate_pod_cidrs(spec: dict[str, Any]) -> list[FieldError]:
    cidrs = [as_str(c) for c in as_list(spec.get("podCIDRs"))]
    errs: list[FieldError] = []
    for i, cidr in enumerate(cidrs):
        errs.extend(is_valid_cidr(f"spec.podCIDRs[{i}]", cidr))
    if len(cidrs) > 1 and not errs:
        if not is_dual_stack(c.split("/")[0] for c in cidrs) or len(cidrs) > 2:
            errs.append(
                invalid_value(
                    "spec.podCIDRs", go_slice(cidrs), "may specify no more than one CIDR for each IP family"
                )
            )
        seen: set[str] = set()
        for i, cidr in enumerate(cidrs):
            if cidr in seen:
                errs.append(duplicate(f"spec.podCIDRs[{i}]", cidr))
            seen.add(cidr)
    return errs


def validate_node(node: Any) -> list[FieldError]:
    node = as_dict(node)
    errs = validate_object_meta(node.get("metadata"), False, name_is_dns_subdomain)
    spec = as_dict(node.get("spec"))
    # Upstream reports spec.taints under metadata.taints (a long-standing path quirk).
    errs.extend(_validate_taints(as_list(spec.get("taints")), "metadata.taints"))
    errs.extend(_validate_pod_cidrs(spec))
    return errs


def validate_node_update(node: Any, old: Any) -> list[FieldError]:
    """The node strategy runs ValidateNode and then ValidateNodeUpdate."""
    node, old = as_dict(node), as_dict(old)
    errs = validate_node(node)
    errs.extend(validate_object_meta_update(node.get("metadata"), old.get("metadata")))
    addresses_seen: list[dict[str, Any]] = []
    for i, address in enumerate(as_list(as_dict(node.get("status")).get("addresses"))):
        address = as_dict(address)
        if address in addresses_seen:
            rendered = GoValue(
                f"core.NodeAddress{{Type:{go_quote(as_str(address.get('type')))}, "
                f"Address:{go_quote(as_str(address.get('address')))}}}"
            )
            errs.append(duplicate(f"status.addresses[{i}]", rendered))
        addresses_seen.append(address)
    spec, old_spec = as_dict(node.get("spec")), as_dict(old.get("spec"))
    old_cidrs, new_cidrs = as_list(old_spec.get("podCIDRs")), as_list(spec.get("podCIDRs"))
    podcidr_message = 'node updates may not change podCIDR except from "" to valid'
    if old_cidrs:
        if len(old_cidrs) != len(new_cidrs):
            errs.append(forbidden("spec.podCIDRs", podcidr_message))
        else:
            errs.extend(
                forbidden("spec.podCIDRs", podcidr_message)
                for old_cidr, new_cidr in zip(old_cidrs, new_cidrs, strict=True)
                if old_cidr != new_cidr
            )
    old_provider = as_str(old_spec.get("providerID"))
    if old_provider and old_provider != as_str(spec.get("providerID")):
        errs.append(
            forbidden("spec.providerID", 'node updates may not change providerID except from "" to valid')
        )
    return errs


# --------------------------------------------------------------------------------------------
# Event (core/v1, legacy validation)


def validate_event(event: Any) -> list[FieldError]:
    event = as_dict(event)
    meta = as_dict(event.get("metadata"))
    errs = validate_object_meta(meta, True, name_is_dns_subdomain)
    namespace = as_str(meta.get("namespace"))
    involved_namespace = as_str(as_dict(event.get("involvedObject")).get("namespace"))
    new_style = bool(event.get("eventTime"))
    if involved_namespace:
        # Old-style events name their object's namespace; new-style ones are not checked here.
        mismatch = not new_style and namespace != involved_namespace
    else:
        # An empty one is tolerated where old clients and cluster-scoped objects put events.
        mismatch = namespace not in (("default", "kube-system") if new_style else ("", "default"))
    if mismatch:
        errs.append(
            invalid_value("involvedObject.namespace", involved_namespace, "does not match event.namespace")
        )
    if new_style:
        reporting = as_str(event.get("reportingComponent"))
        if not reporting:
            errs.append(required("reportingComponent"))
        errs.extend(validate_qualified_name(reporting, "reportingComponent"))
        for key in ("reportingInstance", "action", "reason"):
            value = as_str(event.get(key))
            if not value:
                errs.append(required(key))
            if len(value) > 128:
                errs.append(invalid_value(key, "", "can have at most 128 characters"))
        if len(as_str(event.get("message"))) > 1024:
            errs.append(invalid_value("message", "", "can have at most 1024 characters"))
    errs.extend(invalid_value("namespace", namespace, m) for m in is_dns1123_subdomain(namespace))
    return errs


def validate_event_update(event: Any, old: Any) -> list[FieldError]:
    errs = validate_object_meta_update(as_dict(event).get("metadata"), as_dict(old).get("metadata"))
    errs.extend(validate_event(event))
    return errs


# --------------------------------------------------------------------------------------------
# Lease


def _validate_lease_spec(spec: Any) -> list[FieldError]:
    spec = as_dict(spec)
    errs: list[FieldError] = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and as_int(duration) <= 0:
        errs.append(invalid_value("spec.leaseDurationSeconds", as_int(duration), "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if transitions is not None and as_int(transitions) < 0:
        errs.append(
            invalid_value("spec.leaseTransitions", as_int(transitions), "must be greater than or equal to 0")
        )
    if spec.get("strategy") is not None:
        errs.extend(validate_qualified_name(as_str(spec.get("strategy")), "spec.strategy"))
    if spec.get("preferredHolder") not in (None, "") and spec.get("strategy") in (None, ""):
        errs.append(forbidden("spec.preferredHolder", "may only be specified if `strategy` is defined"))
    return errs


def validate_lease(lease: Any) -> list[FieldError]:
    lease = as_dict(lease)
    errs = validate_object_meta(lease.get("metadata"), True, name_is_dns_subdomain)
    errs.extend(_validate_lease_spec(lease.get("spec")))
    return errs


def validate_lease_update(lease: Any, old: Any) -> list[FieldError]:
    errs = validate_object_meta_update(as_dict(lease).get("metadata"), as_dict(old).get("metadata"))
    errs.extend(_validate_lease_spec(as_dict(lease).get("spec")))
    return errs
