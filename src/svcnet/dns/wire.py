"""DNS wire format for the hot path: answers rendered once into bytes, then served per query by
copying in the query's ID, flags and name.

Names in an answer are either absolute, or relative to the *query's own name* (the whole qname,
or its zone suffix). CoreDNS echoes the query's case in owner names and in the zone part of
names it builds (handler.go: ``zone = qname[len(qname)-len(zone):]``). Rendering those names as
compression pointers into the question section makes the query's case appear everywhere for the
price of copying the question name; the few names that must not be compressed (SRV targets, RFC
2782) are written out and listed as *patches*: byte ranges to refresh from the query's name.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# Name anchors: what follows a name's own labels.
ABS = 0  # nothing: the labels are the whole name
QNAME = 1  # the query's name, in the query's case
ZONE = 2  # the zone suffix of the query's name, in the query's case

NameRef = tuple[tuple[bytes, ...], int]
OWNER: NameRef = ((), QNAME)
APEX: NameRef = ((), ZONE)

ANSWER, AUTHORITY, ADDITIONAL = 0, 1, 2

TYPE_A, TYPE_NS, TYPE_CNAME, TYPE_SOA, TYPE_PTR, TYPE_MX = 1, 2, 5, 6, 12, 15
TYPE_TXT, TYPE_AAAA, TYPE_SRV, TYPE_OPT = 16, 28, 33, 41
TYPE_IXFR, TYPE_AXFR = 251, 252
CLASS_IN = 1

RCODE_NOERROR, RCODE_FORMERR, RCODE_SERVFAIL, RCODE_NXDOMAIN = 0, 1, 2, 3
RCODE_NOTIMP, RCODE_REFUSED = 4, 5

FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080
FLAG_CD = 0x0010

UDP_MIN = 512
TCP_MAX = 65535


def labels_of(text: str) -> tuple[bytes, ...]:
    """Labels of a dotted name (no escapes; Kubernetes names never need them)."""
    text = text.rstrip(".")
    return tuple(p.encode() for p in text.split(".")) if text else ()


def abs_name(text: str) -> NameRef:
    return (labels_of(text), ABS)


def name_wire(labels: tuple[bytes, ...]) -> bytes:
    return b"".join(bytes((len(x),)) + x for x in labels) + b"\x00"


@dataclass(slots=True)
class RR:
    owner: NameRef
    rtype: int
    ttl: int
    # A/AAAA: address bytes; CNAME/PTR/NS: NameRef; SRV: (prio, weight, port, NameRef);
    # SOA: (mname, rname, serial, refresh, retry, expire, minimum); TXT: tuple of bytes;
    # anything else: raw rdata bytes (already in wire form, no names to compress).
    rdata: object
    rclass: int = CLASS_IN


@dataclass(slots=True)
class Template:
    """A rendered response with ID 0 and the question name lowercased."""

    data: bytes
    qend: int  # offset just after the question name
    flags: int  # QR/AA/TC/rcode; RD and CD are copied from each query
    counts: tuple[int, int, int]  # answer, authority, additional
    ends: tuple[int, ...]  # end offset of every RR, in order
    patches: tuple[tuple[int, int, int], ...]  # (response offset, offset in qname, length)
    plugin: str = "kubernetes"  # who decided the answer, for coredns_dns_responses_total
    body: bytes = field(init=False)  # data[qend:]: qtype, qclass, RRs

    def __post_init__(self) -> None:
        self.body = self.data[self.qend:]

    @property
    def rcode(self) -> int:
        return self.flags & 0xF


class Renderer:
    """Builds one Template. ``qname`` is the question name in wire form (lowercased), ``zone_at``
    the offset of the zone suffix inside it."""

    def __init__(self, qname: bytes, qtype: int, qclass: int, zone_at: int) -> None:
        self.qname = qname
        self.zone_at = zone_at
        self.buf = bytearray(12)
        self.buf += qname
        self.qend = len(self.buf)
        self.buf += struct.pack("!HH", qtype, qclass)
        self.comp: dict[tuple[tuple[bytes, ...], int], int] = {}
        self.patches: list[tuple[int, int, int]] = []
        self.ends: list[int] = []
        self.counts = [0, 0, 0]

    def _anchor(self, anchor: int) -> tuple[int, int]:
        """(offset in the qname, length) of an anchor's bytes."""
        if anchor == QNAME:
            return 0, len(self.qname)
        return self.zone_at, len(self.qname) - self.zone_at

    def _name(self, ref: NameRef, compress: bool = True) -> None:
        labels, anchor = ref
        buf = self.buf
        for i in range(len(labels)):
            key = (tuple(x.lower() for x in labels[i:]), anchor)
            if compress:
                at = self.comp.get(key)
                if at is not None:
                    buf += struct.pack("!H", 0xC000 | at)
                    return
            if len(buf) < 0x4000:
                self.comp.setdefault(key, len(buf))
            label = labels[i]
            buf.append(len(label))
            buf += label
        if anchor == ABS:
            buf.append(0)
            return
        qoff, qlen = self._anchor(anchor)
        if compress:
            buf += struct.pack("!H", 0xC000 | (12 + qoff))
            return
        self.patches.append((len(buf), qoff, qlen))
        buf += self.qname[qoff:]

    def add(self, section: int, rr: RR) -> None:
        buf = self.buf
        self._name(rr.owner)
        buf += struct.pack("!HHI", rr.rtype, rr.rclass, rr.ttl & 0xFFFFFFFF)
        at = len(buf)
        buf += b"\x00\x00"
        data = rr.rdata
        t = rr.rtype
        if isinstance(data, (bytes, bytearray)):
            buf += data
        elif t in (TYPE_CNAME, TYPE_PTR, TYPE_NS):
            self._name(data)  # type: ignore[arg-type]
        elif t == TYPE_SRV:
            prio, weight, port, target = data  # type: ignore[misc]
            buf += struct.pack("!HHH", prio, weight, port)
            self._name(target, compress=False)
        elif t == TYPE_SOA:
            mname, rname, *numbers = data  # type: ignore[misc]
            self._name(mname)
            self._name(rname)
            buf += struct.pack("!IIIII", *numbers)
        elif t == TYPE_TXT:
            for s in data:  # type: ignore[union-attr]
                buf.append(len(s))
                buf += s
        else:
            raise ValueError(f"cannot render rdata of type {t}")
        struct.pack_into("!H", buf, at, len(buf) - at - 2)
        self.ends.append(len(buf))
        self.counts[section] += 1

    def finish(self, rcode: int, authoritative: bool, truncated: bool = False) -> Template:
        flags = FLAG_QR | rcode
        if authoritative:
            flags |= FLAG_AA
        if truncated:
            flags |= FLAG_TC
        an, ns, ar = self.counts
        struct.pack_into("!HHHHHH", self.buf, 0, 0, flags, 1, an, ns, ar)
        return Template(bytes(self.buf), self.qend, flags, (an, ns, ar), tuple(self.ends),
                        tuple(self.patches))


