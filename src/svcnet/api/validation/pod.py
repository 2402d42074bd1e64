"""Pod and pod-template validation: upstream's basics from pkg/apis/core/validation
(ValidatePodCreate, ValidatePodSpec, ValidatePodUpdate, ValidatePodStatusUpdate).

Covered: containers (name, image, ports, env names, volume mounts, probes, pull and
termination-message policies), volumes (name, one source), restart and DNS policies, DNS
config, node selector, names of node/service account/hostname/subdomain, tolerations, host
aliases, host-port conflicts, and the spec immutability rule on update. Not covered:
resources/quantities, security contexts, affinity and topology spread details, volume source
internals.
"""

from __future__ import annotations

import json
from typing import Any

from svcnet.api.errors import FieldError, duplicate, forbidden, invalid_value, not_supported, required
from svcnet.api.validation.common import (
    PORT_PROTOCOLS,
    as_dict,
    as_int,
    as_list,
    as_str,
    go_slice,
    inclusive_range_error,
    is_dns1123_subdomain,
    is_dual_stack,
    is_int,
    is_valid_ip,
    is_valid_label_value,
    is_valid_port_name,
    is_valid_port_num,
    name_is_dns_subdomain,
    semantic_equal,
    validate_annotations,
    validate_dns1123_label,
    validate_dns1123_subdomain,
    validate_immutable,
    validate_label_name,
    validate_labels,
    validate_nonnegative,
    validate_port_num_or_name,
    validate_qualified_name,
    validate_required_enum,
)
from svcnet.api.validation.meta import validate_object_meta, validate_object_meta_update
from svcnet.api.validation.quantity import QUANTITY_FORMAT_ERROR, Quantity, parse_quantity

RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
HTTP_SCHEMES = ("HTTP", "HTTPS")
TOLERATION_OPERATORS = ("Equal", "Exists")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
MAX_INT32 = 2**31 - 1
MAX_DNS_NAMESERVERS = 3
MAX_DNS_SEARCH_PATHS = 32
MAX_DNS_SEARCH_LIST_CHARS = 2048
_VOLUME_SOURCES = (
    "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret",
    "nfs", "iscsi", "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder",
    "cephfs", "flocker", "downwardAPI", "fc", "azureFile", "configMap", "vsphereVolume",
    "quobyte", "azureDisk", "photonPersistentDisk", "projected", "portworxVolume", "scaleIO",
    "storageos", "csi", "ephemeral", "image",
)  # fmt: skip
UPDATABLE_POD_SPEC_FIELDS = ",".join(
    (
        "`spec.containers[*].image`",
        "`spec.initContainers[*].image`",
        "`spec.activeDeadlineSeconds`",
        "`spec.tolerations` (only additions to existing tolerations)",
        "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
    )
)


def _validate_volumes(volumes: list[Any], path: str) -> tuple[set[str], list[FieldError]]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, volume in enumerate(volumes):
        volume = as_dict(volume)
        vpath = f"{path}[{i}]"
        name = as_str(volume.get("name"))
        if not name:
            errs.append(required(f"{vpath}.name"))
        else:
            errs.extend(validate_dns1123_label(name, f"{vpath}.name"))
        if name in names:
            errs.append(duplicate(f"{vpath}.name", name))
        elif name:
            names.add(name)
        sources = [key for key in _VOLUME_SOURCES if volume.get(key) is not None]
        if not sources:
            errs.append(required(vpath, "must specify a volume type"))
        for key in sources[1:]:
            errs.append(forbidden(f"{vpath}.{key}", "may not specify more than 1 volume type"))
    return names, errs


