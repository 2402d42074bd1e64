"""Optional server-side search path (CoreDNS's autopath @kubernetes), keyed by the client pod's
IP. Pods here have loopback addresses so the test client can speak from a pod's IP."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from test_dns_behaviour import StubUpstream, _pod
from test_dns_records import OBJECTS

from svcnet.dns.testing import ThreadedDns

PODS = [_pod("client", "testns", "127.0.0.1"), _pod("other", "default", "127.0.0.2")]


@pytest.fixture(scope="module")
def upstream() -> Iterator[StubUpstream]:
    stub = StubUpstream()
    try:
        yield stub
    finally:
        stub.close()


@pytest.fixture(scope="module")
def server(upstream: StubUpstream) -> Iterator[ThreadedDns]:
    with ThreadedDns(
        [*OBJECTS, *PODS], pods="verified", autopath=True, upstreams=[("127.0.0.1", upstream.port)]
    ) as d:
        yield d


def ask_from(source: str, port: int, name: str, qtype: str = "A") -> dns.message.Message:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(5)
        s.sendto(dns.message.make_query(name, qtype).to_wire(), ("127.0.0.1", port))
        return dns.message.from_wire(s.recv(65535))


def lines(reply: dns.message.Message) -> list[str]:
    return [f"{rs.name} {rs.ttl} {dns.rdatatype.to_text(rs.rdtype)} {rd}" for rs in reply.answer for rd in rs]


def test_search_path_walked_for_the_pod_namespace(server: Any) -> None:
    reply = ask_from("127.0.0.1", server.port, "kubernetes.default.testns.svc.cluster.local.")
    assert reply.rcode() == dns.rcode.NOERROR
    assert lines(reply) == [
        "kubernetes.default.testns.svc.cluster.local. 5 CNAME kubernetes.default.svc.cluster.local.",
        "kubernetes.default.svc.cluster.local. 5 A 10.0.0.100",
    ]
    assert str(reply.question[0].name) == "kubernetes.default.testns.svc.cluster.local."


def test_external_name_found_upstream_in_one_query(server: Any, upstream: StubUpstream) -> None:
    reply = ask_from("127.0.0.1", server.port, "www.example.test.testns.svc.cluster.local.")
    assert lines(reply) == [
        "www.example.test.testns.svc.cluster.local. 120 CNAME www.example.test.",
        "www.example.test. 120 A 192.0.2.80",
    ]


def test_namespace_comes_from_the_client_pod(server: Any) -> None:
    reply = ask_from("127.0.0.2", server.port, "svc1.testns.default.svc.cluster.local.")
    assert lines(reply) == [
        "svc1.testns.default.svc.cluster.local. 5 CNAME svc1.testns.svc.cluster.local.",
        "svc1.testns.svc.cluster.local. 5 A 10.0.0.1",
    ]
    # The same name from the testns pod is not under its first search domain: plain NXDOMAIN.
    assert ask_from("127.0.0.1", server.port, "svc1.testns.default.svc.cluster.local.").rcode() == (
        dns.rcode.NXDOMAIN
    )


def test_existing_names_and_non_pods_answered_as_usual(server: Any) -> None:
    same = ask_from("127.0.0.1", server.port, "svc1.testns.svc.cluster.local.")
    assert lines(same) == ["svc1.testns.svc.cluster.local. 5 A 10.0.0.1"]
    # Not a pod: no search path.
    assert ask_from("127.0.0.3", server.port, "kubernetes.default.testns.svc.cluster.local.").rcode() == (
        dns.rcode.NXDOMAIN
    )
    # Nothing found anywhere: the ordinary NXDOMAIN, and the client goes on searching.
    nothing = ask_from("127.0.0.1", server.port, "nothing.testns.svc.cluster.local.")
    assert nothing.rcode() == dns.rcode.NXDOMAIN and not nothing.answer


def test_nodata_found_on_the_path_is_returned(server: Any) -> None:
    reply = ask_from("127.0.0.1", server.port, "kubernetes.default.testns.svc.cluster.local.", "AAAA")
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    assert reply.authority[0].rdtype == dns.rdatatype.SOA