def render(qname: bytes, qtype: int, qclass: int, zone_at: int, rcode: int, authoritative: bool,
           sections: tuple[list[RR], list[RR], list[RR]], truncated: bool = False) -> Template:
    r = Renderer(qname, qtype, qclass, zone_at)
    for section, rrs in enumerate(sections):
        for rr in rrs:
            r.add(section, rr)
    return r.finish(rcode, authoritative, truncated)


# -- queries -------------------------------------------------------------------------------------

@dataclass(slots=True)
class Query:
    """What the server needs from a query; ``key`` is the lowercased qname + qtype + qclass."""

    id: bytes
    flags: int  # the query's RD and CD bits
    qname: bytes  # as sent (case kept)
    qtype: int
    qclass: int
    key: bytes
    edns: bytes | None  # the response's OPT RR, or None when the query had none
    udp_size: int


def parse_fast(data: bytes) -> Query | None:
    """The common shape of a query (one question, optionally an EDNS0 OPT with version 0), or
    None for anything else, which the slow path (dnspython) handles."""
    n = len(data)
    if n < 17 or data[2] & 0xF8:  # QR set, or an opcode other than QUERY
        return None
    counts = data[4:12]
    if counts == b"\x00\x01\x00\x00\x00\x00\x00\x00":
        has_opt = False
    elif counts == b"\x00\x01\x00\x00\x00\x00\x00\x01":
        has_opt = True
    else:
        return None
    i = 12
    while True:
        ln = data[i]
        if ln == 0:
            break
        if ln > 63:
            return None
        i += ln + 1
        if i >= n:
            return None
    qend = i + 1
    p = qend + 4
    if p > n or qend - 12 > 255:
        return None
    qname = data[12:qend]
    tail = data[qend:p]
    edns = None
    size = UDP_MIN
    if has_opt:
        if p + 11 > n or data[p] != 0 or data[p + 1:p + 3] != b"\x00\x29" or data[p + 6] != 0:
            return None
        rdlen = (data[p + 9] << 8) | data[p + 10]
        if p + 11 + rdlen != n:
            return None
        size = max(UDP_MIN, (data[p + 3] << 8) | data[p + 4])
        edns = data[p:p + 5] + (b"\x00\x00\x80\x00\x00\x00" if data[p + 7] & 0x80 else
                                b"\x00\x00\x00\x00\x00\x00")
    elif p != n:
        return None
    return Query(data[:2], ((data[2] & 0x01) << 8) | (data[3] & 0x10), qname,
                 (tail[0] << 8) | tail[1], (tail[2] << 8) | tail[3], qname.lower() + tail, edns, size)


