"""Registry strategies: what kube-apiserver does to an object between decoding (defaults) and
validation, per kind (kubernetes/kubernetes pkg/registry/*/strategy.go).

* ``prepare_for_create(obj)``: clear or initialise status, set metadata.generation to 1 for
  kinds that track it, Service clusterIP/clusterIPs normalisation, Namespace finalizers.
* ``prepare_for_update(new, old)``: keep the stored status, bump generation when the spec
  changed (kinds that track it), Service patchAllocatedValues, normalizeClusterIPs and
  dropTypeDependentFields.
* ``prepare_for_status_update(new, old)``: a /status write keeps the stored spec.
* ``init_ip_family_fields(svc, old, cluster_families)``: the ipFamilyPolicy/ipFamilies
  defaulting that upstream does at allocation time (storage/alloc.go initIPFamilyFields),
  pure so the ClusterIP allocator can call it.

All functions mutate ``new``/``obj`` in place and never modify ``old``. Services, Pods,
Namespaces, Nodes, Endpoints, Events and Leases do not track generation upstream (1.32).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from svcnet.api.defaults import LABEL_METADATA_NAME
from svcnet.api.errors import FieldError, invalid_value
from svcnet.api.validation.common import as_dict, as_int, as_list, as_str, go_slice, ip_family_of
from svcnet.api.validation.common import semantic_equal as _semantic_equal
from svcnet.api.validation.quantity import parse_quantity
from svcnet.api.validation.service import externally_accessible, validate_cluster_ips_related_fields


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    return meta


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    return spec


def _keep_old(new: dict[str, Any], old: dict[str, Any], key: str) -> None:
    """new[key] = a copy of old[key] (absent stays absent)."""
    if key in old:
        new[key] = copy.deepcopy(old[key])
    else:
        new.pop(key, None)


def _keep_old_generation(new: dict[str, Any], old: dict[str, Any]) -> None:
    # rest.BeforeUpdate: requests cannot set generation; strategies bump it from the old one.
    old_meta = as_dict(old.get("metadata"))
    if "generation" in old_meta:
        _meta(new)["generation"] = old_meta["generation"]
    else:
        _meta(new).pop("generation", None)


def _bump_generation_if(new: dict[str, Any], old: dict[str, Any], changed: bool) -> None:
    _keep_old_generation(new, old)
    if changed:
        _meta(new)["generation"] = as_int(as_dict(old.get("metadata")).get("generation")) + 1


# --------------------------------------------------------------------------------------------
# Service (pkg/registry/core/service/strategy.go)


def _needs_cluster_ip(spec: dict[str, Any]) -> bool:
    return spec.get("type") != "ExternalName"


def _needs_node_port(spec: dict[str, Any]) -> bool:
    return spec.get("type") in ("NodePort", "LoadBalancer")


def _needs_hc_node_port(spec: dict[str, Any]) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def _same(new: dict[str, Any], old: dict[str, Any], key: str) -> bool:
    return _semantic_equal(new.get(key), old.get(key))


def _same_node_ports(new: dict[str, Any], old: dict[str, Any]) -> bool:
    new_ports, old_ports = as_list(new.get("ports")), as_list(old.get("ports"))
    if len(new_ports) != len(old_ports):
        return False
    return all(
        as_int(as_dict(n).get("nodePort")) == as_int(as_dict(o).get("nodePort"))
        for n, o in zip(new_ports, old_ports, strict=True)
    )


def normalize_cluster_ips(new: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Keep clusterIP and clusterIPs in step for clients that set only the singular field."""
    spec = _spec(new)
    cluster_ip = as_str(spec.get("clusterIP"))
    if old is None:
        if cluster_ip and not as_list(spec.get("clusterIPs")):
            spec["clusterIPs"] = [cluster_ip]
        return
    old_spec = as_dict(old.get("spec"))
    old_cluster_ip = as_str(old_spec.get("clusterIP"))
    # An old client patching something else dropped clusterIPs but kept clusterIP.
    if (
        as_list(old_spec.get("clusterIPs"))
        and not as_list(spec.get("clusterIPs"))
        and old_cluster_ip == cluster_ip
    ):
        spec["clusterIPs"] = copy.deepcopy(old_spec["clusterIPs"])
    if old_cluster_ip != cluster_ip:
        same_ips = _same(spec, old_spec, "clusterIPs")
        if old_cluster_ip and not cluster_ip:
            # The client cleared clusterIP: clear clusterIPs on its behalf.
            if same_ips:
                spec.pop("clusterIPs", None)
        elif same_ips:
            spec["clusterIPs"] = [cluster_ip]


