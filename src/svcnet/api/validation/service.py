"""Service validation: kubernetes/kubernetes pkg/apis/core/validation ValidateService,
ValidateServiceUpdate and ValidateServiceStatusUpdate, rule for rule and in upstream's order
(the order of causes in a 422 is part of what users see).

Two upstream quirks are kept on purpose: the source-ranges field path is spelled
``spec.LoadBalancerSourceRanges`` and the missing allocateLoadBalancerNodePorts error is
reported on the path ``allocateLoadBalancerNodePorts`` without ``spec.``.
"""

from __future__ import annotations

from typing import Any

from svcnet.api.errors import (
    FieldError,
    duplicate,
    forbidden,
    invalid_value,
    not_supported,
    required,
)
from svcnet.api.validation.common import (
    PORT_PROTOCOLS,
    GoValue,
    as_dict,
    as_int,
    as_list,
    as_str,
    go_quote,
    go_slice,
    ip_family_of,
    is_dual_stack,
    is_valid_cidr,
    is_valid_ip,
    is_valid_port_num,
    name_is_dns1035_label,
    validate_dns1123_label,
    validate_dns1123_subdomain,
    validate_labels,
    validate_non_special_ip,
    validate_port_num_or_name,
    validate_qualified_name,
    validate_required_enum,
)
from svcnet.api.validation.meta import validate_object_meta, validate_object_meta_update

SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")  # sorted, as sets.List
SESSION_AFFINITY_TYPES = ("ClientIP", "None")
TRAFFIC_POLICIES = ("Cluster", "Local")
IP_FAMILIES = ("IPv4", "IPv6")
IP_FAMILY_POLICIES = ("PreferDualStack", "RequireDualStack", "SingleStack")
LOAD_BALANCER_IP_MODES = ("Proxy", "VIP")
MAX_CLIENT_IP_AFFINITY_SECONDS = 86400

ANNOTATION_TOPOLOGY_MODE = "service.kubernetes.io/topology-mode"
ANNOTATION_TOPOLOGY_HINTS = "service.kubernetes.io/topology-aware-hints"
ANNOTATION_LB_SOURCE_RANGES = "service.beta.kubernetes.io/load-balancer-source-ranges"


# --------------------------------------------------------------------------------------------
# Predicates shared with the registry strategy (pkg/api/service/util.go)


def spec_of(svc: Any) -> dict[str, Any]:
    return as_dict(as_dict(svc).get("spec"))


def is_headless(svc: Any) -> bool:
    cluster_ips = as_list(spec_of(svc).get("clusterIPs"))
    return len(cluster_ips) == 1 and cluster_ips[0] == "None"


def externally_accessible(svc: Any) -> bool:
    spec = spec_of(svc)
    svc_type = spec.get("type")
    return svc_type in ("LoadBalancer", "NodePort") or (
        svc_type == "ClusterIP" and len(as_list(spec.get("externalIPs"))) > 0
    )


def needs_health_check(svc: Any) -> bool:
    spec = spec_of(svc)
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def _go_ip_families(values: Any) -> GoValue:
    return go_slice(values, "[]core.IPFamily")


def _go_service_port(protocol: str, port: int) -> GoValue:
    """%#v of core.ServicePort{Protocol, Port}: what upstream prints for a duplicate port."""
    return GoValue(
        f'core.ServicePort{{Name:"", Protocol:{go_quote(protocol)}, AppProtocol:(*string)(nil), '
        f'Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:""}}, NodePort:0}}'
    )


def _policy_value(spec: dict[str, Any]) -> Any:
    policy = spec.get("ipFamilyPolicy")
    return GoValue("null") if policy is None else as_str(policy)


# --------------------------------------------------------------------------------------------
# Create