def opt_rr(udp_size: int, do: bool) -> bytes:
    return b"\x00\x00\x29" + struct.pack("!HBBHH", udp_size, 0, 0, 0x8000 if do else 0, 0)


def materialize(t: Template, q: Query, limit: int) -> bytes:
    """The response to q from template t, truncated at RR boundaries to ``limit`` bytes."""
    edns = q.edns
    size = len(t.data) + (len(edns) if edns is not None else 0)
    if size > limit:
        return _truncated(t, q, limit)
    an, ns, ar = t.counts
    flags = t.flags | q.flags
    if edns is not None:
        head = q.id + struct.pack("!HHHHH", flags, 1, an, ns, ar + 1)
        out = head + q.qname + t.body + edns
    else:
        head = q.id + struct.pack("!HHHHH", flags, 1, an, ns, ar)
        out = head + q.qname + t.body
    if t.patches:
        return _patch(out, t.patches, q.qname)
    return out


def _patch(out: bytes, patches: tuple[tuple[int, int, int], ...], qname: bytes) -> bytes:
    buf = bytearray(out)
    for at, qoff, ln in patches:
        if at + ln <= len(buf):
            buf[at:at + ln] = qname[qoff:qoff + ln]
    return bytes(buf)


def _truncated(t: Template, q: Query, limit: int) -> bytes:
    """miekg/dns Msg.Truncate as CoreDNS uses it: keep as many RRs as fit, in section order;
    TC when an answer RR had to go. The OPT RR always stays."""
    room = limit - (len(q.edns) if q.edns is not None else 0)
    keep = 0
    for end in t.ends:
        if end > room:
            break
        keep += 1
    an, ns, ar = t.counts
    kept_an = min(an, keep)
    kept_ns = min(ns, max(0, keep - an))
    kept_ar = min(ar, max(0, keep - an - ns))
    cut = t.ends[keep - 1] if keep else t.qend + 4
    flags = t.flags | q.flags
    if kept_an < an:
        flags |= FLAG_TC
    extra = 1 if q.edns is not None else 0
    out = (q.id + struct.pack("!HHHHH", flags, 1, kept_an, kept_ns, kept_ar + extra) + q.qname
           + t.data[t.qend:cut] + (q.edns or b""))
    patches = tuple(p for p in t.patches if p[0] + p[2] <= cut)
    return _patch(out, patches, q.qname) if patches else out


def error_response(data: bytes, rcode: int) -> bytes | None:
    """A header-only reply (no question) for a query that cannot be parsed: FORMERR as miekg
    sends it. None when there is not even a header to answer."""
    if len(data) < 12 or data[2] & 0x80:
        return None
    flags = FLAG_QR | ((data[2] & 0x78) << 8) | ((data[2] & 0x01) << 8) | rcode
    return data[:2] + struct.pack("!HHHHH", flags, 0, 0, 0, 0)
