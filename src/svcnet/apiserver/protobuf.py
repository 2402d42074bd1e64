"""Request bodies in Kubernetes protobuf (``application/vnd.kubernetes.protobuf``).

kubectl sends JSON for everything built from manifests, but its generator commands (`kubectl
create namespace`, `kubectl create service ...`, `kubectl create deployment`) use the typed
client, which sends protobuf. This decoder turns those bodies into the same JSON objects the
JSON path receives; replies stay JSON (the client accepts both).

Wire format: the ``k8s\\x00`` magic, then a runtime.Unknown {typeMeta{apiVersion, kind}, raw}
whose ``raw`` is the object's message. Message types come from the official client's models
(api/schema.py field tables); the field numbers, which the client does not carry, are listed
below for the messages those commands produce (generated.proto of k8s.io/api and
k8s.io/apimachinery). A field number not listed is refused with a clear 415 rather than
silently dropped.

Go's protobuf marshaller writes non-pointer scalars even when empty, where JSON omits them, so
zero values are dropped except for the pointer fields listed in ``_POINTERS``.
"""

from __future__ import annotations

import datetime
import struct
from typing import Any

from svcnet.api import errors, schema
from svcnet.api.errors import StatusError

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

# Client model class name -> {field number: JSON field name}. "#q" marks Quantity values.
_FIELDS: dict[str, dict[int, str]] = {
    "V1ObjectMeta": {
        1: "name",
        2: "generateName",
        3: "namespace",
        4: "selfLink",
        5: "uid",
        6: "resourceVersion",
        7: "generation",
        8: "creationTimestamp",
        9: "deletionTimestamp",
        10: "deletionGracePeriodSeconds",
        11: "labels",
        12: "annotations",
        13: "ownerReferences",
        14: "finalizers",
    },
    "V1OwnerReference": {
        1: "kind",
        3: "name",
        4: "uid",
        5: "apiVersion",
        6: "controller",
        7: "blockOwnerDeletion",
    },
    "V1LabelSelector": {1: "matchLabels", 2: "matchExpressions"},
    "V1LabelSelectorRequirement": {1: "key", 2: "operator", 3: "values"},
    "V1Namespace": {1: "metadata", 2: "spec", 3: "status"},
    "V1NamespaceSpec": {1: "finalizers"},
    "V1NamespaceStatus": {1: "phase"},
    "V1Service": {1: "metadata", 2: "spec", 3: "status"},
    "V1ServiceSpec": {
        1: "ports",
        2: "selector",
        3: "clusterIP",
        18: "clusterIPs",
        4: "type",
        5: "externalIPs",
        7: "sessionAffinity",
        8: "loadBalancerIP",
        9: "loadBalancerSourceRanges",
        10: "externalName",
        11: "externalTrafficPolicy",
        12: "healthCheckNodePort",
        13: "publishNotReadyAddresses",
        14: "sessionAffinityConfig",
        19: "ipFamilies",
        17: "ipFamilyPolicy",
        20: "allocateLoadBalancerNodePorts",
        21: "loadBalancerClass",
        22: "internalTrafficPolicy",
        23: "trafficDistribution",
    },
    "V1ServicePort": {1: "name", 2: "protocol", 6: "appProtocol", 3: "port", 4: "targetPort", 5: "nodePort"},
    "V1SessionAffinityConfig": {1: "clientIP"},
    "V1ClientIPConfig": {1: "timeoutSeconds"},
    "V1ServiceStatus": {1: "loadBalancer", 2: "conditions"},
    "V1LoadBalancerStatus": {1: "ingress"},
    "V1LoadBalancerIngress": {1: "ip", 2: "hostname", 3: "ipMode"},
    "V1Deployment": {1: "metadata", 2: "spec", 3: "status"},
    "V1DeploymentSpec": {
        1: "replicas",
        2: "selector",
        3: "template",
        4: "strategy",
        5: "minReadySeconds",
        6: "revisionHistoryLimit",
        7: "paused",
        9: "progressDeadlineSeconds",
    },
    "V1DeploymentStrategy": {1: "type", 2: "rollingUpdate"},
    "V1RollingUpdateDeployment": {1: "maxUnavailable", 2: "maxSurge"},
    "V1DeploymentStatus": {
        1: "observedGeneration",
        2: "replicas",
        3: "updatedReplicas",
        7: "readyReplicas",
        4: "availableReplicas",
        5: "unavailableReplicas",
        8: "collisionCount",
    },
    "V1PodTemplateSpec": {1: "metadata", 2: "spec"},
    "V1PodSpec": {
        2: "containers",
        20: "initContainers",
        3: "restartPolicy",
        4: "terminationGracePeriodSeconds",
        5: "activeDeadlineSeconds",
        6: "dnsPolicy",
        7: "nodeSelector",
        8: "serviceAccountName",
        9: "serviceAccount",
        10: "nodeName",
        11: "hostNetwork",
        12: "hostPID",
        13: "hostIPC",
        24: "priorityClassName",
        27: "shareProcessNamespace",
        29: "runtimeClassName",
        31: "preemptionPolicy",
        35: "setHostnameAsFQDN",
        37: "hostUsers",
        16: "hostname",
        17: "subdomain",
        19: "schedulerName",
        25: "priority",
        30: "enableServiceLinks",
    },
    "V1Container": {
        1: "name",
        2: "image",
        3: "command",
        4: "args",
        5: "workingDir",
        6: "ports",
        7: "env",
        8: "resources",
        13: "terminationMessagePath",
        20: "terminationMessagePolicy",
        14: "imagePullPolicy",
        16: "stdin",
        17: "stdinOnce",
        18: "tty",
    },
    "V1ContainerPort": {1: "name", 2: "hostPort", 3: "containerPort", 4: "protocol", 5: "hostIP"},
    "V1EnvVar": {1: "name", 2: "value"},
    "V1ResourceRequirements": {1: "limits#q", 2: "requests#q"},
}
# Pointer fields: their zero values are meaningful and kept.
_POINTERS = {
    ("V1ObjectMeta", "deletionGracePeriodSeconds"),
    ("V1OwnerReference", "controller"),
    ("V1OwnerReference", "blockOwnerDeletion"),
    ("V1ServiceSpec", "ipFamilyPolicy"),
    ("V1ServiceSpec", "allocateLoadBalancerNodePorts"),
    ("V1ServiceSpec", "loadBalancerClass"),
    ("V1ServiceSpec", "internalTrafficPolicy"),
    ("V1ServiceSpec", "trafficDistribution"),
    ("V1ClientIPConfig", "timeoutSeconds"),
    ("V1LoadBalancerIngress", "ipMode"),
    ("V1DeploymentSpec", "replicas"),
    ("V1DeploymentSpec", "revisionHistoryLimit"),
    ("V1DeploymentSpec", "progressDeadlineSeconds"),
    ("V1DeploymentStatus", "collisionCount"),
    ("V1PodSpec", "terminationGracePeriodSeconds"),
    ("V1PodSpec", "activeDeadlineSeconds"),
    ("V1PodSpec", "priority"),
    ("V1PodSpec", "enableServiceLinks"),
    ("V1PodSpec", "shareProcessNamespace"),
    ("V1PodSpec", "runtimeClassName"),
    ("V1PodSpec", "preemptionPolicy"),
    ("V1PodSpec", "setHostnameAsFQDN"),
    ("V1PodSpec", "hostUsers"),
}


