"""Forwarding of names outside the cluster zones to the --upstream resolvers, with a cache that
honours TTLs (answers age: a hit returns the remaining TTL, as CoreDNS's cache plugin does).

Upstream replies are stored as wire templates (wire.Template) so a cache hit is served by the
same byte-copying code as cluster answers. Positive answers live for their smallest TTL,
negative ones (NXDOMAIN, NODATA) for min(SOA TTL, SOA MINIMUM) per RFC 2308; both capped as
CoreDNS's cache caps them (3600 s success, 1800 s denial). SERVFAIL and REFUSED are not cached.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from svcnet.dns import wire

log = logging.getLogger(__name__)

MAX_SUCCESS_TTL = 3600
MAX_DENIAL_TTL = 1800
CACHE_CAPACITY = 10000
UPSTREAM_TIMEOUT = 2.0
MAX_CONCURRENT = 1000  # distinct questions on their way upstream (CoreDNS's max_concurrent)


class TooManyQueries(Exception):
    """More distinct questions are waiting for upstreams than MAX_CONCURRENT: answer REFUSED,
    as CoreDNS's forward plugin does, instead of opening sockets without bound."""


@dataclass(slots=True)
class _Cached:
    stored: float
    expires: float
    template: wire.Template
    ttl_offsets: tuple[tuple[int, int], ...]  # (offset in template.data, original TTL)
    answer: list[wire.RR]
    truncated: bool
    denial: bool


