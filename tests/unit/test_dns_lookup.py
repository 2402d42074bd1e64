"""The pieces of CoreDNS's lookup rules that are pure functions, and the zone index."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import dns.message
import dns.rrset
import pytest

from svcnet.dns import wire
from svcnet.dns.forward import Forwarder
from svcnet.dns.index import ClusterIndex
from svcnet.dns.lookup import ZoneLookup, ZoneOptions, host_type, reverse_address
from svcnet.dns.model import Address, endpoint_hostname, service_from_object, slice_from_object


@pytest.mark.parametrize(
    ("name", "ip"),
    [
        ("1.0.96.10.in-addr.arpa", "10.96.0.1"),
        ("0.96.10.in-addr.arpa", None),  # not a full address
        ("1.1.0.96.10.in-addr.arpa", None),
        ("01.0.96.10.in-addr.arpa", None),  # leading zero: Go's ParseIP refuses it too
        ("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", "2001:db8::1"),
        ("1.0.0.0.ip6.arpa", None),
        ("x.0.96.10.example", None),
    ],
)
def test_reverse_address(name: str, ip: str | None) -> None:
    assert reverse_address(tuple(name.split("."))) == ip


def test_host_type() -> None:
    assert host_type("10.0.0.1") == wire.TYPE_A
    assert host_type("fd00::1") == wire.TYPE_AAAA
    assert host_type("::ffff:10.0.0.1") == wire.TYPE_A  # Go's To4() accepts mapped addresses
    assert host_type("www.example.com") == wire.TYPE_CNAME


@pytest.mark.parametrize(
    ("ip", "hostname", "label"),
    [
        ("10.1.2.3", "", "10-1-2-3"),
        ("10.1.2.3", "web-0", "web-0"),
        ("2001:db8:3333:4444:5555:6666::", "", "2001-db8-3333-4444-5555-6666--0"),
        ("5678:abcd::1", "", "5678-abcd--1"),
    ],
)
def test_endpoint_hostname(ip: str, hostname: str, label: str) -> None:
    assert endpoint_hostname(Address(ip, hostname, "pod-a")) == label


def test_endpoint_pod_names_mode() -> None:
    assert endpoint_hostname(Address("10.1.2.3", "", "pod-a"), pod_names=True) == "pod-a"


def test_slice_readiness_and_ports() -> None:
    sl = slice_from_object(
        {
            "kind": "EndpointSlice",
            "addressType": "IPv4",
            "metadata": {"name": "s", "namespace": "n", "labels": {"kubernetes.io/service-name": "svc"}},
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
                {"addresses": ["10.0.0.2"]},  # unknown readiness counts as ready
                {"addresses": ["10.0.0.3"], "conditions": {"ready": False, "serving": True}},
                {"addresses": ["10.0.0.4"], "conditions": {"ready": True, "serving": False}},
            ],
        }
    )
    assert sl is not None
    assert [a.ip for a in sl.addresses] == ["10.0.0.1", "10.0.0.2", "10.0.0.4"]
    assert [p.port for p in sl.ports] == [-1]  # the no-ports sentinel
    assert slice_from_object({"addressType": "FQDN", "metadata": {"name": "f"}}) is None


def test_service_without_cluster_ips_list_and_ports() -> None:
    svc = service_from_object({"metadata": {"name": "h", "namespace": "n"}, "spec": {"clusterIP": "None"}})
    assert svc.headless and [p.port for p in svc.ports] == [-1]


def _objects(n_endpoints: int) -> list[dict[str, Any]]:
    return [
        {"kind": "Namespace", "metadata": {"name": "n"}},
        {
            "kind": "Service",
            "metadata": {"name": "h", "namespace": "n"},
            "spec": {"clusterIP": "None", "ports": [{"name": "p", "port": 1, "protocol": "TCP"}]},
        },
        {
            "kind": "EndpointSlice",
            "addressType": "IPv4",
            "metadata": {"name": "h-1", "namespace": "n", "labels": {"kubernetes.io/service-name": "h"}},
            "ports": [{"name": "p", "port": 1, "protocol": "TCP"}],
            "endpoints": [{"addresses": [f"10.0.{i // 250}.{i % 250 + 1}"]} for i in range(n_endpoints)],
        },
    ]


@pytest.mark.parametrize("n", [1, 2, 3, 6, 7, 101, 150])
def test_srv_weight_is_coredns_formula(n: int) -> None:
    index = ClusterIndex()
    index.load(_objects(n))
    index.mark_synced()
    lookup = ZoneLookup(index, ZoneOptions())
    result = asyncio.run(
        lookup.answer(("_p", "_tcp", "h", "n", "svc", "cluster", "local"), ("cluster", "local"), 33)
    )
    weights = {rr.rdata[1] for rr in result.answer}  # type: ignore[index]
    assert weights == {max(1, math.floor(100.0 / (100 * n) * 100))}
    assert len(result.answer) == n == len(result.additional)


def test_index_reverse_maps_follow_changes() -> None:
    index = ClusterIndex()
    changes: list[str | None] = []
    index.on_change(changes.append)
    svc = {
        "kind": "Service",
        "metadata": {"name": "a", "namespace": "n"},
        "spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "ports": [{"port": 80}]},
    }
    index.set_service(svc)
    assert index.services_by_ip["10.0.0.1"] == [("n", "a")]
    moved = {**svc, "spec": {**svc["spec"], "clusterIP": "10.0.0.2", "clusterIPs": ["10.0.0.2"]}}
    index.set_service(moved)
    assert "10.0.0.1" not in index.services_by_ip and index.services_by_ip["10.0.0.2"] == [("n", "a")]
    index.delete_service(moved)
    assert not index.services_by_ip and not index.services
    assert changes == ["n", "n", "n"]  # each change names its namespace
    index.mark_synced()
    assert changes[-1] is None  # a sync may change anything


def test_index_ignores_updates_dns_does_not_see() -> None:
    index = ClusterIndex()
    changes: list[str | None] = []
    index.on_change(changes.append)
    svc, slice_ = _objects(1)[1:]
    index.set_service(svc)
    index.set_slice(slice_)
    generation = index.generation
    # A resync delivers the same objects; a status or annotation change is invisible to DNS.
    index.set_service(svc)
    index.set_service({**svc, "metadata": {**svc["metadata"], "annotations": {"a": "b"}}, "status": {}})
    index.set_slice(slice_)
    not_ready = {"addresses": ["10.9.9.9"], "conditions": {"ready": False}}
    index.set_slice({**slice_, "endpoints": [*slice_["endpoints"], not_ready]})
    assert changes == ["n", "n"] and index.generation == generation
    # A change DNS answers from still counts.
    index.set_slice({**slice_, "endpoints": [*slice_["endpoints"], {**not_ready, "conditions": {}}]})
    assert changes == ["n", "n", "n"] and index.generation == generation + 1
    assert "10.9.9.9" in index.slices_by_ip


def test_forwarder_cache_ages_ttls() -> None:
    fw = Forwarder([("127.0.0.1", 9)])
    q = dns.message.make_query("www.example.test.", "A")
    reply = dns.message.make_response(q)
    reply.answer.append(dns.rrset.from_text("www.example.test.", 300, "IN", "A", "192.0.2.1"))
    key = b"\x03www\x07example\x04test\x00" + b"\x00\x01\x00\x01"
    entry = fw._store(key, key[:-4], 1, 1, reply)
    entry.stored -= 42  # as if stored 42 s ago
    aged = Forwarder.aged(entry)
    q2 = wire.parse_fast(q.to_wire())
    assert q2 is not None
    out = dns.message.from_wire(wire.materialize(aged, q2, 512))
    assert out.answer[0].ttl == 258
    assert entry.expires - time.monotonic() <= 300


def test_forwarder_refuses_beyond_its_concurrency_limit() -> None:
    import socket

    from svcnet.dns.forward import TooManyQueries

    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # an upstream that never answers
    silent.bind(("127.0.0.1", 0))

    async def go() -> None:
        fw = Forwarder([silent.getsockname()], timeout=0.3, max_concurrent=1)
        first = asyncio.create_task(fw.resolve(b"\x01a\x04test\x00", 1, 1))
        await asyncio.sleep(0.05)
        with pytest.raises(TooManyQueries):
            await fw.resolve(b"\x01b\x04test\x00", 1, 1)
        assert await first is None  # timed out: no answer, nothing cached
        assert len(fw) == 0

    try:
        asyncio.run(go())
    finally:
        silent.close()
