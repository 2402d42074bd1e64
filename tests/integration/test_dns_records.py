"""Table tests: svcnet dns against a running server, every expected answer derived from CoreDNS's
kubernetes plugin rules (shared/reference/cluster-dns.md §2.3-2.6), compared as CoreDNS's own
tests compare (plugin/test/helpers.go SortAndCheck: sections sorted, rcode and counts exact,
owner names case-sensitive, TTLs exact; SOA compared on name, TTL and MNAME)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from svcnet.dns.testing import ThreadedDns

ZONES = ["cluster.local", "0.10.in-addr.arpa", "172.in-addr.arpa", "ip6.arpa"]


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def service(
    name: str, ns: str, cluster_ips: list[str] | None, ports: list[tuple[str, int, str]] = (), **spec: Any
) -> dict[str, Any]:
    s: dict[str, Any] = {"ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]}
    if cluster_ips is not None:
        s["clusterIP"] = cluster_ips[0]
        s["clusterIPs"] = cluster_ips
    s.update(spec)
    if not s["ports"]:
        del s["ports"]
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": s}


def endpoint_slice(
    name: str,
    svc: str,
    ns: str,
    address_type: str,
    ports: list[tuple[str, int, str]],
    endpoints: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": address_type,
        "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports],
        "endpoints": endpoints,
    }


def ep(ip: str, hostname: str | None = None, ready: bool | None = True, **extra: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"addresses": [ip], **extra}
    if ready is not None:
        e["conditions"] = {"ready": ready}
    if hostname:
        e["hostname"] = hostname
    return e


HTTP = ("http", 80, "TCP")

OBJECTS: list[dict[str, Any]] = [
    namespace("testns"),
    namespace("default"),
    namespace("nsonly"),
    # ClusterIP with two ports and an endpoint with a hostname.
    service("svc1", "testns", ["10.0.0.1"], [HTTP, ("dns", 53, "UDP")]),
    endpoint_slice(
        "svc1-a",
        "svc1",
        "testns",
        "IPv4",
        [("http", 8080, "TCP"), ("dns", 5353, "UDP")],
        [ep("172.0.0.1", "ep1a")],
    ),
    # Dual-stack ClusterIP.
    service(
        "svc6",
        "testns",
        ["10.0.0.3", "1234:abcd::1"],
        [HTTP],
        ipFamilies=["IPv4", "IPv6"],
        ipFamilyPolicy="RequireDualStack",
    ),
    # ClusterIP without endpoints.
    service("svcempty", "testns", ["10.0.0.2"], [HTTP]),
    # Headless: four IPv4 and two IPv6 ready endpoints over two slices, one not ready.
    service("hdls1", "testns", ["None"], [HTTP]),
    endpoint_slice(
        "hdls1-v4",
        "hdls1",
        "testns",
        "IPv4",
        [HTTP],
        [
            ep("172.0.0.2", "pet-0"),
            ep("172.0.0.3"),
            ep("172.0.0.4", ready=None),
            ep("172.0.0.5"),
            ep("172.0.0.9", ready=False),
        ],
    ),
    endpoint_slice("hdls1-v6", "hdls1", "testns", "IPv6", [HTTP], [ep("5678:abcd::1"), ep("5678:abcd::2")]),
    # Two endpoints sharing a hostname.
    service("dup-name", "testns", ["None"], [HTTP]),
    endpoint_slice(
        "dup-name-a", "dup-name", "testns", "IPv4", [HTTP], [ep("172.0.0.6", "dup"), ep("172.0.0.7", "dup")]
    ),
    # Headless whose slice has no ports.
    service("hdlsprtls", "testns", ["None"]),
    endpoint_slice("hdlsprtls-a", "hdlsprtls", "testns", "IPv4", [], [ep("172.0.0.20")]),
    # Headless without any ready endpoint.
    service("notready", "testns", ["None"], [HTTP]),
    endpoint_slice("notready-a", "notready", "testns", "IPv4", [HTTP], [ep("172.0.0.30", ready=False)]),
    # publishNotReadyAddresses: the controller marks endpoints ready even when not serving.
    service("pnr", "testns", ["None"], [HTTP], publishNotReadyAddresses=True),
    endpoint_slice(
        "pnr-a",
        "pnr",
        "testns",
        "IPv4",
        [HTTP],
        [{"addresses": ["172.0.0.31"], "conditions": {"ready": True, "serving": False}}],
    ),
    # StatefulSet-style names.
    service("mysql", "testns", ["None"], [("mysql", 3306, "TCP")]),
    endpoint_slice(
        "mysql-a",
        "mysql",
        "testns",
        "IPv4",
        [("mysql", 3306, "TCP")],
        [ep("172.0.0.40", "mysql-0"), ep("172.0.0.41", "mysql-1")],
    ),
    # ExternalName: outside the zone, inside the zone, inside but missing.
    service("external", "testns", None, [], type="ExternalName", externalName="ext.interwebs.test"),
    service("ext2svc", "testns", None, [], type="ExternalName", externalName="svc1.testns.svc.cluster.local"),
    service(
        "ext2none", "testns", None, [], type="ExternalName", externalName="gone.testns.svc.cluster.local"
    ),
    # A service in another namespace.
    service("kubernetes", "default", ["10.0.0.100"], [("https", 443, "TCP")]),
]

SOA = "cluster.local. 5 IN SOA ns.dns.cluster.local."
SVC1 = "svc1.testns.svc.cluster.local."
HD = "hdls1.testns.svc.cluster.local."

# (qname, qtype, rcode, answer, authority, additional)
CASES: list[tuple[str, str, str, list[str], list[str], list[str]]] = [
    # ClusterIP services
    (SVC1, "A", "NOERROR", [f"{SVC1} 5 IN A 10.0.0.1"], [], []),
    (SVC1, "AAAA", "NOERROR", [], [SOA], []),
    (
        "svc6.testns.svc.cluster.local.",
        "A",
        "NOERROR",
        ["svc6.testns.svc.cluster.local. 5 IN A 10.0.0.3"],
        [],
        [],
    ),
    (
        "svc6.testns.svc.cluster.local.",
        "AAAA",
        "NOERROR",
        ["svc6.testns.svc.cluster.local. 5 IN AAAA 1234:abcd::1"],
        [],
        [],
    ),
    (
        "svcempty.testns.svc.cluster.local.",
        "A",
        "NOERROR",
        ["svcempty.testns.svc.cluster.local. 5 IN A 10.0.0.2"],
        [],
        [],
    ),
    (
        "ep1a.svc1.testns.svc.cluster.local.",
        "A",
        "NOERROR",
        ["ep1a.svc1.testns.svc.cluster.local. 5 IN A 172.0.0.1"],
        [],
        [],
    ),
    ("nope.svc1.testns.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    (
        "kubernetes.default.svc.cluster.local.",
        "A",
        "NOERROR",
        ["kubernetes.default.svc.cluster.local. 5 IN A 10.0.0.100"],
        [],
        [],
    ),
    # Headless services
    (HD, "A", "NOERROR", [f"{HD} 5 IN A 172.0.0.{i}" for i in (2, 3, 4, 5)], [], []),
    (HD, "AAAA", "NOERROR", [f"{HD} 5 IN AAAA 5678:abcd::1", f"{HD} 5 IN AAAA 5678:abcd::2"], [], []),
    (f"pet-0.{HD}", "A", "NOERROR", [f"pet-0.{HD} 5 IN A 172.0.0.2"], [], []),
    (f"172-0-0-3.{HD}", "A", "NOERROR", [f"172-0-0-3.{HD} 5 IN A 172.0.0.3"], [], []),
    (f"5678-abcd--1.{HD}", "AAAA", "NOERROR", [f"5678-abcd--1.{HD} 5 IN AAAA 5678:abcd::1"], [], []),
    (f"172-0-0-9.{HD}", "A", "NXDOMAIN", [], [SOA], []),  # not ready
    (
        "dup.dup-name.testns.svc.cluster.local.",
        "A",
        "NOERROR",
        [
            "dup.dup-name.testns.svc.cluster.local. 5 IN A 172.0.0.6",
            "dup.dup-name.testns.svc.cluster.local. 5 IN A 172.0.0.7",
        ],
        [],
        [],
    ),
    (
        "hdlsprtls.testns.svc.cluster.local.",
        "A",
        "NOERROR",
        ["hdlsprtls.testns.svc.cluster.local. 5 IN A 172.0.0.20"],
        [],
        [],
    ),
    ("hdlsprtls.testns.svc.cluster.local.", "SRV", "NOERROR", [], [SOA], []),
    ("notready.testns.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    (
        "pnr.testns.svc.cluster.local.",
        "A",
        "NOERROR",
        ["pnr.testns.svc.cluster.local. 5 IN A 172.0.0.31"],
        [],
        [],
    ),
    (
        "mysql-0.mysql.testns.svc.cluster.local.",
        "A",
        "NOERROR",
        ["mysql-0.mysql.testns.svc.cluster.local. 5 IN A 172.0.0.40"],
        [],
        [],
    ),
    # SRV: weights 100/n per matched entry, targets deduplicated, glue in Additional
    (
        f"_http._tcp.{SVC1}",
        "SRV",
        "NOERROR",
        [f"_http._tcp.{SVC1} 5 IN SRV 0 100 80 {SVC1}"],
        [],
        [f"{SVC1} 5 IN A 10.0.0.1"],
    ),
    (
        f"_dns._udp.{SVC1}",
        "SRV",
        "NOERROR",
        [f"_dns._udp.{SVC1} 5 IN SRV 0 100 53 {SVC1}"],
        [],
        [f"{SVC1} 5 IN A 10.0.0.1"],
    ),
    (f"_http._udp.{SVC1}", "SRV", "NXDOMAIN", [], [SOA], []),
    (
        SVC1,
        "SRV",
        "NOERROR",
        [f"{SVC1} 5 IN SRV 0 50 80 {SVC1}", f"{SVC1} 5 IN SRV 0 50 53 {SVC1}"],
        [],
        [f"{SVC1} 5 IN A 10.0.0.1"],
    ),
    (
        "_http._tcp.svc6.testns.svc.cluster.local.",
        "SRV",
        "NOERROR",
        ["_http._tcp.svc6.testns.svc.cluster.local. 5 IN SRV 0 50 80 svc6.testns.svc.cluster.local."],
        [],
        [
            "svc6.testns.svc.cluster.local. 5 IN A 10.0.0.3",
            "svc6.testns.svc.cluster.local. 5 IN AAAA 1234:abcd::1",
        ],
    ),
    (
        f"_http._tcp.{HD}",
        "SRV",
        "NOERROR",
        [
            f"_http._tcp.{HD} 5 IN SRV 0 16 80 {label}.{HD}"
            for label in ("pet-0", "172-0-0-3", "172-0-0-4", "172-0-0-5", "5678-abcd--1", "5678-abcd--2")
        ],
        [],
        [
            f"pet-0.{HD} 5 IN A 172.0.0.2",
            f"172-0-0-3.{HD} 5 IN A 172.0.0.3",
            f"172-0-0-4.{HD} 5 IN A 172.0.0.4",
            f"172-0-0-5.{HD} 5 IN A 172.0.0.5",
            f"5678-abcd--1.{HD} 5 IN AAAA 5678:abcd::1",
            f"5678-abcd--2.{HD} 5 IN AAAA 5678:abcd::2",
        ],
    ),
    (
        "_http._tcp.dup-name.testns.svc.cluster.local.",
        "SRV",
        "NOERROR",
        [
            "_http._tcp.dup-name.testns.svc.cluster.local. 5 IN SRV 0 50 80 "
            "dup.dup-name.testns.svc.cluster.local."
        ],
        [],
        [
            "dup.dup-name.testns.svc.cluster.local. 5 IN A 172.0.0.6",
            "dup.dup-name.testns.svc.cluster.local. 5 IN A 172.0.0.7",
        ],
    ),
    (
        "_mysql._tcp.mysql.testns.svc.cluster.local.",
        "SRV",
        "NOERROR",
        [
            f"_mysql._tcp.mysql.testns.svc.cluster.local. 5 IN SRV 0 50 3306 "
            f"mysql-{i}.mysql.testns.svc.cluster.local."
            for i in (0, 1)
        ],
        [],
        [
            "mysql-0.mysql.testns.svc.cluster.local. 5 IN A 172.0.0.40",
            "mysql-1.mysql.testns.svc.cluster.local. 5 IN A 172.0.0.41",
        ],
    ),
    (f"_x._tcp.{HD}", "SRV", "NXDOMAIN", [], [SOA], []),
    ("external.testns.svc.cluster.local.", "SRV", "NOERROR", [], [SOA], []),
    # ExternalName: CNAME; chased inside the zone; without an upstream just the CNAME
    (
        "external.testns.svc.cluster.local.",
        "A",
        "NOERROR",
        ["external.testns.svc.cluster.local. 5 IN CNAME ext.interwebs.test."],
        [],
        [],
    ),
    (
        "external.testns.svc.cluster.local.",
        "CNAME",
        "NOERROR",
        ["external.testns.svc.cluster.local. 5 IN CNAME ext.interwebs.test."],
        [],
        [],
    ),
    (
        "ext2svc.testns.svc.cluster.local.",
        "A",
        "NOERROR",
        [f"ext2svc.testns.svc.cluster.local. 5 IN CNAME {SVC1}", f"{SVC1} 5 IN A 10.0.0.1"],
        [],
        [],
    ),
    ("ext2none.testns.svc.cluster.local.", "A", "NOERROR", [], [SOA], []),
    ("x.external.testns.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    (SVC1, "CNAME", "NOERROR", [], [SOA], []),
    # Names that are not services
    ("nope.testns.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("svc1.missing.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("a.b.c.svc1.testns.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("foo.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("cluster.local.", "A", "NOERROR", [], [SOA], []),
    ("svc.cluster.local.", "A", "NOERROR", [], [SOA], []),
    ("pod.cluster.local.", "A", "NOERROR", [], [SOA], []),
    ("testns.svc.cluster.local.", "A", "NOERROR", [], [SOA], []),
    ("nsonly.svc.cluster.local.", "A", "NOERROR", [], [SOA], []),
    ("missing.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("10-0-0-1.testns.pod.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),  # pods disabled
    # TXT
    (
        "dns-version.cluster.local.",
        "TXT",
        "NOERROR",
        ['dns-version.cluster.local. 28800 IN TXT "1.1.0"'],
        [],
        [],
    ),
    (SVC1, "TXT", "NOERROR", [], [SOA], []),
    ("nope.testns.svc.cluster.local.", "TXT", "NXDOMAIN", [], [SOA], []),
    ("cluster.local.", "TXT", "NXDOMAIN", [], [SOA], []),
    # SOA, NS and other types
    ("cluster.local.", "SOA", "NOERROR", [SOA], [], []),
    (SVC1, "SOA", "NOERROR", [], [SOA], []),
    ("nope.testns.svc.cluster.local.", "SOA", "NOERROR", [], [SOA], []),
    (
        "cluster.local.",
        "NS",
        "NOERROR",
        ["cluster.local. 5 IN NS ns.dns.cluster.local."],
        [],
        ["ns.dns.cluster.local. 5 IN A 127.0.0.1"],
    ),
    ("ns.dns.cluster.local.", "A", "NOERROR", ["ns.dns.cluster.local. 5 IN A 127.0.0.1"], [], []),
    (SVC1, "NS", "NOERROR", [], [SOA], []),
    ("nope.testns.svc.cluster.local.", "NS", "NXDOMAIN", [], [SOA], []),
    (SVC1, "MX", "NOERROR", [], [SOA], []),
    ("nope.testns.svc.cluster.local.", "MX", "NXDOMAIN", [], [SOA], []),
    (SVC1, "HINFO", "NOERROR", [], [SOA], []),
    ("nope.testns.svc.cluster.local.", "HINFO", "NXDOMAIN", [], [SOA], []),
    # PTR in reverse zones: ClusterIP first, else endpoints; targets in the primary zone
    ("1.0.0.10.in-addr.arpa.", "PTR", "NOERROR", [f"1.0.0.10.in-addr.arpa. 5 IN PTR {SVC1}"], [], []),
    (
        "3.0.0.172.in-addr.arpa.",
        "PTR",
        "NOERROR",
        [f"3.0.0.172.in-addr.arpa. 5 IN PTR 172-0-0-3.{HD}"],
        [],
        [],
    ),
    ("2.0.0.172.in-addr.arpa.", "PTR", "NOERROR", [f"2.0.0.172.in-addr.arpa. 5 IN PTR pet-0.{HD}"], [], []),
    ("1.0.0.172.in-addr.arpa.", "PTR", "NOERROR", [f"1.0.0.172.in-addr.arpa. 5 IN PTR ep1a.{SVC1}"], [], []),
    (
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.4.3.2.1.ip6.arpa.",
        "PTR",
        "NOERROR",
        [
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.4.3.2.1.ip6.arpa. 5 IN PTR "
            "svc6.testns.svc.cluster.local."
        ],
        [],
        [],
    ),
    (
        "99.0.0.10.in-addr.arpa.",
        "PTR",
        "NXDOMAIN",
        [],
        ["0.10.in-addr.arpa. 5 IN SOA ns.dns.0.10.in-addr.arpa."],
        [],
    ),
    (
        "1.0.0.10.in-addr.arpa.",
        "A",
        "NXDOMAIN",
        [],
        ["0.10.in-addr.arpa. 5 IN SOA ns.dns.0.10.in-addr.arpa."],
        [],
    ),
    (SVC1, "PTR", "NOERROR", [], [SOA], []),
    # Case: owner names and the zone keep the query's case; names from objects are lowercase
    (
        "SvC1.TeStNs.svc.cLuStEr.LoCaL.",
        "A",
        "NOERROR",
        ["SvC1.TeStNs.svc.cLuStEr.LoCaL. 5 IN A 10.0.0.1"],
        [],
        [],
    ),
    (
        "_HTTP._tcp.svc1.testns.svc.cLuStEr.LoCaL.",
        "SRV",
        "NOERROR",
        ["_HTTP._tcp.svc1.testns.svc.cLuStEr.LoCaL. 5 IN SRV 0 100 80 svc1.testns.svc.cLuStEr.LoCaL."],
        [],
        ["svc1.testns.svc.cLuStEr.LoCaL. 5 IN A 10.0.0.1"],
    ),
    (
        "Nope.testns.svc.cLuStEr.LoCaL.",
        "A",
        "NXDOMAIN",
        [],
        ["cLuStEr.LoCaL. 5 IN SOA ns.dns.cLuStEr.LoCaL."],
        [],
    ),
]


def _rr_lines(section: list[Any]) -> list[str]:
    lines = []
    for rrset in section:
        for rd in rrset:
            text = f"{rrset.name} {rrset.ttl} IN {dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text()}"
            if rrset.rdtype == dns.rdatatype.SOA:  # compared on name, TTL, type and MNAME only
                text = " ".join(text.split()[:5])
            lines.append(text)
    return sorted(lines)


def check(
    reply: dns.message.Message, rcode: str, answer: list[str], authority: list[str], additional: list[str]
) -> None:
    assert dns.rcode.to_text(reply.rcode()) == rcode
    assert _rr_lines(reply.answer) == sorted(answer)
    assert _rr_lines(reply.authority) == sorted(authority)
    assert _rr_lines(reply.additional) == sorted(additional)
    assert reply.flags & dns.flags.AA


@pytest.fixture(scope="module")
def server() -> Any:
    with ThreadedDns(OBJECTS, zones=ZONES) as s:
        yield s


def ask(port: int, qname: str, qtype: str, tcp: bool = False, **kw: Any) -> dns.message.Message:
    q = dns.message.make_query(qname, qtype, **kw)
    if tcp:
        return dns.query.tcp(q, "127.0.0.1", port=port, timeout=5)
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=5)


@pytest.mark.parametrize(
    ("qname", "qtype", "rcode", "answer", "authority", "additional"),
    CASES,
    ids=[f"{c[1]}:{c[0]}" for c in CASES],
)
def test_answers_as_coredns(
    server: Any,
    qname: str,
    qtype: str,
    rcode: str,
    answer: list[str],
    authority: list[str],
    additional: list[str],
) -> None:
    # EDNS0 with room for every answer here (truncation has its own tests), then the same
    # answer again (now from the wire cache), then over TCP without EDNS.
    reply = ask(server.port, qname, qtype, use_edns=0, payload=4096)
    check(reply, rcode, answer, authority, additional)
    check(ask(server.port, qname, qtype, use_edns=0, payload=4096), rcode, answer, authority, additional)
    check(ask(server.port, qname, qtype, tcp=True), rcode, answer, authority, additional)


def test_cname_precedes_its_target(server: Any) -> None:
    reply = ask(server.port, "ext2svc.testns.svc.cluster.local.", "A")
    assert [dns.rdatatype.to_text(r.rdtype) for r in reply.answer] == ["CNAME", "A"]


def test_soa_fields(server: Any) -> None:
    soa = ask(server.port, "cluster.local.", "SOA").answer[0][0]
    assert (str(soa.mname), str(soa.rname)) == ("ns.dns.cluster.local.", "hostmaster.cluster.local.")
    assert (soa.refresh, soa.retry, soa.expire, soa.minimum) == (7200, 1800, 86400, 5)


def test_axfr_and_ixfr_refused(server: Any) -> None:
    for qtype in ("AXFR", "IXFR"):
        reply = ask(server.port, "cluster.local.", qtype, tcp=True)
        assert reply.rcode() == dns.rcode.REFUSED


def test_outside_names_refused_without_upstream(server: Any) -> None:
    reply = ask(server.port, "example.com.", "A")
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.answer


def test_rd_and_id_echoed(server: Any) -> None:
    q = dns.message.make_query(SVC1, "A")
    q.flags &= ~dns.flags.RD
    reply = dns.query.udp(q, "127.0.0.1", port=server.port, timeout=5)
    assert reply.id == q.id and not reply.flags & dns.flags.RD
    q2 = dns.message.make_query(SVC1, "A")
    reply2 = dns.query.udp(q2, "127.0.0.1", port=server.port, timeout=5)
    assert reply2.id == q2.id and reply2.flags & dns.flags.RD


def test_edns_echoed_only_when_asked(server: Any) -> None:
    with_edns = ask(server.port, SVC1, "A", use_edns=0, payload=1400)
    assert with_edns.edns == 0 and with_edns.payload == 1400
    without = ask(server.port, SVC1, "A", use_edns=False)
    assert without.edns == -1


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig (dnsutils) is not installed")
@pytest.mark.parametrize(
    ("qname", "qtype", "status", "lines"),
    [
        (SVC1, "A", "NOERROR", [f"{SVC1} 5 IN A 10.0.0.1"]),
        (f"_http._tcp.{SVC1}", "SRV", "NOERROR", [f"_http._tcp.{SVC1} 5 IN SRV 0 100 80 {SVC1}"]),
        ("nope.testns.svc.cluster.local.", "A", "NXDOMAIN", []),
        ("1.0.0.10.in-addr.arpa.", "PTR", "NOERROR", [f"1.0.0.10.in-addr.arpa. 5 IN PTR {SVC1}"]),
        ("dns-version.cluster.local.", "TXT", "NOERROR", ['dns-version.cluster.local. 28800 IN TXT "1.1.0"']),
    ],
)
def test_dig(server: Any, qname: str, qtype: str, status: str, lines: list[str]) -> None:
    out = subprocess.run(
        [
            "dig",
            "@127.0.0.1",
            "-p",
            str(server.port),
            qname,
            qtype,
            "+noall",
            "+answer",
            "+comments",
            "+tries=1",
            "+time=3",
        ],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    assert f"status: {status}" in out
    answer = [" ".join(line.split()) for line in out.splitlines() if line and not line.startswith(";")]
    assert answer == lines


def test_unknown_class_and_any_type_do_not_break(server: Any) -> None:
    reply = ask(server.port, SVC1, "ANY")
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer


def test_udp_socket_still_serves_after_many_distinct_names(server: Any) -> None:
    # Distinct names are cached per name; a burst of misses must neither fail nor leak errors.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        for i in range(300):
            q = dns.message.make_query(f"n{i}.testns.svc.cluster.local.", "A")
            s.sendto(q.to_wire(), ("127.0.0.1", server.port))
            reply = dns.message.from_wire(s.recv(4096))
            assert reply.rcode() == dns.rcode.NXDOMAIN