def patch_allocated_values(new: dict[str, Any], old: dict[str, Any]) -> None:
    """Copy allocated values (clusterIP(s), nodePorts matched by port name, healthCheckNodePort)
    from the stored object when an update omits them, as kubectl apply/replace bodies do."""
    spec, old_spec = _spec(new), as_dict(old.get("spec"))
    if _needs_cluster_ip(old_spec) and _needs_cluster_ip(spec):
        if not as_str(spec.get("clusterIP")) and old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
        if not as_list(spec.get("clusterIPs")) and as_list(old_spec.get("clusterIPs")):
            spec["clusterIPs"] = copy.deepcopy(old_spec["clusterIPs"])
    if _needs_node_port(old_spec) and _needs_node_port(spec):
        new_ports = [p for p in as_list(spec.get("ports")) if isinstance(p, dict)]
        old_ports = [p for p in as_list(old_spec.get("ports")) if isinstance(p, dict)]
        # Node ports present in both objects cannot be handed to another port.
        used = {as_int(p.get("nodePort")) for p in old_ports if as_int(p.get("nodePort"))} & {
            as_int(p.get("nodePort")) for p in new_ports if as_int(p.get("nodePort"))
        }
        by_name = {as_str(p.get("name")): as_int(p.get("nodePort")) for p in old_ports}
        for port in new_ports:
            if as_int(port.get("nodePort")) == 0:
                old_value = by_name.get(as_str(port.get("name")), 0)
                if old_value and old_value not in used:
                    port["nodePort"] = old_value
    if (
        _needs_hc_node_port(old_spec)
        and _needs_hc_node_port(spec)
        and as_int(spec.get("healthCheckNodePort")) == 0
        and old_spec.get("healthCheckNodePort")
    ):
        spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]


def drop_type_dependent_fields(new: dict[str, Any], old: dict[str, Any]) -> None:
    """Wipe fields the new type no longer uses, but only those the user did not change (a
    changed value is left for validation to reject)."""
    spec, old_spec = _spec(new), as_dict(old.get("spec"))
    if _needs_cluster_ip(old_spec) and not _needs_cluster_ip(spec):
        if _same(spec, old_spec, "clusterIP") and _same(spec, old_spec, "clusterIPs"):
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        if _same(spec, old_spec, "ipFamilies"):
            spec.pop("ipFamilies", None)
        if _same(spec, old_spec, "ipFamilyPolicy"):
            spec.pop("ipFamilyPolicy", None)
    if _needs_node_port(old_spec) and not _needs_node_port(spec) and _same_node_ports(spec, old_spec):
        for port in as_list(spec.get("ports")):
            if isinstance(port, dict):
                port.pop("nodePort", None)
    if (
        _needs_hc_node_port(old_spec)
        and not _needs_hc_node_port(spec)
        and as_int(spec.get("healthCheckNodePort")) == as_int(old_spec.get("healthCheckNodePort"))
    ):
        spec.pop("healthCheckNodePort", None)
    if old_spec.get("type") == "LoadBalancer" and spec.get("type") != "LoadBalancer":
        allocate, old_allocate = (
            spec.get("allocateLoadBalancerNodePorts"),
            old_spec.get("allocateLoadBalancerNodePorts"),
        )
        if allocate is not None and old_allocate is not None and allocate == old_allocate:
            spec.pop("allocateLoadBalancerNodePorts", None)
        if spec.get("loadBalancerClass") == old_spec.get("loadBalancerClass"):
            spec.pop("loadBalancerClass", None)
    if (
        externally_accessible(old)
        and not externally_accessible(new)
        and _same(spec, old_spec, "externalTrafficPolicy")
    ):
        spec.pop("externalTrafficPolicy", None)
    if spec.get("type") != "LoadBalancer":
        status = new.get("status")
        if isinstance(status, dict):
            status["loadBalancer"] = {}