def parse_hostport(text: str, default_port: int = 53) -> tuple[str, int]:
    """'IP:PORT', '[IPv6]:PORT', or a bare IP."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port else default_port
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, default_port


def _walk(data: bytes) -> tuple[int, list[tuple[int, int, int]]]:
    """(end of question, [(rtype, ttl offset, end offset) per RR]) of a well-formed message."""
    qd, an, ns, ar = struct.unpack_from("!HHHH", data, 4)
    at = 12
    for _ in range(qd):
        at = _skip_name(data, at) + 4
    qend = at
    rrs = []
    for _ in range(an + ns + ar):
        at = _skip_name(data, at)
        rtype, _cls, _ttl, rdlen = struct.unpack_from("!HHIH", data, at)
        rrs.append((rtype, at + 4, at + 10 + rdlen))
        at += 10 + rdlen
    return qend, rrs


def _skip_name(data: bytes, at: int) -> int:
    while True:
        ln = data[at]
        if ln == 0:
            return at + 1
        if ln & 0xC0 == 0xC0:
            return at + 2
        at += ln + 1


class Forwarder:
    def __init__(self, upstreams: list[tuple[str, int]], *, timeout: float = UPSTREAM_TIMEOUT,
                 capacity: int = CACHE_CAPACITY, max_concurrent: int = MAX_CONCURRENT) -> None:
        self.upstreams = upstreams
        self.timeout = timeout
        self.capacity = capacity
        self.max_concurrent = max_concurrent
        self._cache: OrderedDict[bytes, _Cached] = OrderedDict()
        self._inflight: dict[bytes, asyncio.Future[_Cached | None]] = {}
        self.hits = {"success": 0, "denial": 0}
        self.misses = 0

    def __len__(self) -> int:
        return len(self._cache)

    async def resolve(self, qname: bytes, qtype: int, qclass: int) -> _Cached | None:
        """The (possibly cached) upstream reply for a question given in wire form (any case)."""
        key = qname.lower() + struct.pack("!HH", qtype, qclass)
        now = time.monotonic()
        entry = self._cache.get(key)
        if entry is not None:
            if entry.expires > now:
                self.hits["denial" if entry.denial else "success"] += 1
                self._cache.move_to_end(key)
                return entry
            del self._cache[key]
        self.misses += 1
        pending = self._inflight.get(key)
        if pending is not None:  # a query for the same question is already on its way
            return await asyncio.shield(pending)
        if len(self._inflight) >= self.max_concurrent:
            raise TooManyQueries()
        fut: asyncio.Future[_Cached | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            entry = await self._ask(key, qname.lower(), qtype, qclass)
            fut.set_result(entry)
            return entry
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # mark retrieved: waiters get it, nobody else must
            raise
        finally:
            del self._inflight[key]

    async def _ask(self, key: bytes, qname: bytes, qtype: int, qclass: int) -> _Cached | None:
        name = dns.name.from_wire(qname, 0)[0]
        query = dns.message.make_query(name, qtype, qclass, use_edns=0, payload=1232)
        for host, port in self.upstreams:
            try:
                reply, _ = await dns.asyncquery.udp_with_fallback(
                    query, host, timeout=self.timeout, port=port)
            except (dns.exception.DNSException, OSError, EOFError, ValueError) as e:
                log.debug("upstream %s:%d failed for %s: %s", host, port, name, e)
                continue
            return self._store(key, qname, qtype, qclass, reply)
        return None

    def _store(self, key: bytes, qname: bytes, qtype: int, qclass: int,
               reply: dns.message.Message) -> _Cached:
        truncated = bool(reply.flags & dns.flags.TC)
        reply.use_edns(False)  # each client gets its own OPT (or none) at serve time
        reply.id = 0
        data = reply.to_wire(max_size=65535)
        _, rrs = _walk(data)
        # Question name in canonical (lowercase) form: the template holds the key's bytes.
        data = data[:12] + qname + data[12 + len(qname):]
        flags = struct.unpack_from("!H", data, 2)[0] & ~(wire.FLAG_RD | wire.FLAG_CD)
        an, ns, ar = struct.unpack_from("!HHH", data, 6)
        offsets = tuple((off, struct.unpack_from("!I", data, off)[0]) for _, off, _ in rrs)
        template = wire.Template(data, 12 + len(qname), flags, (an, ns, ar),
                                 tuple(end for _, _, end in rrs), (), "forward")
        answer = [wire.RR((tuple(rrset.name.labels[:-1]), wire.ABS), rrset.rdtype, rrset.ttl,
                          rd.to_wire(), rrset.rdclass)
                  for rrset in reply.answer for rd in rrset]
        rcode = reply.rcode()
        denial = rcode == dns.rcode.NXDOMAIN or (rcode == dns.rcode.NOERROR and not reply.answer)
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) or truncated:
            ttl = 0
        elif denial:
            soas = [rs for rs in reply.authority if rs.rdtype == dns.rdatatype.SOA]
            ttl = min(soas[0].ttl, soas[0][0].minimum, MAX_DENIAL_TTL) if soas else 0
        else:
            ttl = min(min(rs.ttl for rs in reply.answer), MAX_SUCCESS_TTL)
        now = time.monotonic()
        entry = _Cached(now, now + ttl, template, offsets, answer, truncated, denial)
        if ttl > 0:
            self._cache[key] = entry
            if len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return entry

    @staticmethod
    def aged(entry: _Cached) -> wire.Template:
        """The template with every TTL reduced by the time the entry spent in the cache."""
        age = int(time.monotonic() - entry.stored)
        if age <= 0 or not entry.ttl_offsets:
            return entry.template
        data = bytearray(entry.template.data)
        for off, ttl in entry.ttl_offsets:
            struct.pack_into("!I", data, off, max(0, ttl - age))
        t = entry.template
        return wire.Template(bytes(data), t.qend, t.flags, t.counts, t.ends, t.patches, "forward")

    @staticmethod
    def aged_answer(entry: _Cached) -> list[wire.RR]:
        """The entry's answer records with TTLs reduced by the time it spent in the cache."""
        age = int(time.monotonic() - entry.stored)
        return [wire.RR(rr.owner, rr.rtype, max(0, rr.ttl - age), rr.rdata, rr.rclass) for rr in entry.answer]

    async def lookup(self, host: str, qtype: int) -> tuple[list[wire.RR], bool] | None:
        """Answer records for a name outside the zones (ExternalName chasing)."""
        try:
            qname = dns.name.from_text(host).canonicalize().to_wire()
        except dns.exception.DNSException:
            return None
        try:
            entry = await self.resolve(qname, qtype, wire.CLASS_IN)
        except TooManyQueries:
            return None
        if entry is None:
            return None
        return self.aged_answer(entry), entry.truncated
