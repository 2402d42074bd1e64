"""Wire templates: the hot path's parse, ID/case/flag copying, EDNS echo and truncation."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from svcnet.dns import wire
from svcnet.dns.wire import ABS, APEX, OWNER, RR, ZONE, materialize, parse_fast, render

QNAME = "svc1.testns.svc.cluster.local."


def query(name: str = QNAME, qtype: str = "A", **kw: object) -> bytes:
    return dns.message.make_query(name, qtype, **kw).to_wire()  # type: ignore[arg-type]


def template_for(
    name: str, rrs: tuple[list[RR], list[RR], list[RR]], qtype: int = 1, rcode: int = 0
) -> wire.Template:
    q = parse_fast(query(name, dns.rdatatype.to_text(qtype)))
    assert q is not None
    qname = q.qname.lower()
    zone_at = qname.index(b"\x07cluster\x05local")
    return render(qname, qtype, 1, zone_at, rcode, True, rrs)


def test_parse_fast_plain_and_edns() -> None:
    q = parse_fast(query("SVC1.testns.svc.cluster.local."))
    assert q is not None and q.edns is None and q.udp_size == 512
    assert q.qname.startswith(b"\x04SVC1") and q.key.startswith(b"\x04svc1")
    e = parse_fast(query(use_edns=0, payload=1400, want_dnssec=True))
    assert e is not None and e.udp_size == 1400
    assert e.edns == wire.opt_rr(1400, True)
    tiny = parse_fast(query(use_edns=0, payload=100))
    assert tiny is not None and tiny.udp_size == 512  # never below 512


def test_parse_fast_key_lowercases_the_name_only() -> None:
    # qtype 65 (0x0041, "A" in ASCII) must not collide with qtype 97 (0x0061).
    a = parse_fast(query(qtype="HTTPS"))
    b = parse_fast(query(qtype="TYPE97"))
    assert a is not None and b is not None and a.key != b.key


def test_parse_fast_leaves_odd_packets_to_the_slow_path() -> None:
    q = query()
    assert parse_fast(q[:2] + bytes([q[2] | 0x80]) + q[3:]) is None  # a response
    assert parse_fast(q[:2] + bytes([(2 << 3)]) + q[3:]) is None  # opcode STATUS
    assert parse_fast(q[:4] + b"\x00\x02" + q[6:]) is None  # two questions
    assert parse_fast(q[:20]) is None  # cut short
    assert parse_fast(q + b"junk") is None  # trailing bytes
    assert parse_fast(q[:12] + b"\xc0\x0c\x00\x01\x00\x01") is None  # pointer in the question
    assert parse_fast(query(use_edns=1)) is None  # EDNS version 1: BADVERS is decided later


def test_materialize_copies_id_flags_and_case() -> None:
    t = template_for(QNAME, ([RR(OWNER, 1, 5, b"\x0a\x00\x00\x01")], [], []))
    raw = query("SvC1.TestNs.svc.CLUSTER.local.")
    q = parse_fast(raw)
    assert q is not None
    reply = dns.message.from_wire(materialize(t, q, 512))
    assert reply.id == struct.unpack("!H", raw[:2])[0]
    assert reply.flags & dns.flags.RD and reply.flags & dns.flags.AA and reply.flags & dns.flags.QR
    assert str(reply.question[0].name) == "SvC1.TestNs.svc.CLUSTER.local."
    assert str(reply.answer[0].name) == "SvC1.TestNs.svc.CLUSTER.local."
    assert reply.edns == -1
    noRD = raw[:2] + bytes([raw[2] & ~0x01 & 0xFF]) + raw[3:]
    q2 = parse_fast(noRD)
    assert q2 is not None
    assert not dns.message.from_wire(materialize(t, q2, 512)).flags & dns.flags.RD


def test_edns_echoed_with_the_request_size_and_do_bit() -> None:
    t = template_for(QNAME, ([RR(OWNER, 1, 5, b"\x0a\x00\x00\x01")], [], []))
    q = parse_fast(query(use_edns=0, payload=2048, want_dnssec=True))
    assert q is not None
    reply = dns.message.from_wire(materialize(t, q, q.udp_size))
    assert reply.edns == 0 and reply.payload == 2048 and reply.ednsflags & dns.flags.DO


def test_srv_target_not_compressed_and_keeps_query_case_of_zone() -> None:
    target = ((b"svc1", b"testns", b"svc"), ZONE)
    rrs = ([RR(OWNER, 33, 5, (0, 100, 80, target))], [], [RR(target, 1, 5, b"\x0a\x00\x00\x01")])
    name = "_http._tcp.svc1.testns.svc.cluster.local."
    t = template_for(name, rrs, qtype=33)
    assert t.patches  # the zone suffix inside the SRV target is refreshed from each query
    q = parse_fast(query("_http._TCP.SVC1.testns.svc.Cluster.LOCAL.", "SRV"))
    assert q is not None
    out = materialize(t, q, 512)
    # The target is written out in full (RFC 2782): its labels appear literally after the SRV fields.
    assert b"\x00\x00\x00\x64\x00\x50\x04svc1\x06testns\x03svc\x07Cluster\x05LOCAL\x00" in out
    reply = dns.message.from_wire(out)
    assert str(reply.answer[0][0].target) == "svc1.testns.svc.Cluster.LOCAL."
    assert str(reply.additional[0].name) == "svc1.testns.svc.Cluster.LOCAL."


def test_soa_names_follow_the_query_zone_case() -> None:
    soa = RR(APEX, 6, 5, (((b"ns", b"dns"), ZONE), ((b"hostmaster",), ZONE), 1, 7200, 1800, 86400, 5))
    t = template_for("nope.testns.svc.cluster.local.", ([], [soa], []), rcode=3)
    q = parse_fast(query("nope.testns.svc.CLUSTER.local."))
    assert q is not None
    reply = dns.message.from_wire(materialize(t, q, 512))
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert str(reply.authority[0].name) == "CLUSTER.local."
    assert str(reply.authority[0][0].mname) == "ns.dns.CLUSTER.local."


def _many(n: int) -> tuple[list[RR], list[RR], list[RR]]:
    answer = [RR(OWNER, 1, 5, bytes((10, 0, i // 256, i % 256))) for i in range(n)]
    extra = [RR(((b"x",), ABS), 1, 5, b"\x01\x02\x03\x04")]
    return answer, [], extra


def test_truncation_keeps_whole_records_and_sets_tc_only_for_answers() -> None:
    t = template_for(QNAME, _many(100))
    q = parse_fast(query())
    assert q is not None
    out = materialize(t, q, 512)
    assert len(out) <= 512
    reply = dns.message.from_wire(out)
    assert reply.flags & dns.flags.TC
    assert 0 < len(reply.answer[0]) < 100 and not reply.additional
    full = dns.message.from_wire(materialize(t, q, wire.TCP_MAX))
    assert len(full.answer[0]) == 100 and not full.flags & dns.flags.TC
    # All answers fit, only the additional record does not: no TC (RFC 2181 §9).
    size_without_extra = t.ends[99]
    out = materialize(t, q, size_without_extra)
    reply = dns.message.from_wire(out)
    assert not reply.flags & dns.flags.TC and len(reply.answer[0]) == 100 and not reply.additional


def test_truncation_leaves_room_for_opt() -> None:
    t = template_for(QNAME, _many(100))
    q = parse_fast(query(use_edns=0, payload=600))
    assert q is not None
    out = materialize(t, q, q.udp_size)
    assert len(out) <= 600
    reply = dns.message.from_wire(out)
    assert reply.flags & dns.flags.TC and reply.edns == 0


def test_error_response_is_header_only_and_keeps_the_id() -> None:
    q = query()
    out = wire.error_response(q[:15], wire.RCODE_FORMERR)
    assert out is not None and out[:2] == q[:2] and len(out) == 12
    assert dns.message.from_wire(out).rcode() == dns.rcode.FORMERR
    assert wire.error_response(b"\x01\x02", wire.RCODE_FORMERR) is None