def _service_create(svc: dict[str, Any]) -> None:
    svc["status"] = {"loadBalancer": {}}
    normalize_cluster_ips(svc, None)


def _service_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    _keep_old(new, old, "status")
    patch_allocated_values(new, old)
    normalize_cluster_ips(new, old)
    drop_type_dependent_fields(new, old)


def _ip_family_policy(spec: dict[str, Any]) -> str:
    return as_str(spec.get("ipFamilyPolicy"))


def init_ip_family_fields(
    svc: dict[str, Any], old: dict[str, Any] | None, cluster_families: list[str]
) -> list[FieldError]:
    """Default spec.ipFamilyPolicy and spec.ipFamilies as kube-apiserver does just before
    allocating ClusterIPs. ``cluster_families`` is the cluster's service families, primary
    first (["IPv4"], ["IPv6"], ["IPv4", "IPv6"], ...). Returns the 422 causes, if any; the
    service is only partly defaulted then."""
    spec = _spec(svc)
    if not _needs_cluster_ip(spec):
        return []
    errs = validate_cluster_ips_related_fields(svc)
    if errs:
        return errs
    primary = cluster_families[0] if cluster_families else "IPv4"
    secondary = cluster_families[1] if len(cluster_families) > 1 else ""

    if old is not None:
        old_spec = as_dict(old.get("spec"))
        if spec.get("ipFamilyPolicy") is None and old_spec.get("ipFamilyPolicy") is not None:
            spec["ipFamilyPolicy"] = old_spec["ipFamilyPolicy"]
        # Switching to SingleStack releases the secondary IP and family when the user left them.
        if _ip_family_policy(spec) == "SingleStack":
            cluster_ips = as_list(spec.get("clusterIPs"))
            if len(cluster_ips) == 2 and _same(spec, old_spec, "clusterIPs"):
                spec["clusterIPs"] = cluster_ips[:1]
            families = as_list(spec.get("ipFamilies"))
            if len(families) == 2 and _same(spec, old_spec, "ipFamilies"):
                spec["ipFamilies"] = families[:1]

    cluster_ips = [as_str(ip) for ip in as_list(spec.get("clusterIPs"))]
    families = [as_str(f) for f in as_list(spec.get("ipFamilies"))]
    errs = []
    # Infer families from the requested IPs.
    for i, ip in enumerate(cluster_ips):
        if ip == "None":
            break
        family = ip_family_of(ip)
        if family is None or i < len(families):
            continue
        if family not in cluster_families:
            errs.append(
                invalid_value(
                    f"spec.clusterIPs[{i}]",
                    go_slice(spec.get("clusterIPs")),
                    f"{family} is not configured on this cluster",
                )
            )
        else:
            families.append(family)
    if errs:
        return errs
    if families:
        spec["ipFamilies"] = families
    if spec.get("ipFamilyPolicy") is None and len(families) == 2:
        spec["ipFamilyPolicy"] = "RequireDualStack"

    # Headless without a selector: no IPs are allocated, so both families are allowed
    # whatever the cluster runs, and the default is dual-stack.
    if (
        spec.get("type") == "ClusterIP"
        and cluster_ips
        and cluster_ips[0] == "None"
        and not as_dict(spec.get("selector"))
    ):
        if spec.get("ipFamilyPolicy") is None:
            spec["ipFamilyPolicy"] = "RequireDualStack"
        if not families:
            families = [primary]
        if _ip_family_policy(spec) != "SingleStack" and len(families) == 1:
            families.append("IPv6" if families[0] == "IPv4" else "IPv4")
        spec["ipFamilies"] = families
        return []

    if spec.get("ipFamilyPolicy") is None:
        spec["ipFamilyPolicy"] = "SingleStack"
    if _ip_family_policy(spec) == "RequireDualStack" and not secondary:
        errs.append(
            invalid_value(
                "spec.ipFamilyPolicy",
                _ip_family_policy(spec),
                "this cluster is not configured for dual-stack services",
            )
        )
    for i, family in enumerate(families):
        if family not in cluster_families:
            errs.append(invalid_value(f"spec.ipFamilies[{i}]", family, "not configured on this cluster"))
    if errs:
        return errs
    if not families:
        families = [primary]
    if _ip_family_policy(spec) != "SingleStack" and len(families) == 1 and secondary:
        families.append(secondary if families[0] == primary else primary)
    spec["ipFamilies"] = families
    return []