def _validate_service_port(
    port: dict[str, Any], require_name: bool, names: set[str], path: str
) -> list[FieldError]:
    errs: list[FieldError] = []
    name = as_str(port.get("name"))
    if require_name and not name:
        errs.append(required(f"{path}.name"))
    elif name:
        errs.extend(validate_dns1123_label(name, f"{path}.name"))
        if name in names:
            errs.append(duplicate(f"{path}.name", name))
        else:
            names.add(name)
    number = as_int(port.get("port"))
    errs.extend(invalid_value(f"{path}.port", number, m) for m in is_valid_port_num(number))
    protocol = as_str(port.get("protocol"))
    errs.extend(validate_required_enum(protocol, f"{path}.protocol", PORT_PROTOCOLS))
    errs.extend(validate_port_num_or_name(port.get("targetPort"), f"{path}.targetPort"))
    if port.get("appProtocol") is not None:
        errs.extend(validate_qualified_name(as_str(port.get("appProtocol")), f"{path}.appProtocol"))
    # Headless services may have targetPort != port: tolerated for v1 compatibility.
    return errs


def _validate_client_ip_affinity(config: Any, path: str) -> list[FieldError]:
    detail = "when session affinity type is ClientIP"
    if config is None:
        return [required(path, detail)]
    client_ip = as_dict(config).get("clientIP")
    if client_ip is None:
        return [required(f"{path}.clientIP", detail)]
    timeout = as_dict(client_ip).get("timeoutSeconds")
    if timeout is None:
        return [required(f"{path}.clientIP.timeoutSeconds", detail)]
    timeout = as_int(timeout)
    if timeout <= 0 or timeout > MAX_CLIENT_IP_AFFINITY_SECONDS:
        return [
            invalid_value(
                f"{path}.clientIP.timeoutSeconds",
                timeout,
                f"must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}",
            )
        ]
    return []


def validate_cluster_ips_related_fields(svc: Any) -> list[FieldError]:
    """ValidateServiceClusterIPsRelatedFields: clusterIP(s), ipFamilies and ipFamilyPolicy
    consistency. Exported because allocation runs it again after defaulting families."""
    spec = spec_of(svc)
    if spec.get("type") == "ExternalName":
        return []
    errs: list[FieldError] = []
    cluster_ip = as_str(spec.get("clusterIP"))
    cluster_ips = [as_str(ip) for ip in as_list(spec.get("clusterIPs"))]
    families = [as_str(f) for f in as_list(spec.get("ipFamilies"))]
    rendered_ips = go_slice(spec.get("clusterIPs"))

    if cluster_ip:
        if not cluster_ips:
            errs.append(required("spec.clusterIPs"))
        elif cluster_ips[0] != cluster_ip:
            errs.append(invalid_value("spec.clusterIPs", rendered_ips, "first value must match `clusterIP`"))
    elif cluster_ips:
        errs.append(
            invalid_value("spec.clusterIPs", rendered_ips, "must be empty when `clusterIP` is not specified")
        )

    seen: set[str] = set()
    for i, family in enumerate(families):
        if family not in IP_FAMILIES:
            errs.append(not_supported(f"spec.ipFamilies[{i}]", family, IP_FAMILIES))
        if family in seen:
            errs.append(duplicate(f"spec.ipFamilies[{i}]", family))
        seen.add(family)

    if spec.get("ipFamilyPolicy") is not None:
        policy = as_str(spec.get("ipFamilyPolicy"))
        if policy not in IP_FAMILY_POLICIES:
            errs.append(not_supported("spec.ipFamilyPolicy", policy, IP_FAMILY_POLICIES))

    has_invalid_ips = False
    for i, ip in enumerate(cluster_ips):
        if i == 0 and ip == "None":
            if len(cluster_ips) > 1:
                has_invalid_ips = True
                errs.append(
                    invalid_value("spec.clusterIPs", rendered_ips, "'None' must be the first and only value")
                )
            continue
        ip_errs = is_valid_ip(f"spec.clusterIPs[{i}]", ip)
        has_invalid_ips = has_invalid_ips or bool(ip_errs)
        errs.extend(ip_errs)

    if len(cluster_ips) > 2:
        errs.append(invalid_value("spec.clusterIPs", rendered_ips, "may only hold up to 2 values"))

    # Further checks would only repeat the problem with a bad address or a misplaced "None".
    if has_invalid_ips:
        return errs

    if len(cluster_ips) > 1 and not is_dual_stack(cluster_ips):
        errs.append(
            invalid_value(
                "spec.clusterIPs", rendered_ips, "may specify no more than one IP for each IP family"
            )
        )

    if not is_headless(svc) and cluster_ips and families:
        for i, ip in enumerate(cluster_ips):
            if i > len(families) - 1:
                break
            family = ip_family_of(ip)
            if families[i] == "IPv4" and family == "IPv6":
                errs.append(
                    invalid_value(
                        f"spec.clusterIPs[{i}]",
                        ip,
                        f"expected an IPv4 value as indicated by `ipFamilies[{i}]`",
                    )
                )
            if families[i] == "IPv6" and family != "IPv6":
                errs.append(
                    invalid_value(
                        f"spec.clusterIPs[{i}]",
                        ip,
                        f"expected an IPv6 value as indicated by `ipFamilies[{i}]`",
                    )
                )
    return errs