def _validate_container_ports(ports: list[Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        port = as_dict(port)
        ppath = f"{path}[{i}]"
        name = as_str(port.get("name"))
        if name:
            messages = is_valid_port_name(name)
            if messages:
                errs.extend(invalid_value(f"{ppath}.name", name, m) for m in messages)
            elif name in names:
                errs.append(duplicate(f"{ppath}.name", name))
            else:
                names.add(name)
        container_port = as_int(port.get("containerPort"))
        if container_port == 0:
            errs.append(required(f"{ppath}.containerPort"))
        else:
            errs.extend(
                invalid_value(f"{ppath}.containerPort", container_port, m)
                for m in is_valid_port_num(container_port)
            )
        host_port = as_int(port.get("hostPort"))
        if host_port != 0:
            errs.extend(
                invalid_value(f"{ppath}.hostPort", host_port, m) for m in is_valid_port_num(host_port)
            )
        protocol = as_str(port.get("protocol"))
        errs.extend(validate_required_enum(protocol, f"{ppath}.protocol", PORT_PROTOCOLS))
    return errs


def _validate_env(env: list[Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, var in enumerate(env):
        var = as_dict(var)
        name = as_str(var.get("name"))
        if not name:
            errs.append(required(f"{path}[{i}].name"))
        elif any(ord(c) < 0x20 or ord(c) > 0x7E or c == "=" for c in name):
            # RelaxedEnvironmentVariableValidation (on by default since 1.32).
            errs.append(
                invalid_value(
                    f"{path}[{i}].name",
                    name,
                    "a valid environment variable name must consist only of printable ASCII characters "
                    "other than '='",
                )
            )
    return errs


def _validate_volume_mounts(mounts: list[Any], volumes: set[str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    mount_points: set[str] = set()
    for i, mount in enumerate(mounts):
        mount = as_dict(mount)
        mpath = f"{path}[{i}]"
        name = as_str(mount.get("name"))
        if not name:
            errs.append(required(f"{mpath}.name"))
        if name not in volumes:
            errs.append(FieldError("NotFound", f"{mpath}.name", name))
        mount_path = as_str(mount.get("mountPath"))
        if not mount_path:
            errs.append(required(f"{mpath}.mountPath"))
        if mount_path in mount_points:
            errs.append(invalid_value(f"{mpath}.mountPath", mount_path, "must be unique"))
        mount_points.add(mount_path)
    return errs


def _validate_handler(handler: dict[str, Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    count = 0
    for key in ("exec", "httpGet", "tcpSocket", "grpc", "sleep"):
        action = handler.get(key)
        if action is None:
            continue
        if count > 0:
            errs.append(forbidden(f"{path}.{key}", "may not specify more than 1 handler type"))
            continue
        count += 1
        action = as_dict(action)
        if key == "exec" and not as_list(action.get("command")):
            errs.append(required(f"{path}.exec.command"))
        elif key == "httpGet":
            if not as_str(action.get("path")):
                errs.append(required(f"{path}.httpGet.path"))
            errs.extend(validate_port_num_or_name(action.get("port"), f"{path}.httpGet.port"))
            scheme = as_str(action.get("scheme"))
            if scheme not in HTTP_SCHEMES:
                errs.append(not_supported(f"{path}.httpGet.scheme", scheme, HTTP_SCHEMES))
        elif key == "tcpSocket":
            errs.extend(validate_port_num_or_name(action.get("port"), f"{path}.tcpSocket.port"))
        elif key == "grpc":
            errs.extend(validate_port_num_or_name(as_int(action.get("port")), f"{path}.grpc.port"))
    if count == 0:
        errs.append(required(path, "must specify a handler type"))
    return errs


def _validate_probe(probe: Any, path: str, success_must_be_one: bool) -> list[FieldError]:
    if probe is None:
        return []
    probe = as_dict(probe)
    errs = _validate_handler(probe, path)
    for key in (
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ):
        errs.extend(validate_nonnegative(as_int(probe.get(key)), f"{path}.{key}"))
    grace = probe.get("terminationGracePeriodSeconds")
    if grace is not None and as_int(grace) <= 0:
        errs.append(
            invalid_value(f"{path}.terminationGracePeriodSeconds", as_int(grace), "must be greater than 0")
        )
    if success_must_be_one and as_int(probe.get("successThreshold")) != 1:
        errs.append(
            invalid_value(f"{path}.successThreshold", as_int(probe.get("successThreshold")), "must be 1")
        )
    return errs


_STANDARD_CONTAINER_RESOURCES = {"cpu", "memory", "ephemeral-storage"}


def _is_native_resource(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _overcommit_allowed(name: str) -> bool:
    return _is_native_resource(name) and not name.startswith("hugepages-")


def _validate_resource_name(name: str, path: str) -> list[FieldError]:
    errs = validate_qualified_name(name, path)
    if "/" not in name:
        if name not in _STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-"):
            errs.append(invalid_value(path, name, "must be a standard resource for containers"))
    elif not _is_native_resource(name) and name.startswith("requests."):
        errs.append(invalid_value(path, name, "doesn't follow extended resource name standard"))
    return errs


def _validate_quantity(name: str, value: Any, path: str) -> tuple[Quantity | None, list[FieldError]]:
    quantity = parse_quantity(value)
    if quantity is None:
        return None, [invalid_value(path, as_str(value), QUANTITY_FORMAT_ERROR)]
    errs: list[FieldError] = []
    if quantity.value < 0:
        errs.append(invalid_value(path, str(quantity), "must be greater than or equal to 0"))
    if not _is_native_resource(name) and quantity.value != quantity.value.to_integral_value():
        errs.append(invalid_value(path, str(quantity), "must be an integer"))
    return quantity, errs


def _validate_resources(resources: Any, path: str) -> list[FieldError]:
    """ValidateResourceRequirements: names, non-negative quantities, requests within limits."""
    resources = as_dict(resources)
    errs: list[FieldError] = []
    limits: dict[str, Quantity] = {}
    for name, value in as_dict(resources.get("limits")).items():
        item_path = f"{path}.limits[{name}]"
        errs.extend(_validate_resource_name(name, item_path))
        quantity, quantity_errs = _validate_quantity(name, value, item_path)
        errs.extend(quantity_errs)
        if quantity is not None:
            limits[name] = quantity
    for name, value in as_dict(resources.get("requests")).items():
        item_path = f"{path}.requests[{name}]"
        errs.extend(_validate_resource_name(name, item_path))
        quantity, quantity_errs = _validate_quantity(name, value, item_path)
        errs.extend(quantity_errs)
        if quantity is None:
            continue
        limit = limits.get(name)
        if limit is not None:
            if quantity.value != limit.value and not _overcommit_allowed(name):
                errs.append(
                    invalid_value(
                        f"{path}.requests", str(quantity), f"must be equal to {name} limit of {limit}"
                    )
                )
            elif quantity.value > limit.value:
                errs.append(
                    invalid_value(
                        f"{path}.requests",
                        str(quantity),
                        f"must be less than or equal to {name} limit of {limit}",
                    )
                )
        elif not _overcommit_allowed(name):
            errs.append(required(f"{path}.limits", "Limit must be set for non overcommitable resources"))
    return errs


def _validate_container_common(ctr: dict[str, Any], volumes: set[str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    name = as_str(ctr.get("name"))
    if not name:
        errs.append(required(f"{path}.name"))
    else:
        errs.extend(validate_dns1123_label(name, f"{path}.name"))
    if not as_str(ctr.get("image")):
        errs.append(required(f"{path}.image"))
    policy = as_str(ctr.get("terminationMessagePolicy"))
    errs.extend(
        validate_required_enum(policy, f"{path}.terminationMessagePolicy", TERMINATION_MESSAGE_POLICIES)
    )
    errs.extend(_validate_container_ports(as_list(ctr.get("ports")), f"{path}.ports"))
    errs.extend(_validate_env(as_list(ctr.get("env")), f"{path}.env"))
    errs.extend(_validate_volume_mounts(as_list(ctr.get("volumeMounts")), volumes, f"{path}.volumeMounts"))
    errs.extend(_validate_resources(ctr.get("resources"), f"{path}.resources"))
    pull = as_str(ctr.get("imagePullPolicy"))
    errs.extend(validate_required_enum(pull, f"{path}.imagePullPolicy", PULL_POLICIES))
    return errs


def _host_port_conflicts(containers: list[dict[str, Any]], path: str, seen: set[str]) -> list[FieldError]:
    errs: list[FieldError] = []
    for ci, ctr in enumerate(containers):
        for pi, port in enumerate(as_list(ctr.get("ports"))):
            port = as_dict(port)
            host_port = as_int(port.get("hostPort"))
            if host_port == 0:
                continue
            key = f"{as_str(port.get('protocol'))}/{as_str(port.get('hostIP'))}/{host_port}"
            if key in seen:
                errs.append(duplicate(f"{path}[{ci}].ports[{pi}].hostPort", key))
            else:
                seen.add(key)
    return errs


def _validate_containers(containers: list[dict[str, Any]], volumes: set[str], path: str) -> list[FieldError]:
    if not containers:
        return [required(path)]
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, ctr in enumerate(containers):
        cpath = f"{path}[{i}]"
        errs.extend(_validate_container_common(ctr, volumes, cpath))
        name = as_str(ctr.get("name"))
        if name in names:
            errs.append(duplicate(f"{cpath}.name", name))
        else:
            names.add(name)
        errs.extend(_validate_probe(ctr.get("livenessProbe"), f"{cpath}.livenessProbe", True))
        errs.extend(_validate_probe(ctr.get("readinessProbe"), f"{cpath}.readinessProbe", False))
        readiness = as_dict(ctr.get("readinessProbe"))
        if readiness.get("terminationGracePeriodSeconds") is not None:
            errs.append(
                invalid_value(
                    f"{cpath}.readinessProbe.terminationGracePeriodSeconds",
                    as_int(readiness.get("terminationGracePeriodSeconds")),
                    "must not be set for readinessProbes",
                )
            )
        errs.extend(_validate_probe(ctr.get("startupProbe"), f"{cpath}.startupProbe", True))
        if ctr.get("restartPolicy") is not None:
            errs.append(forbidden(f"{cpath}.restartPolicy", "may not be set for non-init containers"))
    errs.extend(_host_port_conflicts(containers, path, set()))
    return errs


def _validate_init_containers(
    init: list[dict[str, Any]], regular: list[dict[str, Any]], volumes: set[str], path: str
) -> list[FieldError]:
    errs: list[FieldError] = []
    names = {as_str(c.get("name")) for c in regular}
    for i, ctr in enumerate(init):
        cpath = f"{path}[{i}]"
        errs.extend(_validate_container_common(ctr, volumes, cpath))
        restart = ctr.get("restartPolicy")
        if restart is not None and restart != "Always":
            errs.append(not_supported(f"{cpath}.restartPolicy", as_str(restart), ("Always",)))
        name = as_str(ctr.get("name"))
        if name in names:
            errs.append(duplicate(f"{cpath}.name", name))
        elif name:
            names.add(name)
        errs.extend(_host_port_conflicts([ctr], path, set()))
        if restart == "Always":
            errs.extend(_validate_probe(ctr.get("livenessProbe"), f"{cpath}.livenessProbe", True))
            errs.extend(_validate_probe(ctr.get("readinessProbe"), f"{cpath}.readinessProbe", False))
            errs.extend(_validate_probe(ctr.get("startupProbe"), f"{cpath}.startupProbe", True))
        else:
            for key in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
                if ctr.get(key) is not None:
                    errs.append(
                        forbidden(
                            f"{cpath}.{key}",
                            "may not be set for init containers without restartPolicy=Always",
                        )
                    )
    return errs


def _validate_tolerations(tolerations: list[Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, toleration in enumerate(tolerations):
        toleration = as_dict(toleration)
        tpath = f"{path}[{i}]"
        key = as_str(toleration.get("key"))
        operator = as_str(toleration.get("operator"))
        value = as_str(toleration.get("value"))
        effect = as_str(toleration.get("effect"))
        if key:
            errs.extend(validate_label_name(key, f"{tpath}.key"))
        if not key and operator != "Exists":
            errs.append(
                invalid_value(
                    f"{tpath}.operator",
                    operator,
                    "operator must be Exists when `key` is empty, which means "
                    '"match all values and all keys"',
                )
            )
        if toleration.get("tolerationSeconds") is not None and effect != "NoExecute":
            errs.append(
                invalid_value(
                    f"{tpath}.effect", effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"
                )
            )
        if operator in ("Equal", ""):
            messages = is_valid_label_value(value)
            if messages:
                errs.append(invalid_value(f"{tpath}.operator", value, ";".join(messages)))
        elif operator == "Exists":
            if value:
                errs.append(
                    invalid_value(
                        f"{tpath}.operator", value, "value must be empty when `operator` is 'Exists'"
                    )
                )
        else:
            errs.append(not_supported(f"{tpath}.operator", operator, TOLERATION_OPERATORS))
        if effect and effect not in TAINT_EFFECTS:
            errs.append(not_supported(f"{tpath}.effect", effect, TAINT_EFFECTS))
    return errs


def _validate_dns_config(config: Any, policy: str, path: str) -> list[FieldError]:
    if policy == "None":
        if config is None:
            return [required(path, "must provide `dnsConfig` when `dnsPolicy` is None")]
        if not as_list(as_dict(config).get("nameservers")):
            return [
                required(
                    f"{path}.nameservers", "must provide at least one DNS nameserver when `dnsPolicy` is None"
                )
            ]
    if config is None:
        return []
    config = as_dict(config)
    errs: list[FieldError] = []
    nameservers = as_list(config.get("nameservers"))
    if len(nameservers) > MAX_DNS_NAMESERVERS:
        errs.append(
            invalid_value(
                f"{path}.nameservers",
                nameservers,
                f"must not have more than {MAX_DNS_NAMESERVERS} nameservers",
            )
        )
    for i, ns in enumerate(nameservers):
        errs.extend(is_valid_ip(f"{path}.nameservers[{i}]", ns))
    searches = [as_str(s) for s in as_list(config.get("searches"))]
    if len(searches) > MAX_DNS_SEARCH_PATHS:
        errs.append(
            invalid_value(
                f"{path}.searches", searches, f"must not have more than {MAX_DNS_SEARCH_PATHS} search paths"
            )
        )
    if len(" ".join(searches)) > MAX_DNS_SEARCH_LIST_CHARS:
        errs.append(
            invalid_value(
                f"{path}.searches",
                searches,
                f"must not have more than {MAX_DNS_SEARCH_LIST_CHARS} characters (including spaces) "
                "in the search list",
            )
        )
    for i, search in enumerate(searches):
        if search != ".":  # AllowRelaxedDNSSearchValidation
            search = search.removesuffix(".")
            errs.extend(validate_dns1123_subdomain(search.replace("_", "a"), f"{path}.searches[{i}]"))
    for i, option in enumerate(as_list(config.get("options"))):
        if not as_str(as_dict(option).get("name")):
            errs.append(required(f"{path}.options[{i}]", "must not be empty"))
    return errs


def validate_pod_spec(spec: Any, path: str, is_pod: bool) -> list[FieldError]:
    """ValidatePodSpec (the parts listed in the module docstring)."""
    spec = as_dict(spec)
    errs: list[FieldError] = []
    if spec.get("terminationGracePeriodSeconds") is None:
        errs.append(required(f"{path}.terminationGracePeriodSeconds"))
    volumes, volume_errs = _validate_volumes(as_list(spec.get("volumes")), f"{path}.volumes")
    errs.extend(volume_errs)
    containers = [as_dict(c) for c in as_list(spec.get("containers"))]
    init = [as_dict(c) for c in as_list(spec.get("initContainers"))]
    errs.extend(_validate_containers(containers, volumes, f"{path}.containers"))
    errs.extend(_validate_init_containers(init, containers, volumes, f"{path}.initContainers"))
    if spec.get("hostNetwork") is True:
        for ci, ctr in enumerate(containers):
            for pi, port in enumerate(as_list(ctr.get("ports"))):
                port = as_dict(port)
                host_port, container_port = as_int(port.get("hostPort")), as_int(port.get("containerPort"))
                if (is_pod or host_port != 0) and host_port != container_port:
                    errs.append(
                        invalid_value(
                            f"{path}.containers[{ci}].ports[{pi}].hostPort",
                            host_port,
                            "must match `containerPort` when `hostNetwork` is true",
                        )
                    )
    restart = as_str(spec.get("restartPolicy"))
    errs.extend(validate_required_enum(restart, f"{path}.restartPolicy", RESTART_POLICIES))
    dns_policy = as_str(spec.get("dnsPolicy"))
    errs.extend(validate_required_enum(dns_policy, f"{path}.dnsPolicy", DNS_POLICIES))
    errs.extend(validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector"))
    errs.extend(_validate_dns_config(spec.get("dnsConfig"), dns_policy, f"{path}.dnsConfig"))
    for i, gate in enumerate(as_list(spec.get("readinessGates"))):
        condition = as_str(as_dict(gate).get("conditionType"))
        errs.extend(validate_qualified_name(condition, f"{path}.readinessGates[{i}].conditionType"))
    for key in ("serviceAccountName", "nodeName"):
        value = as_str(spec.get(key))
        if value:
            errs.extend(invalid_value(f"{path}.{key}", value, m) for m in name_is_dns_subdomain(value, False))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and not (1 <= as_int(deadline) <= MAX_INT32):
        errs.append(
            invalid_value(
                f"{path}.activeDeadlineSeconds", as_int(deadline), inclusive_range_error(1, MAX_INT32)
            )
        )
    for key in ("hostname", "subdomain"):
        value = as_str(spec.get(key))
        if value:
            errs.extend(validate_dns1123_label(value, f"{path}.{key}"))
    errs.extend(_validate_tolerations(as_list(spec.get("tolerations")), f"{path}.tolerations"))
    for i, alias in enumerate(as_list(spec.get("hostAliases"))):
        alias = as_dict(alias)
        errs.extend(is_valid_ip(f"{path}.hostAliases[{i}].ip", alias.get("ip")))
        for j, hostname in enumerate(as_list(alias.get("hostnames"))):
            errs.extend(
                validate_dns1123_subdomain(as_str(hostname), f"{path}.hostAliases[{i}].hostnames[{j}]")
            )
    priority_class = as_str(spec.get("priorityClassName"))
    if priority_class:
        errs.extend(
            invalid_value(f"{path}.priorityClassName", priority_class, m)
            for m in is_dns1123_subdomain(priority_class)
        )
    return errs


def _validate_containers_only_for_pod(containers: list[Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, ctr in enumerate(containers):
        image = as_str(as_dict(ctr).get("image"))
        if image != image.strip():
            errs.append(
                invalid_value(f"{path}[{i}].image", image, "must not have leading or trailing whitespace")
            )
    return errs


def _validate_pod_metadata_and_spec(pod: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(pod.get("metadata"), True, name_is_dns_subdomain)
    spec = as_dict(pod.get("spec"))
    errs.extend(validate_pod_spec(spec, "spec", is_pod=True))
    errs.extend(_validate_containers_only_for_pod(as_list(spec.get("containers")), "spec.containers"))
    errs.extend(_validate_containers_only_for_pod(as_list(spec.get("initContainers")), "spec.initContainers"))
    return errs


def validate_pod_create(pod: Any) -> list[FieldError]:
    pod = as_dict(pod)
    errs = _validate_pod_metadata_and_spec(pod)
    spec = as_dict(pod.get("spec"))
    if as_list(spec.get("ephemeralContainers")):
        errs.append(forbidden("spec.ephemeralContainers", "cannot be set on create"))
    return errs


def validate_pod_template_spec(template: Any, path: str) -> list[FieldError]:
    """ValidatePodTemplateSpec: labels, annotations and the pod spec of a workload template."""
    template = as_dict(template)
    meta = as_dict(template.get("metadata"))
    errs = validate_labels(meta.get("labels"), f"{path}.labels")
    errs.extend(validate_annotations(meta.get("annotations"), f"{path}.annotations"))
    spec = as_dict(template.get("spec"))
    errs.extend(validate_pod_spec(spec, f"{path}.spec", is_pod=False))
    if as_list(spec.get("ephemeralContainers")):
        errs.append(
            forbidden(f"{path}.spec.ephemeralContainers", "ephemeral containers not allowed in pod template")
        )
    return errs


def _spec_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    """A short listing of the changed spec fields (upstream prints a Go cmp.Diff here)."""
    lines = []
    for key in sorted(set(old) | set(new)):
        if not semantic_equal(old.get(key), new.get(key)):
            lines.append(f"-  {key}: {json.dumps(old.get(key), sort_keys=True)}")
            lines.append(f"+  {key}: {json.dumps(new.get(key), sort_keys=True)}")
    return "\n".join(lines)


def _validate_container_updates(new: list[Any], old: list[Any], path: str) -> tuple[list[FieldError], bool]:
    if len(new) != len(old):
        return [forbidden(path, "pod updates may not add or remove containers")], True
    errs: list[FieldError] = []
    for i, ctr in enumerate(new):
        image = as_str(as_dict(ctr).get("image"))
        if not image:
            errs.append(required(f"{path}[{i}].image"))
        if image != image.strip():
            errs.append(
                invalid_value(f"{path}[{i}].image", image, "must not have leading or trailing whitespace")
            )
    return errs, False


def validate_pod_update(pod: Any, old: Any) -> list[FieldError]:
    """ValidatePodUpdate: only images, activeDeadlineSeconds (down), added tolerations and a
    negative grace period set to 1 may change in a pod's spec."""
    pod, old = as_dict(pod), as_dict(old)
    errs = validate_object_meta_update(pod.get("metadata"), old.get("metadata"))
    errs.extend(_validate_pod_metadata_and_spec(pod))
    spec, old_spec = as_dict(pod.get("spec")), as_dict(old.get("spec"))
    for key in ("containers", "initContainers"):
        update_errs, stop = _validate_container_updates(
            as_list(spec.get(key)), as_list(old_spec.get(key)), f"spec.{key}"
        )
        errs.extend(update_errs)
        if stop:
            return errs
    deadline, old_deadline = spec.get("activeDeadlineSeconds"), old_spec.get("activeDeadlineSeconds")
    if deadline is not None:
        value = as_int(deadline)
        if value < 0 or value > MAX_INT32:
            errs.append(
                invalid_value("spec.activeDeadlineSeconds", value, inclusive_range_error(0, MAX_INT32))
            )
            return errs
        if old_deadline is not None and as_int(old_deadline) < value:
            errs.append(
                invalid_value(
                    "spec.activeDeadlineSeconds", value, "must be less than or equal to previous value"
                )
            )
            return errs
    elif old_deadline is not None:
        errs.append(
            invalid_value(
                "spec.activeDeadlineSeconds", None, "must not update from a positive integer to nil value"
            )
        )
    errs.extend(_validate_only_added_tolerations(spec.get("tolerations"), old_spec.get("tolerations")))
    if semantic_equal(spec, old_spec):
        return errs
    munged = json.loads(json.dumps(spec))
    for key in ("containers", "initContainers"):
        for ctr, old_ctr in zip(as_list(munged.get(key)), as_list(old_spec.get(key)), strict=False):
            if isinstance(ctr, dict):
                ctr["image"] = as_dict(old_ctr).get("image")
    for key in ("activeDeadlineSeconds", "tolerations"):
        if key in old_spec:
            munged[key] = old_spec[key]
        else:
            munged.pop(key, None)
    old_grace = old_spec.get("terminationGracePeriodSeconds")
    if is_int(old_grace) and old_grace < 0 and munged.get("terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    if not semantic_equal(munged, old_spec):
        diff = _spec_diff(old_spec, munged)
        errs.append(
            forbidden(
                "spec", f"pod updates may not change fields other than {UPDATABLE_POD_SPEC_FIELDS}\n{diff}"
            )
        )
    return errs


def _validate_only_added_tolerations(new: Any, old: Any) -> list[FieldError]:
    new_list = [as_dict(t) for t in as_list(new)]
    for old_toleration in as_list(old):
        old_toleration = dict(as_dict(old_toleration))
        found = False
        for toleration in new_list:
            old_toleration["tolerationSeconds"] = toleration.get("tolerationSeconds")
            if semantic_equal(old_toleration, toleration):
                found = True
                break
        if not found:
            return [
                forbidden(
                    "spec.tolerations", "existing toleration can not be modified except its tolerationSeconds"
                )
            ]
    return _validate_tolerations(new_list, "spec.tolerations")


def _validate_container_state_transitions(
    new: Any, old: Any, path: str, restart_policy: str
) -> list[FieldError]:
    """A container that ended may not come back unless the restart policy restarts it."""
    if restart_policy == "Always":
        return []
    errs: list[FieldError] = []
    new_statuses = [as_dict(s) for s in as_list(new)]
    for i, old_status in enumerate(as_list(old)):
        old_status = as_dict(old_status)
        terminated = as_dict(old_status.get("state")).get("terminated")
        if terminated is None:
            continue
        if as_int(as_dict(terminated).get("exitCode")) != 0 and restart_policy == "OnFailure":
            continue
        for new_status in new_statuses:
            if (
                new_status.get("name") == old_status.get("name")
                and as_dict(new_status.get("state")).get("terminated") is None
            ):
                errs.append(
                    forbidden(f"{path}[{i}].state", "may not be transitioned to non-terminated state")
                )
    return errs


def _validate_status_ips(status: dict[str, Any], key: str, path: str) -> list[FieldError]:
    ips = [as_str(as_dict(e).get("ip")) for e in as_list(status.get(key))]
    errs: list[FieldError] = []
    if key == "hostIPs" and ips and ips[0] != as_str(status.get("hostIP")):
        errs.append(invalid_value(f"{path}[0].ip", ips[0], "must be equal to `hostIP`"))
    for i, ip in enumerate(ips):
        errs.extend(is_valid_ip(f"{path}[{i}].ip" if key == "hostIPs" else f"{path}[{i}]", ip))
    if errs or len(ips) < 2:
        return errs
    seen: set[str] = set()
    for i, ip in enumerate(ips):
        if ip in seen:
            errs.append(duplicate(f"{path}[{i}]", ip))
        seen.add(ip)
    if not is_dual_stack(ips) or len(ips) > 2:
        errs.append(invalid_value(path, go_slice(ips), "may specify no more than one IP for each IP family"))
    return errs


def validate_pod_status_update(pod: Any, old: Any) -> list[FieldError]:
    """ValidatePodStatusUpdate basics: metadata, nodeName, nominatedNodeName, qosClass
    immutability, container state transitions under the restart policy, pod and host IPs."""
    pod, old = as_dict(pod), as_dict(old)
    errs = validate_object_meta_update(pod.get("metadata"), old.get("metadata"))
    status, old_status = as_dict(pod.get("status")), as_dict(old.get("status"))
    spec, old_spec = as_dict(pod.get("spec")), as_dict(old.get("spec"))
    if as_str(spec.get("nodeName")) != as_str(old_spec.get("nodeName")):
        errs.append(forbidden("status.nodeName", "may not be changed directly"))
    nominated = as_str(status.get("nominatedNodeName"))
    if nominated and nominated != as_str(old_status.get("nominatedNodeName")):
        errs.extend(
            invalid_value("status.nominatedNodeName", nominated, m)
            for m in name_is_dns_subdomain(nominated, False)
        )
    errs.extend(
        validate_immutable(
            as_str(status.get("qosClass")), as_str(old_status.get("qosClass")), "status.qosClass"
        )
    )
    restart_policy = as_str(old_spec.get("restartPolicy"))
    errs.extend(
        _validate_container_state_transitions(
            status.get("containerStatuses"),
            old_status.get("containerStatuses"),
            "status.containerStatuses",
            restart_policy,
        )
    )
    errs.extend(
        _validate_container_state_transitions(
            status.get("initContainerStatuses"),
            old_status.get("initContainerStatuses"),
            "status.initContainerStatuses",
            restart_policy,
        )
    )
    errs.extend(_validate_status_ips(status, "podIPs", "status.podIPs"))
    errs.extend(_validate_status_ips(status, "hostIPs", "status.hostIPs"))
    return errs


__all__ = [
    "validate_pod_create",
    "validate_pod_spec",
    "validate_pod_status_update",
    "validate_pod_template_spec",
    "validate_pod_update",
]