class _Unsupported(Exception):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) in order; value is an int or bytes."""
    out = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            value, pos = data[pos : pos + length], pos + length
        elif wire == 1:
            value, pos = struct.unpack_from("<q", data, pos)[0], pos + 8
        elif wire == 5:
            value, pos = struct.unpack_from("<i", data, pos)[0], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _string(value: Any) -> str:
    if not isinstance(value, bytes):
        raise ValueError("expected a length-delimited string")
    return value.decode("utf-8")


def _time(data: bytes) -> str | None:
    seconds = 0
    for number, _, value in _fields(data):
        if number == 1:
            seconds = _signed(value)
    if seconds == 0:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _int_or_string(data: bytes) -> int | str:
    kind, int_val, str_val = 0, 0, ""
    for number, _, value in _fields(data):
        if number == 1:
            kind = value
        elif number == 2:
            int_val = _signed(value)
            int_val = int_val - (1 << 32) if int_val >= 1 << 31 else int_val
        elif number == 3:
            str_val = _string(value)
    return str_val if kind == 1 else int_val


def _quantity(data: bytes) -> str:
    for number, _, value in _fields(data):
        if number == 1:
            return _string(value)
    return ""


def _scalar(typ: Any, wire_value: Any, quantity: bool) -> Any:
    if quantity:
        return _quantity(wire_value)
    if typ.kind == "intorstr":
        return _int_or_string(wire_value)
    if typ.scalar == "datetime":
        return _time(wire_value)
    if typ.scalar == "bool":
        return bool(wire_value)
    if typ.scalar == "int":
        return _signed(wire_value)
    if typ.scalar == "float":
        return float(wire_value)
    return _string(wire_value)


def _is_zero(value: Any) -> bool:
    return (
        value is None or value == "" or value is False or (type(value) is int and value == 0) or value == []
    )


def _message(model: type, data: bytes) -> dict[str, Any]:
    name = model.__name__
    numbers = _FIELDS.get(name)
    if numbers is None:
        raise _Unsupported(name)
    fields = schema._fields(model)
    out: dict[str, Any] = {}
    for number, _, value in _fields(data):
        json_name = numbers.get(number)
        if json_name is None:
            raise _Unsupported(f"{name} field {number}")
        quantity = json_name.endswith("#q")
        json_name = json_name.removesuffix("#q")
        typ = fields[json_name][1]
        if typ.kind == "list":
            elem = typ.elem
            item = _message(elem.model, value) if elem.kind == "model" else _scalar(elem, value, quantity)
            out.setdefault(json_name, []).append(item)
        elif typ.kind == "map":
            key, item = "", None
            for n, _, v in _fields(value):
                if n == 1:
                    key = _string(v)
                elif n == 2:
                    item = (
                        _message(typ.elem.model, v)
                        if typ.elem.kind == "model"
                        else _scalar(typ.elem, v, quantity)
                    )
            if item is None:
                item = "" if typ.elem.kind != "model" else {}
            out.setdefault(json_name, {})[key] = item
        elif typ.kind == "model":
            out[json_name] = _message(typ.model, value)
        else:
            scalar = _scalar(typ, value, quantity)
            if _is_zero(scalar) and (name, json_name) not in _POINTERS:
                continue
            out[json_name] = scalar
    return out


def decode(body: bytes, expected_kind: str) -> dict[str, Any]:
    """The JSON object of a protobuf request body. Raises StatusError (400/415)."""
    if not body.startswith(MAGIC):
        raise errors.bad_request(
            f"the object provided is unrecognized (must be of type {expected_kind}): "
            "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
        )
    try:
        api_version = kind = ""
        raw = b""
        for number, _, value in _fields(body[len(MAGIC) :]):
            if number == 1:
                for n, _, v in _fields(value):
                    if n == 1:
                        api_version = _string(v)
                    elif n == 2:
                        kind = _string(v)
            elif number == 2:
                raw = value
        model = schema.model_class(api_version, kind)
        if model is None:
            raise _Unsupported(f"{api_version} {kind}")
        obj = _message(model, raw)
    except _Unsupported as exc:
        raise StatusError(
            415,
            "UnsupportedMediaType",
            f"svcnet does not decode protobuf for {exc}; send the object as application/json",
        ) from None
    except (ValueError, TypeError, UnicodeDecodeError, struct.error, KeyError, RecursionError) as exc:
        raise errors.bad_request(
            f"the object provided is unrecognized (must be of type {expected_kind}): {exc}"
        ) from None
    return {"apiVersion": api_version, "kind": kind, **obj}
