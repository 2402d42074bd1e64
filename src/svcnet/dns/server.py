"""The DNS server: UDP and TCP on one port, answering cluster names from precomputed wire
templates and forwarding the rest.

Hot path (UDP, a cached name): parse the header and question by hand (wire.parse_fast), find
the template by (lowercased qname, qtype, qclass), copy in ID, RD/CD and the query's name,
send. Everything else (a first query for a name, unusual packets, forwarding) goes through a
coroutine. Templates are dropped whenever the cluster index changes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.opcode

from svcnet.dns import autopath, wire
from svcnet.dns.forward import Forwarder, TooManyQueries
from svcnet.dns.index import ClusterIndex
from svcnet.dns.lookup import ZoneLookup, ZoneOptions
from svcnet.dns.metrics import DnsMetrics, family_of
from svcnet.dns.wire import Query, Template, materialize, parse_fast

log = logging.getLogger(__name__)

TEMPLATE_CACHE_LIMIT = 50_000  # a flood of distinct names must not grow memory without bound
TCP_IDLE_TIMEOUT = 10.0
RCODE_BADVERS = 16

_perf = time.perf_counter


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 53
    upstreams: tuple[tuple[str, int], ...] = ()
    reuse_port: bool = False
    autopath: bool = False  # needs the pod index (--pods verified)


class DnsServer:
    def __init__(self, index: ClusterIndex, zone_options: ZoneOptions, options: ServerOptions,
                 metrics: DnsMetrics | None = None) -> None:
        self.index = index
        self.options = options
        self.forwarder = Forwarder(list(options.upstreams)) if options.upstreams else None
        self.lookup = ZoneLookup(index, zone_options,
                                 upstream=self.forwarder.lookup if self.forwarder is not None else None)
        self.metrics = metrics or DnsMetrics("dns://")
        if self.forwarder is not None:
            fw = self.forwarder
            self.metrics.cache_hits = lambda: dict(fw.hits)
            self.metrics.cache_misses = lambda: fw.misses
            self.metrics.cache_size = lambda: len(fw)
        self.cache: dict[bytes, Template] = {}
        # Which cached answers a change in a namespace can affect: those of names in it, and
        # the "global" ones (apex, reverse names, ns.dns, chased CNAMEs) that any change can.
        self._by_namespace: dict[str, set[bytes]] = {}
        self._global: set[bytes] = set()
        index.on_change(self._invalidate)
        # Autopath answers depend on the client's namespace: cached per (namespace, question).
        self.autopath_pods = index.pods_by_ip if options.autopath else None
        self.autopath_cache: dict[tuple[str, bytes], Template | None] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = options.port

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        udp_sock, tcp_sock = self._bind()
        self.port = udp_sock.getsockname()[1]
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=udp_sock)
        self._udp = transport  # type: ignore[assignment]
        self._tcp = await loop.create_server(lambda: _Tcp(self), sock=tcp_sock, backlog=1024)

    def _bind(self) -> tuple[socket.socket, socket.socket]:
        """A UDP and a TCP socket on the same port. With port 0 the kernel picks the UDP port,
        which may be taken for TCP: then try another."""
        family = socket.AF_INET6 if ":" in self.options.host else socket.AF_INET
        attempts = 50 if self.options.port == 0 else 1
        for attempt in range(attempts):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            tcp = socket.socket(family, socket.SOCK_STREAM)
            try:
                for sock in (udp, tcp):
                    if self.options.reuse_port:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                udp.bind((self.options.host, self.options.port))
                tcp.bind((self.options.host, udp.getsockname()[1]))
                return udp, tcp
            except OSError:
                udp.close()
                tcp.close()
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def spawn(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- answering -----------------------------------------------------------------------------

    async def respond(self, data: bytes, proto: str, addr: object) -> bytes | None:
        """The reply to one message (None: drop it). Never raises for bad input."""
        start = _perf()
        q = parse_fast(data)
        if q is None:
            q, reply = _parse_slow(data)
            if q is None:
                if reply is not None:
                    self._observe(proto, addr, 0, reply, "", start)
                return reply
        limit = q.udp_size if proto == "udp" else wire.TCP_MAX
        template = None
        plugin = "kubernetes"
        if self.autopath_pods and isinstance(addr, tuple) and addr[0] in self.autopath_pods:
            template = await self._autopath(q, addr[0])
            plugin = "autopath"
        if template is None:
            template = self.cache.get(q.key)
            if template is not None:
                plugin = template.plugin
        if template is None:
            template, plugin = await self._template(q)
        out = materialize(template, q, limit)
        self._observe(proto, addr, q.qtype, template.rcode, plugin, start)
        return out

    def _observe(self, proto: str, addr: object, qtype: int, reply: bytes | int, plugin: str,
                 start: float) -> None:
        rcode = reply if isinstance(reply, int) else reply[3] & 0xF
        self.metrics.observe(proto, family_of(addr), qtype, rcode, plugin, _perf() - start)

    async def _template(self, q: Query) -> tuple[Template, str]:
        qname = q.qname.lower()
        labels = _labels(qname)
        zone = self.lookup.zone_of(labels)
        if zone is None:
            return await self._outside(q, qname)
        generation = self.index.generation
        result = await self.lookup.answer(labels, zone, q.qtype)
        zone_at = sum(len(x) + 1 for x in labels[:len(labels) - len(zone)])
        template = wire.render(qname, q.qtype, q.qclass, zone_at, result.rcode, result.authoritative,
                               (result.answer, result.authority, result.additional), result.truncated)
        if not result.dynamic and generation == self.index.generation:
            self._remember(q.key, template, result.depends)
        return template, "kubernetes"

    async def _outside(self, q: Query, qname: bytes) -> tuple[Template, str]:
        if self.forwarder is None or q.qtype in (wire.TYPE_AXFR, wire.TYPE_IXFR):
            # No zone of ours and no upstream: no open recursion.
            template = wire.render(qname, q.qtype, q.qclass, len(qname) - 1, wire.RCODE_REFUSED, False,
                                   ([], [], []))
            template.plugin = ""  # the server refuses, no plugin does
            self._remember(q.key, template)
            return template, ""
        try:
            entry = await self.forwarder.resolve(q.qname, q.qtype, q.qclass)
        except TooManyQueries:
            return wire.render(qname, q.qtype, q.qclass, len(qname) - 1, wire.RCODE_REFUSED, False,
                               ([], [], [])), "forward"
        if entry is None:
            return wire.render(qname, q.qtype, q.qclass, len(qname) - 1, wire.RCODE_SERVFAIL, False,
                               ([], [], [])), "forward"
        return Forwarder.aged(entry), "forward"

    async def _autopath(self, q: Query, client_ip: str) -> Template | None:
        namespace = autopath.pod_namespace(self.lookup, client_ip)
        if namespace is None:
            return None
        key = (namespace, q.key)
        if key in self.autopath_cache:
            return self.autopath_cache[key]
        qname = q.qname.lower()
        generation = self.index.generation
        found = await autopath.expand(self.lookup, self.forwarder, namespace, _labels(qname),
                                      _byte_labels(q.qname), q.qtype)
        template = None
        if found is not None:
            labels = _labels(qname)
            zone = self.lookup.zone_of(labels) or ()
            zone_at = sum(len(x) + 1 for x in labels[:len(labels) - len(zone)])
            template = wire.render(qname, q.qtype, q.qclass, zone_at, found.rcode, True,
                                   (found.answer, found.authority, found.additional))
        if (found is None or not found.dynamic) and generation == self.index.generation:
            if len(self.autopath_cache) >= TEMPLATE_CACHE_LIMIT:
                self.autopath_cache.clear()
            self.autopath_cache[key] = template  # None: autopath does not apply
        return template

    def _remember(self, key: bytes, template: Template, namespace: str | None = None) -> None:
        if len(self.cache) >= TEMPLATE_CACHE_LIMIT:
            self._invalidate(None)
        self.cache[key] = template
        if namespace is None:
            self._global.add(key)
        else:
            self._by_namespace.setdefault(namespace, set()).add(key)

    def _invalidate(self, namespace: str | None) -> None:
        """Drop the cached answers a change in ``namespace`` (None: anywhere) can affect."""
        self.autopath_cache.clear()
        if namespace is None:
            self.cache.clear()
            self._by_namespace.clear()
            self._global.clear()
            return
        cache = self.cache
        for key in self._by_namespace.pop(namespace, ()):
            cache.pop(key, None)
        for key in self._global:
            cache.pop(key, None)
        self._global.clear()


def _labels(qname: bytes) -> tuple[str, ...]:
    out = []
    i = 0
    while qname[i]:
        ln = qname[i]
        out.append(qname[i + 1:i + 1 + ln].decode("latin-1"))
        i += ln + 1
    return tuple(out)


def _byte_labels(qname: bytes) -> tuple[bytes, ...]:
    out = []
    i = 0
    while qname[i]:
        out.append(qname[i + 1:i + 1 + qname[i]])
        i += qname[i] + 1
    return tuple(out)


def _parse_slow(data: bytes) -> tuple[Query | None, bytes | None]:
    """Queries parse_fast does not take: (query, None) to answer normally, or (None, reply)
    with FORMERR/NOTIMP/BADVERS, or (None, None) to drop the packet."""
    if len(data) < 12 or data[2] & 0x80:
        return None, None  # not even a header, or a response: never answer those
    opcode = (data[2] >> 3) & 0xF
    if opcode != dns.opcode.QUERY:
        return None, wire.error_response(data, wire.RCODE_NOTIMP)
    try:
        msg = dns.message.from_wire(data, ignore_trailing=False)
    except (dns.exception.DNSException, ValueError, IndexError, KeyError, UnicodeError, struct.error,
            AttributeError, TypeError):
        return None, wire.error_response(data, wire.RCODE_FORMERR)
    if len(msg.question) != 1:
        return None, wire.error_response(data, wire.RCODE_FORMERR)
    question = msg.question[0]
    qname = question.name.to_wire()
    if qname is None:
        return None, wire.error_response(data, wire.RCODE_FORMERR)
    edns = None
    size = wire.UDP_MIN
    do = bool(msg.ednsflags & dns.flags.DO)
    if msg.edns >= 0:
        if msg.edns > 0:
            # edns.Version: BADVERS (extended rcode 16) with our own OPT, version 0.
            flags = wire.FLAG_QR | ((data[2] & 0x01) << 8)
            head = data[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 1)
            opt = b"\x00\x00\x29" + struct.pack("!HBBHH", max(wire.UDP_MIN, msg.payload),
                                                RCODE_BADVERS >> 4, 0, 0x8000 if do else 0, 0)
            return None, head + qname + struct.pack("!HH", question.rdtype, question.rdclass) + opt
        size = max(wire.UDP_MIN, msg.payload)
        edns = wire.opt_rr(msg.payload, do)
    key = qname.lower() + struct.pack("!HH", question.rdtype, question.rdclass)
    flags = ((data[2] & 0x01) << 8) | (data[3] & 0x10)
    return Query(data[:2], flags, qname, question.rdtype, question.rdclass, key, edns, size), None


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        server = self.server
        start = _perf()
        q = parse_fast(data)
        if q is not None and not (server.autopath_pods and addr[0] in server.autopath_pods):
            template = server.cache.get(q.key)
            if template is not None:
                self.transport.sendto(materialize(template, q, q.udp_size), addr)  # type: ignore[union-attr]
                server.metrics.observe("udp", 2 if ":" in addr[0] else 1, q.qtype, template.flags & 0xF,
                                       template.plugin, _perf() - start)
                return
        server.spawn(self._slow(data, addr))

    async def _slow(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = await self.server.respond(data, "udp", addr)
        except Exception:
            log.exception("failed to answer a UDP query from %s", addr)
            reply = wire.error_response(data, wire.RCODE_SERVFAIL)
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


class _Tcp(asyncio.Protocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.peer: object = None
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        self._arm()

    def _arm(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(TCP_IDLE_TIMEOUT, self._timeout)

    def _timeout(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._arm()
        while len(self.buf) >= 2:
            n = (self.buf[0] << 8) | self.buf[1]
            if len(self.buf) < 2 + n:
                break
            msg = bytes(self.buf[2:2 + n])
            del self.buf[:2 + n]
            self.server.spawn(self._answer(msg))

    async def _answer(self, msg: bytes) -> None:
        try:
            reply = await self.server.respond(msg, "tcp", self.peer)
        except Exception:
            log.exception("failed to answer a TCP query from %s", self.peer)
            reply = wire.error_response(msg, wire.RCODE_SERVFAIL)
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.write(struct.pack("!H", len(reply)) + reply)
