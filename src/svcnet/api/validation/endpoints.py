"""Endpoints (pkg/apis/core/validation ValidateEndpoints) and discovery.k8s.io/v1
EndpointSlice (pkg/apis/discovery/validation) validation."""

from __future__ import annotations

from typing import Any

from svcnet.api.errors import (
    FieldError,
    duplicate,
    invalid_value,
    not_supported,
    required,
    too_many,
)
from svcnet.api.validation.common import (
    PORT_PROTOCOLS,
    as_dict,
    as_int,
    as_list,
    as_str,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_valid_ip,
    is_valid_ipv4_address,
    is_valid_ipv6_address,
    is_valid_label_value,
    is_valid_port_num,
    name_is_dns_subdomain,
    validate_dns1123_label,
    validate_immutable,
    validate_labels,
    validate_non_special_ip,
    validate_qualified_name,
    validate_required_enum,
)
from svcnet.api.validation.meta import validate_object_meta, validate_object_meta_update

ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")  # sorted, as sets.List
MAX_TOPOLOGY_LABELS = 16
MAX_ADDRESSES = 100
MAX_PORTS = 20000
MAX_ENDPOINTS = 1000
MAX_ZONE_HINTS = 8

# --------------------------------------------------------------------------------------------
# v1 Endpoints


def _validate_endpoint_address(address: dict[str, Any], path: str) -> list[FieldError]:
    ip = as_str(address.get("ip"))
    errs = is_valid_ip(f"{path}.ip", ip)
    hostname = as_str(address.get("hostname"))
    if hostname:
        errs.extend(validate_dns1123_label(hostname, f"{path}.hostname"))
    if address.get("nodeName") is not None:
        node_name = as_str(address.get("nodeName"))
        errs.extend(
            invalid_value(f"{path}.nodeName", node_name, m) for m in name_is_dns_subdomain(node_name, False)
        )
    errs.extend(validate_non_special_ip(ip, f"{path}.ip"))
    return errs