# --------------------------------------------------------------------------------------------
# Pod (pkg/registry/core/pod/strategy.go)


def _quantity_set(resources: Any, key: str) -> dict[str, Any]:
    return as_dict(as_dict(resources).get(key))


def _same_quantity(a: Any, b: Any) -> bool:
    qa, qb = parse_quantity(a), parse_quantity(b)
    if qa is None or qb is None:
        return str(a) == str(b)
    return qa.value == qb.value


def pod_qos_class(pod: dict[str, Any]) -> str:
    """Guaranteed, Burstable or BestEffort from container requests and limits (cpu, memory)."""
    containers = [as_dict(c) for c in as_list(_spec(pod).get("containers"))]
    containers += [as_dict(c) for c in as_list(_spec(pod).get("initContainers"))]
    any_set = False
    guaranteed = True
    for ctr in containers:
        resources = ctr.get("resources")
        requests, limits = _quantity_set(resources, "requests"), _quantity_set(resources, "limits")
        for name in ("cpu", "memory"):
            if name in requests or name in limits:
                any_set = True
            if name not in limits or (name in requests and not _same_quantity(requests[name], limits[name])):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _pod_create(pod: dict[str, Any]) -> None:
    status: dict[str, Any] = {"phase": "Pending", "qosClass": pod_qos_class(pod)}
    if as_list(_spec(pod).get("schedulingGates")):
        status["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "SchedulingGated",
                "message": "Scheduling is blocked due to non-empty scheduling gates",
                "lastProbeTime": None,
                "lastTransitionTime": None,
            }
        ]
    pod["status"] = status


def _pod_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    _keep_old(new, old, "status")


def _pod_status_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    _keep_old(new, old, "spec")
    # Old kubelets corrupt ownerReferences; pods/status may not touch them.
    meta, old_meta = _meta(new), as_dict(old.get("metadata"))
    _keep_old(meta, old_meta, "ownerReferences")
    _keep_old(meta, old_meta, "deletionTimestamp")
    # The QoS class is set at creation; old kubelets dropped it, so it is backfilled.
    status = new.get("status")
    old_qos = as_dict(old.get("status")).get("qosClass")
    if isinstance(status, dict) and not status.get("qosClass") and old_qos:
        status["qosClass"] = old_qos


# --------------------------------------------------------------------------------------------
# Namespace, Node, EndpointSlice, workloads


def _namespace_canonicalize(ns: dict[str, Any]) -> None:
    name = as_str(_meta(ns).get("name"))
    if name:
        labels = _meta(ns).get("labels")
        if not isinstance(labels, dict):
            labels = _meta(ns)["labels"] = {}
        labels[LABEL_METADATA_NAME] = name


def _namespace_create(ns: dict[str, Any]) -> None:
    ns["status"] = {"phase": "Active"}
    spec = _spec(ns)
    finalizers = list(as_list(spec.get("finalizers")))
    if "kubernetes" not in finalizers:
        finalizers.append("kubernetes")
    spec["finalizers"] = finalizers
    _namespace_canonicalize(ns)


def _namespace_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    # Finalizers change only through /finalize, status only through /status.
    spec = _spec(new)
    _keep_old(spec, as_dict(old.get("spec")), "finalizers")
    _keep_old(new, old, "status")
    _namespace_canonicalize(new)


def _endpoint_slice_create(slice_: dict[str, Any]) -> None:
    _meta(slice_)["generation"] = 1


def _endpoint_slice_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    body_new = {k: v for k, v in new.items() if k != "metadata"}
    body_old = {k: v for k, v in old.items() if k != "metadata"}
    labels_changed = not _semantic_equal(_meta(new).get("labels"), as_dict(old.get("metadata")).get("labels"))
    _bump_generation_if(new, old, not _semantic_equal(body_new, body_old) or labels_changed)