def _validate_load_balancer_class(old: Any, svc: Any) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = spec_of(svc)
    lb_class = spec.get("loadBalancerClass")
    if old is not None:
        old_spec = spec_of(old)
        both_lb = old_spec.get("type") == "LoadBalancer" and spec.get("type") == "LoadBalancer"
        if both_lb and old_spec.get("loadBalancerClass") != lb_class:
            errs.append(
                invalid_value(
                    "spec.loadBalancerClass",
                    GoValue("null") if lb_class is None else as_str(lb_class),
                    "may not change once set",
                )
            )
    if spec.get("type") == "LoadBalancer":
        if lb_class is not None:
            errs.extend(validate_qualified_name(as_str(lb_class), "spec.loadBalancerClass"))
    elif lb_class is not None:
        errs.append(forbidden("spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'"))
    return errs


def _validate_external_traffic_policy(svc: Any) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = spec_of(svc)
    policy = as_str(spec.get("externalTrafficPolicy"))
    if not externally_accessible(svc):
        if policy:
            errs.append(
                invalid_value(
                    "spec.externalTrafficPolicy", policy, "may only be set for externally-accessible services"
                )
            )
    elif not policy:
        errs.append(required("spec.externalTrafficPolicy"))
    elif policy not in TRAFFIC_POLICIES:
        errs.append(not_supported("spec.externalTrafficPolicy", policy, TRAFFIC_POLICIES))

    hc_port = as_int(spec.get("healthCheckNodePort"))
    if not needs_health_check(svc):
        if hc_port != 0:
            errs.append(
                invalid_value(
                    "spec.healthCheckNodePort",
                    hc_port,
                    "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
                )
            )
    elif hc_port == 0:
        errs.append(required("spec.healthCheckNodePort"))
    else:
        errs.extend(invalid_value("spec.healthCheckNodePort", hc_port, m) for m in is_valid_port_num(hc_port))
    return errs


def _validate_internal_traffic_policy(spec: dict[str, Any]) -> list[FieldError]:
    policy = spec.get("internalTrafficPolicy")
    if policy is None:
        # Not forbidden on ExternalName for historical reasons: stored objects must stay valid.
        if spec.get("type") in ("NodePort", "LoadBalancer", "ClusterIP"):
            return [required("spec.internalTrafficPolicy")]
        return []
    if as_str(policy) not in TRAFFIC_POLICIES:
        return [not_supported("spec.internalTrafficPolicy", as_str(policy), TRAFFIC_POLICIES)]
    return []


