"""The protobuf request bodies kubectl's typed generators send (`kubectl create namespace|
service|deployment`), decoded without a server: the wire format by hand, then mutated."""

from __future__ import annotations

import random

import pytest

from svcnet.api.errors import StatusError
from svcnet.apiserver import protobuf


def tag(number: int, wire: int) -> bytes:
    return varint((number << 3) | wire)


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


def number(n: int, value: int) -> bytes:
    return tag(n, 0) + varint(value)


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = field(1, api_version.encode()) + field(2, kind.encode())
    return protobuf.MAGIC + field(1, type_meta) + field(2, raw)


def service_body() -> bytes:
    labels = field(11, field(1, b"app") + field(2, b"web"))
    metadata = field(1, field(1, b"web") + field(3, b"") + labels + field(8, b""))
    target = field(4, number(1, 0) + number(2, 8080))
    port = field(1, b"80-8080") + field(2, b"TCP") + number(3, 80) + target + number(5, 0)
    spec = (
        field(1, port)
        + field(2, field(1, b"app") + field(2, b"web"))
        + field(3, b"")
        + field(4, b"ClusterIP")
        + number(12, 0)
        + number(13, 0)
    )
    status = field(1, b"")
    return envelope("v1", "Service", metadata + field(2, spec) + field(3, status))


def test_service_as_kubectl_create_service_sends_it() -> None:
    obj = protobuf.decode(service_body(), "Service")
    assert obj == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
            "selector": {"app": "web"},
            "type": "ClusterIP",
        },
        "status": {"loadBalancer": {}},
    }


def test_pointer_zero_values_are_kept_and_named_target_ports_decoded() -> None:
    spec = number(1, 0) + field(3, field(2, field(2, field(1, b"c") + field(2, b"img"))))
    dep = envelope("apps/v1", "Deployment", field(1, field(1, b"d")) + field(2, spec))
    obj = protobuf.decode(dep, "Deployment")
    assert obj["spec"]["replicas"] == 0  # *int32: zero is meaningful
    assert obj["spec"]["template"]["spec"]["containers"] == [{"name": "c", "image": "img"}]
    named = field(1, field(4, number(1, 1) + field(3, b"http")) + number(3, 80))
    svc = protobuf.decode(envelope("v1", "Service", field(2, named)), "Service")
    assert svc["spec"]["ports"] == [{"targetPort": "http", "port": 80}]


def test_unknown_messages_and_fields_are_refused_clearly() -> None:
    with pytest.raises(StatusError) as info:
        protobuf.decode(envelope("v1", "ConfigMap", b""), "ConfigMap")
    assert info.value.code == 415 and "application/json" in info.value.message
    with pytest.raises(StatusError) as info:
        protobuf.decode(envelope("v1", "Service", field(2, number(99, 1))), "Service")
    assert info.value.code == 415 and "V1ServiceSpec field 99" in info.value.message
    with pytest.raises(StatusError) as info:
        protobuf.decode(b"{}", "Service")
    assert info.value.code == 400


def test_mutated_bodies_fail_only_with_status_errors() -> None:
    rng = random.Random(7)
    body = service_body()
    for _ in range(5000):
        mutated = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(protobuf.MAGIC), len(mutated))] = rng.getrandbits(8)
        try:
            protobuf.decode(bytes(mutated), "Service")
        except StatusError as exc:
            assert exc.code in (400, 415)