def _validate_endpoint_port(port: dict[str, Any], require_name: bool, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    name = as_str(port.get("name"))
    if require_name and not name:
        errs.append(required(f"{path}.name"))
    elif name:
        errs.extend(validate_dns1123_label(name, f"{path}.name"))
    number = as_int(port.get("port"))
    errs.extend(invalid_value(f"{path}.port", number, m) for m in is_valid_port_num(number))
    protocol = as_str(port.get("protocol"))
    errs.extend(validate_required_enum(protocol, f"{path}.protocol", PORT_PROTOCOLS))
    if port.get("appProtocol") is not None:
        errs.extend(validate_qualified_name(as_str(port.get("appProtocol")), f"{path}.appProtocol"))
    return errs


def validate_endpoints(endpoints: Any) -> list[FieldError]:
    endpoints = as_dict(endpoints)
    errs = validate_object_meta(endpoints.get("metadata"), True, name_is_dns_subdomain)
    for i, subset in enumerate(as_list(endpoints.get("subsets"))):
        subset = as_dict(subset)
        path = f"subsets[{i}]"
        addresses = as_list(subset.get("addresses"))
        not_ready = as_list(subset.get("notReadyAddresses"))
        if not addresses and not not_ready:
            errs.append(required(path, "must specify `addresses` or `notReadyAddresses`"))
        for j, address in enumerate(addresses):
            errs.extend(_validate_endpoint_address(as_dict(address), f"{path}.addresses[{j}]"))
        for j, address in enumerate(not_ready):
            errs.extend(_validate_endpoint_address(as_dict(address), f"{path}.notReadyAddresses[{j}]"))
        ports = as_list(subset.get("ports"))
        for j, port in enumerate(ports):
            errs.extend(_validate_endpoint_port(as_dict(port), len(ports) > 1, f"{path}.ports[{j}]"))
    return errs


def validate_endpoints_update(endpoints: Any, old: Any) -> list[FieldError]:
    errs = validate_object_meta_update(as_dict(endpoints).get("metadata"), as_dict(old).get("metadata"))
    errs.extend(validate_endpoints(endpoints))
    return errs


# --------------------------------------------------------------------------------------------
# discovery.k8s.io/v1 EndpointSlice


def _is_fully_qualified_domain_name(path: str, name: str) -> list[FieldError]:
    if not name:
        return [required(path)]
    name = name.removesuffix(".")
    messages = is_dns1123_subdomain(name)
    if messages:
        return [invalid_value(path, name, ",".join(messages))]
    labels = name.split(".")
    if len(labels) < 2:
        return [invalid_value(path, name, "should be a domain with at least two segments separated by dots")]
    for label in labels:
        label_messages = is_dns1123_label(label)
        if label_messages:
            return [invalid_value(path, label, ",".join(label_messages))]
    return []


def _validate_slice_endpoints(endpoints: list[Any], address_type: str) -> list[FieldError]:
    if len(endpoints) > MAX_ENDPOINTS:
        return [too_many("endpoints", len(endpoints), MAX_ENDPOINTS)]
    errs: list[FieldError] = []
    for i, endpoint in enumerate(endpoints):
        endpoint = as_dict(endpoint)
        path = f"endpoints[{i}]"
        addresses = as_list(endpoint.get("addresses"))
        if not addresses:
            errs.append(required(f"{path}.addresses", "must contain at least 1 address"))
        elif len(addresses) > MAX_ADDRESSES:
            errs.append(too_many(f"{path}.addresses", len(addresses), MAX_ADDRESSES))
        for j, address in enumerate(addresses):
            address_path = f"{path}.addresses[{j}]"
            text = as_str(address)
            if address_type == "IPv4":
                errs.extend(is_valid_ipv4_address(address_path, text))
                errs.extend(validate_non_special_ip(text, address_path))
            elif address_type == "IPv6":
                errs.extend(is_valid_ipv6_address(address_path, text))
                errs.extend(validate_non_special_ip(text, address_path))
            elif address_type == "FQDN":
                errs.extend(_is_fully_qualified_domain_name(address_path, text))
        if endpoint.get("nodeName") is not None:
            node_name = as_str(endpoint.get("nodeName"))
            errs.extend(
                invalid_value(f"{path}.nodeName", node_name, m)
                for m in name_is_dns_subdomain(node_name, False)
            )
        topology = as_dict(endpoint.get("deprecatedTopology"))
        if len(topology) > MAX_TOPOLOGY_LABELS:
            errs.append(too_many(f"{path}.deprecatedTopology", len(topology), MAX_TOPOLOGY_LABELS))
        errs.extend(validate_labels(topology, f"{path}.deprecatedTopology"))
        if endpoint.get("hostname") is not None:
            errs.extend(validate_dns1123_label(as_str(endpoint.get("hostname")), f"{path}.hostname"))
        hints = endpoint.get("hints")
        if hints is not None:
            errs.extend(_validate_hints(as_dict(hints), f"{path}.hints"))
        conditions = as_dict(endpoint.get("conditions"))
        for key in ("ready", "serving", "terminating"):
            value = conditions.get(key)
            if value is not None and not isinstance(value, bool):
                errs.append(invalid_value(f"{path}.conditions.{key}", value, "must be a boolean"))
    return errs


def _validate_hints(hints: dict[str, Any], path: str) -> list[FieldError]:
    zones = as_list(hints.get("forZones"))
    if len(zones) > MAX_ZONE_HINTS:
        return [too_many(f"{path}.forZones", len(zones), MAX_ZONE_HINTS)]
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, zone in enumerate(zones):
        name = as_str(as_dict(zone).get("name"))
        zone_path = f"{path}.forZones[{i}].name"
        if name in seen:
            errs.append(duplicate(zone_path, name))
        else:
            seen.add(name)
        errs.extend(invalid_value(zone_path, name, m) for m in is_valid_label_value(name))
    return errs


def _validate_slice_ports(ports: list[Any]) -> list[FieldError]:
    if len(ports) > MAX_PORTS:
        return [too_many("ports", len(ports), MAX_PORTS)]
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        port = as_dict(port)
        path = f"ports[{i}]"
        name = as_str(port.get("name"))
        if name:
            errs.extend(validate_dns1123_label(name, f"{path}.name"))
        if name in names:
            errs.append(duplicate(f"{path}.name", name))
        else:
            names.add(name)
        if port.get("protocol") is None:
            errs.append(required(f"{path}.protocol"))
        elif as_str(port.get("protocol")) not in PORT_PROTOCOLS:
            errs.append(not_supported(f"{path}.protocol", as_str(port.get("protocol")), PORT_PROTOCOLS))
        if port.get("appProtocol") is not None:
            errs.extend(validate_qualified_name(as_str(port.get("appProtocol")), f"{path}.appProtocol"))
    return errs


def validate_endpoint_slice(slice_: Any) -> list[FieldError]:
    slice_ = as_dict(slice_)
    errs = validate_object_meta(slice_.get("metadata"), True, name_is_dns_subdomain)
    address_type = as_str(slice_.get("addressType"))
    errs.extend(validate_required_enum(address_type, "addressType", ADDRESS_TYPES))
    errs.extend(_validate_slice_endpoints(as_list(slice_.get("endpoints")), address_type))
    errs.extend(_validate_slice_ports(as_list(slice_.get("ports"))))
    return errs


def validate_endpoint_slice_update(slice_: Any, old: Any) -> list[FieldError]:
    slice_, old = as_dict(slice_), as_dict(old)
    errs = validate_object_meta_update(slice_.get("metadata"), old.get("metadata"))
    errs.extend(validate_endpoint_slice(slice_))
    errs.extend(
        validate_immutable(as_str(slice_.get("addressType")), as_str(old.get("addressType")), "addressType")
    )
    return errs