def validate_service(svc: Any) -> list[FieldError]:
    """ValidateService (create, and the tail of every update)."""
    svc = as_dict(svc)
    meta = as_dict(svc.get("metadata"))
    spec = spec_of(svc)
    errs = validate_object_meta(meta, True, name_is_dns1035_label)

    annotations = as_dict(meta.get("annotations"))
    if (
        ANNOTATION_TOPOLOGY_MODE in annotations
        and ANNOTATION_TOPOLOGY_HINTS in annotations
        and annotations[ANNOTATION_TOPOLOGY_MODE] != annotations[ANNOTATION_TOPOLOGY_HINTS]
    ):
        errs.append(
            invalid_value(
                f"metadata.annotations[{ANNOTATION_TOPOLOGY_MODE}]",
                as_str(annotations[ANNOTATION_TOPOLOGY_MODE]),
                f"must match annotations[{ANNOTATION_TOPOLOGY_HINTS}] when both are specified",
            )
        )

    svc_type = as_str(spec.get("type"))
    ports = [as_dict(p) for p in as_list(spec.get("ports"))]
    cluster_ips = as_list(spec.get("clusterIPs"))
    headless = is_headless(svc)
    if not ports and not headless and svc_type != "ExternalName":
        errs.append(required("spec.ports"))

    if svc_type in ("LoadBalancer", "NodePort") and headless:
        errs.append(
            invalid_value("spec.clusterIPs[0]", "None", f"may not be set to 'None' for {svc_type} services")
        )
    elif svc_type == "ExternalName":
        if cluster_ips:
            errs.append(forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
        if as_list(spec.get("ipFamilies")):
            errs.append(forbidden("spec.ipFamilies", "may not be set for ExternalName services"))
        if spec.get("ipFamilyPolicy") is not None:
            errs.append(forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"))
        # The value (a CNAME) may end in one "." to mark it fully qualified.
        cname = as_str(spec.get("externalName"))
        cname = cname[:-1] if cname.endswith(".") else cname
        if cname:
            errs.extend(validate_dns1123_subdomain(cname, "spec.externalName"))
        else:
            errs.append(required("spec.externalName"))

    names: set[str] = set()
    for i, port in enumerate(ports):
        errs.extend(_validate_service_port(port, len(ports) > 1, names, f"spec.ports[{i}]"))

    if spec.get("selector") is not None:
        errs.extend(validate_labels(spec.get("selector"), "spec.selector"))

    affinity = as_str(spec.get("sessionAffinity"))
    errs.extend(validate_required_enum(affinity, "spec.sessionAffinity", SESSION_AFFINITY_TYPES))
    if affinity == "ClientIP":
        errs.extend(
            _validate_client_ip_affinity(spec.get("sessionAffinityConfig"), "spec.sessionAffinityConfig")
        )
    elif affinity == "None" and spec.get("sessionAffinityConfig") is not None:
        errs.append(forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None"))

    errs.extend(validate_cluster_ips_related_fields(svc))

    for i, ip in enumerate(as_list(spec.get("externalIPs"))):
        path = f"spec.externalIPs[{i}]"
        ip_errs = is_valid_ip(path, ip)
        errs.extend(ip_errs if ip_errs else validate_non_special_ip(ip, path))

    errs.extend(validate_required_enum(svc_type, "spec.type", SERVICE_TYPES))

    if svc_type == "ClusterIP":
        for i, port in enumerate(ports):
            if as_int(port.get("nodePort")) != 0:
                errs.append(
                    forbidden(f"spec.ports[{i}].nodePort", "may not be used when `type` is 'ClusterIP'")
                )

    node_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        node_port = as_int(port.get("nodePort"))
        if node_port == 0:
            continue
        key = (as_str(port.get("protocol")), node_port)
        if key in node_ports:
            errs.append(duplicate(f"spec.ports[{i}].nodePort", node_port))
        node_ports.add(key)

    seen_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        key = (as_str(port.get("protocol")), as_int(port.get("port")))
        if key in seen_ports:
            errs.append(duplicate(f"spec.ports[{i}]", _go_service_port(*key)))
        seen_ports.add(key)

    source_ranges = as_list(spec.get("loadBalancerSourceRanges"))
    if source_ranges:
        path = "spec.LoadBalancerSourceRanges"  # sic: upstream's path
        if svc_type != "LoadBalancer":
            errs.append(forbidden(path, "may only be used when `type` is 'LoadBalancer'"))
        for i, value in enumerate(source_ranges):
            # Space padding is tolerated: a leftover of the annotation this field replaced.
            errs.extend(is_valid_cidr(f"{path}[{i}]", as_str(value).strip()))
    elif ANNOTATION_LB_SOURCE_RANGES in annotations:
        path = f"metadata.annotations[{ANNOTATION_LB_SOURCE_RANGES}]"
        if svc_type != "LoadBalancer":
            errs.append(forbidden(path, "may only be used when `type` is 'LoadBalancer'"))
        value = as_str(annotations[ANNOTATION_LB_SOURCE_RANGES]).strip()
        if value:
            for cidr in value.split(","):
                errs.extend(is_valid_cidr(path, cidr.strip()))

    if spec.get("allocateLoadBalancerNodePorts") is not None and svc_type != "LoadBalancer":
        errs.append(
            forbidden("spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'")
        )
    if svc_type == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        errs.append(required("allocateLoadBalancerNodePorts"))  # sic: upstream omits "spec."

    errs.extend(_validate_load_balancer_class(None, svc))
    errs.extend(_validate_external_traffic_policy(svc))
    errs.extend(_validate_internal_traffic_policy(spec))

    distribution = spec.get("trafficDistribution")
    if distribution is not None and distribution != "PreferClose":
        errs.append(not_supported("spec.trafficDistribution", as_str(distribution), ("PreferClose",)))
    return errs


# --------------------------------------------------------------------------------------------
# Update


def _validate_upgrade_downgrade_cluster_ips(old: Any, svc: Any) -> list[FieldError]:
    old_spec, spec = spec_of(old), spec_of(svc)
    if "ExternalName" in (spec.get("type"), old_spec.get("type")):
        return []
    if is_headless(old) and is_headless(svc):
        return []
    errs: list[FieldError] = []
    old_ips = [as_str(ip) for ip in as_list(old_spec.get("clusterIPs"))]
    new_ips = [as_str(ip) for ip in as_list(spec.get("clusterIPs"))]
    rendered = go_slice(spec.get("clusterIPs"))
    if len(old_ips) == len(new_ips):
        for i, ip in enumerate(old_ips):
            if ip != new_ips[i]:
                errs.append(invalid_value(f"spec.clusterIPs[{i}]", rendered, "may not change once set"))
    elif len(old_ips) > len(new_ips):
        if not new_ips:
            errs.append(invalid_value("spec.clusterIPs[0]", rendered, "primary clusterIP can not be unset"))
        if old_ips and new_ips and new_ips[0] != old_ips[0]:
            errs.append(invalid_value("spec.clusterIPs[0]", rendered, "may not change once set"))
        if len(new_ips) == 1 and spec.get("ipFamilyPolicy") != "SingleStack":
            errs.append(
                invalid_value(
                    "spec.ipFamilyPolicy",
                    _policy_value(spec),
                    "must be set to 'SingleStack' when releasing the secondary clusterIP",
                )
            )
    elif old_ips and new_ips[0] != old_ips[0]:
        errs.append(invalid_value("spec.clusterIPs[0]", rendered, "may not change once set"))
    return errs


def _validate_upgrade_downgrade_ip_families(old: Any, svc: Any) -> list[FieldError]:
    old_spec, spec = spec_of(old), spec_of(svc)
    if "ExternalName" in (spec.get("type"), old_spec.get("type")):
        return []
    if is_headless(old) != is_headless(svc) or is_headless(svc):
        return []
    errs: list[FieldError] = []
    old_families = [as_str(f) for f in as_list(old_spec.get("ipFamilies"))]
    new_families = [as_str(f) for f in as_list(spec.get("ipFamilies"))]
    rendered_families = _go_ip_families(spec.get("ipFamilies"))
    # Upstream prints the clusterIPs (not the families) in two of these messages.
    rendered_ips = go_slice(spec.get("clusterIPs"))
    if len(old_families) == len(new_families):
        for i, family in enumerate(old_families):
            if family != new_families[i]:
                errs.append(invalid_value("spec.ipFamilies[0]", rendered_families, "may not change once set"))
    elif len(old_families) > len(new_families):
        if not as_list(spec.get("clusterIPs")):
            errs.append(
                invalid_value("spec.ipFamilies[0]", rendered_families, "primary ipFamily can not be unset")
            )
        if new_families and new_families[0] != old_families[0]:
            errs.append(invalid_value("spec.ipFamilies[0]", rendered_ips, "may not change once set"))
        if len(new_families) == 1 and spec.get("ipFamilyPolicy") != "SingleStack":
            errs.append(
                invalid_value(
                    "spec.ipFamilyPolicy",
                    _policy_value(spec),
                    "must be set to 'SingleStack' when releasing the secondary ipFamily",
                )
            )
    elif old_families and new_families and new_families[0] != old_families[0]:
        errs.append(invalid_value("spec.ipFamilies[0]", rendered_ips, "may not change once set"))
    return errs


def validate_service_update(svc: Any, old: Any) -> list[FieldError]:
    """ValidateServiceUpdate: metadata, clusterIPs/ipFamilies upgrade and downgrade rules,
    loadBalancerClass and healthCheckNodePort immutability, then the full ValidateService."""
    errs = validate_object_meta_update(as_dict(svc).get("metadata"), as_dict(old).get("metadata"))
    errs.extend(_validate_upgrade_downgrade_cluster_ips(old, svc))
    errs.extend(_validate_upgrade_downgrade_ip_families(old, svc))
    errs.extend(_validate_load_balancer_class(old, svc))
    if (
        needs_health_check(old)
        and needs_health_check(svc)
        and as_int(spec_of(svc).get("healthCheckNodePort")) != as_int(spec_of(old).get("healthCheckNodePort"))
    ):
        errs.append(forbidden("spec.healthCheckNodePort", "field is immutable"))
    errs.extend(validate_service(svc))
    return errs


def validate_load_balancer_status(status: Any, path: str, spec: dict[str, Any]) -> list[FieldError]:
    """ValidateLoadBalancerStatus with AllowServiceLBStatusOnNonLB off (locked in 1.32) and
    LoadBalancerIPMode on (GA)."""
    ingress = as_list(as_dict(status).get("ingress"))
    ingress_path = f"{path}.ingress"
    if spec.get("type") != "LoadBalancer" and ingress:
        return [forbidden(ingress_path, "may only be used when `spec.type` is 'LoadBalancer'")]
    errs: list[FieldError] = []
    for i, item in enumerate(ingress):
        item = as_dict(item)
        item_path = f"{ingress_path}[{i}]"
        ip = as_str(item.get("ip"))
        if ip:
            errs.extend(is_valid_ip(f"{item_path}.ip", ip))
        ip_mode = item.get("ipMode")
        if ip_mode is None:
            if ip:
                errs.append(required(f"{item_path}.ipMode", "must be specified when `ip` is set"))
        elif not ip:
            errs.append(forbidden(f"{item_path}.ipMode", "may not be specified when `ip` is not set"))
        elif as_str(ip_mode) not in LOAD_BALANCER_IP_MODES:
            errs.append(not_supported(f"{item_path}.ipMode", as_str(ip_mode), LOAD_BALANCER_IP_MODES))
        hostname = as_str(item.get("hostname"))
        if hostname:
            errs.extend(validate_dns1123_subdomain(hostname, f"{item_path}.hostname"))
            if ip_family_of(hostname) is not None:
                errs.append(
                    invalid_value(f"{item_path}.hostname", hostname, "must be a DNS name, not an IP address")
                )
    return errs


def validate_service_status_update(svc: Any, old: Any) -> list[FieldError]:
    errs = validate_object_meta_update(as_dict(svc).get("metadata"), as_dict(old).get("metadata"))
    errs.extend(
        validate_load_balancer_status(
            as_dict(as_dict(svc).get("status")).get("loadBalancer"), "status.loadBalancer", spec_of(svc)
        )
    )
    return errs


__all__ = [
    "externally_accessible",
    "is_headless",
    "needs_health_check",
    "validate_cluster_ips_related_fields",
    "validate_load_balancer_status",
    "validate_service",
    "validate_service_status_update",
    "validate_service_update",
]
