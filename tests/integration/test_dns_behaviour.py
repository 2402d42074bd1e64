"""svcnet dns options, protocol edges and forwarding, against a running server."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from test_dns_records import HTTP, OBJECTS, endpoint_slice, ep, namespace, service

from svcnet.dns.testing import ThreadedDns

SVC1 = "svc1.testns.svc.cluster.local."


def ask(port: int, qname: str, qtype: str = "A", tcp: bool = False, **kw: Any) -> dns.message.Message:
    q = dns.message.make_query(qname, qtype, **kw)
    if tcp:
        return dns.query.tcp(q, "127.0.0.1", port=port, timeout=5)
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=5)


def answers(reply: dns.message.Message) -> list[str]:
    return sorted(
        f"{rs.name} {rs.ttl} {dns.rdatatype.to_text(rs.rdtype)} {rd}" for rs in reply.answer for rd in rs
    )


# -- options ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ttl", "soa_ttl"), [(0, 0), (30, 30), (600, 300), (3600, 300)])
def test_ttl_option(ttl: int, soa_ttl: int) -> None:
    with ThreadedDns(OBJECTS, ttl=ttl) as d:
        assert answers(ask(d.port, SVC1)) == [f"{SVC1} {ttl} A 10.0.0.1"]
        nx = ask(d.port, "nope.testns.svc.cluster.local.")
        soa = nx.authority[0]
        assert (soa.ttl, soa[0].minimum) == (soa_ttl, ttl)
        # dns-version keeps its own TTL whatever the option says.
        assert ask(d.port, "dns-version.cluster.local.", "TXT").answer[0].ttl == 28800


def test_ignore_empty_service() -> None:
    with ThreadedDns(OBJECTS, ignore_empty_service=True) as d:
        assert ask(d.port, "svcempty.testns.svc.cluster.local.").rcode() == dns.rcode.NXDOMAIN
        assert answers(ask(d.port, SVC1)) == [f"{SVC1} 5 A 10.0.0.1"]
        # Headless and ExternalName services are exempt.
        assert ask(d.port, "hdlsprtls.testns.svc.cluster.local.").answer
        assert ask(d.port, "external.testns.svc.cluster.local.").answer


def test_namespaces_option() -> None:
    with ThreadedDns(
        OBJECTS, zones=["cluster.local", "0.10.in-addr.arpa"], namespaces=frozenset({"testns"})
    ) as d:
        assert ask(d.port, "kubernetes.default.svc.cluster.local.").rcode() == dns.rcode.NXDOMAIN
        assert ask(d.port, "default.svc.cluster.local.").rcode() == dns.rcode.NXDOMAIN
        assert ask(d.port, SVC1).answer
        assert ask(d.port, "100.0.0.10.in-addr.arpa.", "PTR").rcode() == dns.rcode.NXDOMAIN
        assert ask(d.port, "1.0.0.10.in-addr.arpa.", "PTR").answer


def test_namespace_exists_only_with_its_object() -> None:
    objs = [o for o in OBJECTS if not (o["kind"] == "Namespace" and o["metadata"]["name"] == "testns")]
    with ThreadedDns(objs) as d:
        assert ask(d.port, SVC1).rcode() == dns.rcode.NXDOMAIN
        assert ask(d.port, "testns.svc.cluster.local.").rcode() == dns.rcode.NXDOMAIN


def test_pods_insecure() -> None:
    with ThreadedDns(OBJECTS, pods="insecure") as d:
        assert answers(ask(d.port, "1-2-3-4.testns.pod.cluster.local.")) == [
            "1-2-3-4.testns.pod.cluster.local. 5 A 1.2.3.4"
        ]
        assert answers(ask(d.port, "fd00--1.testns.pod.cluster.local.", "AAAA")) == [
            "fd00--1.testns.pod.cluster.local. 5 AAAA fd00::1"
        ]
        assert ask(d.port, "1-2-3-4.missing.pod.cluster.local.").rcode() == dns.rcode.NXDOMAIN
        assert ask(d.port, "not-an-ip.testns.pod.cluster.local.").rcode() == dns.rcode.NXDOMAIN
        nodata = ask(d.port, "testns.pod.cluster.local.")
        assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
        assert ask(d.port, "missing.pod.cluster.local.").rcode() == dns.rcode.NXDOMAIN


def _pod(name: str, ns: str, ip: str, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "c", "image": "x"}]},
        "status": {"podIP": ip, "podIPs": [{"ip": ip}]},
    }


def test_pods_verified() -> None:
    objs = [*OBJECTS, _pod("p1", "testns", "172.0.0.50"), _pod("p2", "testns", "172.0.0.51", deleting=True)]
    with ThreadedDns(objs, pods="verified") as d:
        assert answers(ask(d.port, "172-0-0-50.testns.pod.cluster.local.")) == [
            "172-0-0-50.testns.pod.cluster.local. 5 A 172.0.0.50"
        ]
        assert ask(d.port, "172-0-0-50.default.pod.cluster.local.").rcode() == dns.rcode.NXDOMAIN
        assert ask(d.port, "172-0-0-51.testns.pod.cluster.local.").rcode() == dns.rcode.NXDOMAIN
        assert ask(d.port, "1-2-3-4.testns.pod.cluster.local.").rcode() == dns.rcode.NXDOMAIN


def test_servfail_until_first_sync() -> None:
    with ThreadedDns(None, metrics=True) as d:
        reply = ask(d.port, SVC1)
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert reply.authority[0].rdtype == dns.rdatatype.SOA
        # The apex is NODATA whether synced or not (not a name error).
        assert ask(d.port, "cluster.local.").rcode() == dns.rcode.NOERROR
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{d.http_port}/ready", timeout=5)
        assert err.value.code == 503
        # The sync arrives: answers follow at once.
        for obj in OBJECTS:
            {
                "Service": d.service.index.set_service,
                "EndpointSlice": d.service.index.set_slice,
                "Namespace": d.service.index.set_namespace,
            }[obj["kind"]](obj)
        d.loop.call_soon_threadsafe(d.service.index.mark_synced)
        deadline = time.monotonic() + 5
        while ask(d.port, SVC1).rcode() != dns.rcode.NOERROR and time.monotonic() < deadline:
            time.sleep(0.01)
        assert answers(ask(d.port, SVC1)) == [f"{SVC1} 5 A 10.0.0.1"]
        assert urllib.request.urlopen(f"http://127.0.0.1:{d.http_port}/ready", timeout=5).status == 200


def test_changes_invalidate_cached_answers() -> None:
    with ThreadedDns(OBJECTS) as d:
        assert answers(ask(d.port, SVC1)) == [f"{SVC1} 5 A 10.0.0.1"]
        changed = service("svc1", "testns", ["10.0.0.77"], [HTTP])
        d.call(_run(lambda: d.service.index.set_service(changed)))
        assert answers(ask(d.port, SVC1)) == [f"{SVC1} 5 A 10.0.0.77"]
        d.call(_run(lambda: d.service.index.delete_service(changed)))
        assert ask(d.port, SVC1).rcode() == dns.rcode.NXDOMAIN


async def _run(fn: Any) -> None:
    fn()


def test_a_change_drops_only_the_answers_it_can_affect() -> None:
    cross = service(
        "cross", "default", None, [], type="ExternalName", externalName="later.testns.svc.cluster.local"
    )
    with ThreadedDns([*OBJECTS, cross], zones=["cluster.local", "0.10.in-addr.arpa"]) as d:
        names = [SVC1, "kubernetes.default.svc.cluster.local.", "cross.default.svc.cluster.local."]
        for name in names:
            ask(d.port, name)
        assert ask(d.port, "101.0.0.10.in-addr.arpa.", "PTR").rcode() == dns.rcode.NXDOMAIN
        cache = d.service.server.cache
        keys = {
            name: next(k for k in cache if k.startswith(dns.name.from_text(name).to_wire())) for name in names
        }
        # A change in "default" keeps testns's answers and drops default's.
        moved = service("kubernetes", "default", ["10.0.0.101"], [("https", 443, "TCP")])
        d.call(_run(lambda: d.service.index.set_service(moved)))
        assert keys[SVC1] in cache and keys["kubernetes.default.svc.cluster.local."] not in cache
        assert answers(ask(d.port, "kubernetes.default.svc.cluster.local.")) == [
            "kubernetes.default.svc.cluster.local. 5 A 10.0.0.101"
        ]
        # Reverse names depend on every namespace.
        assert answers(ask(d.port, "101.0.0.10.in-addr.arpa.", "PTR")) == [
            "101.0.0.10.in-addr.arpa. 5 PTR kubernetes.default.svc.cluster.local."
        ]
        # An ExternalName chased into another namespace follows changes there.
        assert ask(d.port, "cross.default.svc.cluster.local.").answer == []
        later = service("later", "testns", ["10.0.0.55"], [HTTP])
        d.call(_run(lambda: d.service.index.set_service(later)))
        assert answers(ask(d.port, "cross.default.svc.cluster.local.")) == [
            "cross.default.svc.cluster.local. 5 CNAME later.testns.svc.cluster.local.",
            "later.testns.svc.cluster.local. 5 A 10.0.0.55",
        ]
        d.call(_run(lambda: d.service.index.delete_service(later)))
        assert ask(d.port, "cross.default.svc.cluster.local.").answer == []


# -- wire protocol -----------------------------------------------------------------------------------

BIG = [
    namespace("big"),
    service("many", "big", ["None"], [HTTP]),
    endpoint_slice("many-a", "many", "big", "IPv4", [HTTP], [ep(f"172.1.0.{i}") for i in range(1, 101)]),
]


@pytest.fixture(scope="module")
def big() -> Iterator[ThreadedDns]:
    with ThreadedDns(BIG) as d:
        yield d


def test_truncated_over_udp_then_complete_over_tcp(big: ThreadedDns) -> None:
    name = "many.big.svc.cluster.local."
    udp = ask(big.port, name)
    assert udp.flags & dns.flags.TC
    assert 0 < len(udp.answer[0]) < 100  # as many whole records as fit in 512 bytes
    tcp = ask(big.port, name, tcp=True)
    assert not tcp.flags & dns.flags.TC
    assert len(tcp.answer[0]) == 100
    # An EDNS0 buffer large enough takes the whole answer over UDP; a smaller one does not.
    assert len(ask(big.port, name, use_edns=0, payload=4096).answer[0]) == 100
    small = ask(big.port, name, use_edns=0, payload=1232)
    assert small.flags & dns.flags.TC and small.edns == 0


def test_truncated_srv_keeps_whole_records(big: ThreadedDns) -> None:
    name = "_http._tcp.many.big.svc.cluster.local."
    udp = ask(big.port, name, "SRV")
    assert udp.flags & dns.flags.TC
    tcp = ask(big.port, name, "SRV", tcp=True)
    assert len(tcp.answer[0]) == 100 and sum(len(r) for r in tcp.additional) == 100
    assert {rd.weight for rd in tcp.answer[0]} == {1}  # floor(10000/10000) = 1


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig (dnsutils) is not installed")
def test_dig_retries_over_tcp_after_tc(big: ThreadedDns) -> None:
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(big.port), "many.big.svc.cluster.local.", "A", "+noedns", "+tries=1"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    assert "Truncated, retrying in TCP mode" in out
    assert "ANSWER: 100" in out


def _raw(port: int, payload: bytes, wait: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(wait)
        s.sendto(payload, ("127.0.0.1", port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def test_malformed_packets(big: ThreadedDns) -> None:
    port = big.port
    assert _raw(port, b"\x12", wait=0.3) is None  # no header: dropped
    query = dns.message.make_query("many.big.svc.cluster.local.", "A").to_wire()
    response_bit = query[:2] + bytes([query[2] | 0x80]) + query[3:]
    assert _raw(port, response_bit, wait=0.3) is None  # a response: never answered
    cut = _raw(port, query[:20])  # question cut short
    assert cut is not None and cut[:2] == query[:2] and cut[3] & 0xF == dns.rcode.FORMERR
    two = query[:4] + b"\x00\x02" + query[6:]
    reply = _raw(port, two)
    assert reply is not None and reply[3] & 0xF == dns.rcode.FORMERR
    status = query[:2] + bytes([(query[2] & 0x87) | (2 << 3)]) + query[3:]
    reply = _raw(port, status)
    assert reply is not None and reply[3] & 0xF == dns.rcode.NOTIMP
    q = dns.message.make_query(SVC1, "A", use_edns=1)
    reply = dns.query.udp(q, "127.0.0.1", port=port, timeout=5)
    assert reply.rcode() == dns.rcode.BADVERS
    # A pointer in the question (legal only in later names) goes to the slow path and still parses.
    ptr = query[:12] + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    reply = _raw(port, ptr)
    assert reply is not None and reply[3] & 0xF == dns.rcode.FORMERR
    # TCP: a garbage frame, then a good query on the same connection.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(struct.pack("!H", 5) + b"\xff" * 5 + struct.pack("!H", len(query)) + query)
        got = b""
        while True:
            got += s.recv(65535)
            if len(got) >= 2 and len(got) >= 2 + struct.unpack("!H", got[:2])[0]:
                first = got[2 : 2 + struct.unpack("!H", got[:2])[0]]
                if first[:2] == query[:2]:
                    break
                got = got[2 + len(first) :]
        assert dns.message.from_wire(first).answer
    assert ask(port, "many.big.svc.cluster.local.", tcp=True).answer


# -- forwarding --------------------------------------------------------------------------------------


class StubUpstream:
    """A tiny authoritative server for *.test names, counting the queries it gets."""

    RECORDS = {
        "ext.interwebs.test.": ("A", 300, "192.0.2.53"),
        "www.example.test.": ("A", 120, "192.0.2.80"),
        "short.example.test.": ("A", 1, "192.0.2.81"),
    }

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.counts: dict[str, int] = {}
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            q = dns.message.from_wire(data)
            name = str(q.question[0].name).lower()
            self.counts[name] = self.counts.get(name, 0) + 1
            r = dns.message.make_response(q)
            rec = self.RECORDS.get(name)
            if rec is not None and q.question[0].rdtype == dns.rdatatype.from_text(rec[0]):
                r.answer.append(dns.rrset.from_text(name, rec[1], "IN", rec[0], rec[2]))
            else:
                if rec is None:
                    r.set_rcode(dns.rcode.NXDOMAIN)
                r.authority.append(
                    dns.rrset.from_text("test.", 60, "IN", "SOA", "ns.test. h.test. 1 2 3 4 30")
                )
            self.sock.sendto(r.to_wire(), addr)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def upstream() -> Iterator[StubUpstream]:
    stub = StubUpstream()
    try:
        yield stub
    finally:
        stub.close()


def test_forwarding_and_cache(upstream: StubUpstream) -> None:
    with ThreadedDns(OBJECTS, upstreams=[("127.0.0.1", upstream.port)], metrics=True) as d:
        first = ask(d.port, "www.example.test.")
        assert answers(first) == ["www.example.test. 120 A 192.0.2.80"]
        second = ask(d.port, "WWW.example.test.")
        assert second.answer[0].ttl <= 120 and str(second.answer[0].name) == "WWW.example.test."
        assert upstream.counts["www.example.test."] == 1  # served from the cache
        # Negative answers are cached too (for min(SOA TTL, MINIMUM)).
        for _ in range(2):
            assert ask(d.port, "missing.example.test.").rcode() == dns.rcode.NXDOMAIN
        assert upstream.counts["missing.example.test."] == 1
        # An expired entry is asked again.
        ask(d.port, "short.example.test.")
        time.sleep(1.2)
        ask(d.port, "short.example.test.")
        assert upstream.counts["short.example.test."] == 2
        # Cluster names never leave the server.
        assert ask(d.port, SVC1).answer and not any("cluster" in n for n in upstream.counts)
        text = urllib.request.urlopen(f"http://127.0.0.1:{d.http_port}/metrics", timeout=5).read().decode()
        server = f'server="dns://127.0.0.1:{d.port}"'
        assert f'coredns_cache_hits_total{{{server},type="success",view="",zones="."}} 1.0' in text
        assert f'coredns_cache_hits_total{{{server},type="denial",view="",zones="."}} 1.0' in text
        assert (
            f'coredns_dns_responses_total{{plugin="forward",rcode="NOERROR",{server},view="",zone="."}}'
            in text
        )


def test_external_name_chased_through_upstream(upstream: StubUpstream) -> None:
    with ThreadedDns(OBJECTS, upstreams=[("127.0.0.1", upstream.port)]) as d:
        reply = ask(d.port, "external.testns.svc.cluster.local.")
        assert [dns.rdatatype.to_text(r.rdtype) for r in reply.answer] == ["CNAME", "A"]
        assert answers(reply) == [
            "ext.interwebs.test. 300 A 192.0.2.53",
            "external.testns.svc.cluster.local. 5 CNAME ext.interwebs.test.",
        ]


# -- metrics and health ------------------------------------------------------------------------------


def test_metrics_health_ready() -> None:
    with ThreadedDns(OBJECTS, metrics=True) as d:
        for _ in range(3):
            ask(d.port, SVC1)
        ask(d.port, "nope.testns.svc.cluster.local.", tcp=True)
        for _ in range(2):  # the second from the answer cache: still the server's REFUSED
            ask(d.port, "example.com.")
        base = f"http://127.0.0.1:{d.http_port}"
        health = urllib.request.urlopen(f"{base}/health", timeout=5)
        assert (health.status, health.read()) == (200, b"OK")
        assert urllib.request.urlopen(f"{base}/ready", timeout=5).read() == b"OK"
        text = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
        server = f'server="dns://127.0.0.1:{d.port}"'
        labels = f'family="1",proto="udp",{server},type="A",view="",zone="."'
        assert f"coredns_dns_requests_total{{{labels}}} 5.0" in text
        labels = f'family="1",proto="tcp",{server},type="A",view="",zone="."'
        assert f"coredns_dns_requests_total{{{labels}}} 1.0" in text
        labels = f'plugin="kubernetes",rcode="NXDOMAIN",{server},view="",zone="."'
        assert f"coredns_dns_responses_total{{{labels}}} 1.0" in text
        labels = f'plugin="",rcode="REFUSED",{server},view="",zone="."'
        assert f"coredns_dns_responses_total{{{labels}}} 2.0" in text
        assert (
            f'coredns_dns_request_duration_seconds_bucket{{le="+Inf",{server},view="",zone="."}} 6.0' in text
        )