def _workload_create(obj: dict[str, Any]) -> None:
    obj["status"] = {}
    _meta(obj)["generation"] = 1


def _deployment_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    _keep_old(new, old, "status")
    # Annotations count too: a rollback is requested through one.
    changed = not _semantic_equal(new.get("spec"), old.get("spec")) or not _semantic_equal(
        _meta(new).get("annotations"), as_dict(old.get("metadata")).get("annotations")
    )
    _bump_generation_if(new, old, changed)


def _statefulset_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    _keep_old(new, old, "status")
    _bump_generation_if(new, old, not _semantic_equal(new.get("spec"), old.get("spec")))


def _deployment_status_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    _keep_old(new, old, "spec")
    _keep_old(_meta(new), as_dict(old.get("metadata")), "labels")
    _keep_old_generation(new, old)


def _spec_kept_status_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    _keep_old(new, old, "spec")


def _status_kept_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    _keep_old(new, old, "status")


_Create = Callable[[dict[str, Any]], None]
_Update = Callable[[dict[str, Any], dict[str, Any]], None]

_CREATE: dict[tuple[str, str], _Create] = {
    ("v1", "Service"): _service_create,
    ("v1", "Pod"): _pod_create,
    ("v1", "Namespace"): _namespace_create,
    ("discovery.k8s.io/v1", "EndpointSlice"): _endpoint_slice_create,
    ("apps/v1", "Deployment"): _workload_create,
    ("apps/v1", "StatefulSet"): _workload_create,
    # Nodes may be created with status; Endpoints, Events and Leases have no status.
}

_UPDATE: dict[tuple[str, str], _Update] = {
    ("v1", "Service"): _service_update,
    ("v1", "Pod"): _pod_update,
    ("v1", "Namespace"): _namespace_update,
    ("v1", "Node"): _status_kept_update,
    ("discovery.k8s.io/v1", "EndpointSlice"): _endpoint_slice_update,
    ("apps/v1", "Deployment"): _deployment_update,
    ("apps/v1", "StatefulSet"): _statefulset_update,
}

_STATUS_UPDATE: dict[tuple[str, str], _Update] = {
    ("v1", "Service"): _spec_kept_status_update,
    ("v1", "Pod"): _pod_status_update,
    ("v1", "Namespace"): _spec_kept_status_update,
    ("v1", "Node"): _spec_kept_status_update,
    ("apps/v1", "Deployment"): _deployment_status_update,
    ("apps/v1", "StatefulSet"): _spec_kept_status_update,
}

_TRACKS_GENERATION = {
    ("discovery.k8s.io/v1", "EndpointSlice"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
}


def _kind_of(obj: Any) -> tuple[str, str]:
    if not isinstance(obj, dict):
        return ("", "")
    return (str(obj.get("apiVersion") or ""), str(obj.get("kind") or ""))


def tracks_generation(api_version: str, kind: str) -> bool:
    """Whether the strategy sets metadata.generation=1 on create and bumps it on change."""
    return (api_version, kind) in _TRACKS_GENERATION


def prepare_for_create(obj: dict[str, Any]) -> None:
    if not isinstance(obj, dict):
        return
    handler = _CREATE.get(_kind_of(obj))
    if handler is not None:
        handler(obj)


def prepare_for_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    if not isinstance(new, dict) or not isinstance(old, dict):
        return
    handler = _UPDATE.get(_kind_of(new))
    if handler is not None:
        handler(new, old)
    if _kind_of(new) not in _TRACKS_GENERATION:
        _keep_old_generation(new, old)


def prepare_for_status_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    if not isinstance(new, dict) or not isinstance(old, dict):
        return
    handler = _STATUS_UPDATE.get(_kind_of(new))
    if handler is not None:
        handler(new, old)
    else:
        _keep_old(new, old, "spec")
    _keep_old_generation(new, old)


__all__ = [
    "drop_type_dependent_fields",
    "init_ip_family_fields",
    "normalize_cluster_ips",
    "patch_allocated_values",
    "pod_qos_class",
    "prepare_for_create",
    "prepare_for_status_update",
    "prepare_for_update",
    "tracks_generation",
]
