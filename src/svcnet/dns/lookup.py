"""Answers for names inside the cluster zones, decided as CoreDNS's kubernetes plugin decides.

The structure follows the plugin so that every rule has one obvious place:
``Kubernetes.Records`` (name grammar, namespace exposure) -> ``findServices``/``findPods``
(entries: an address or name, a port, a TTL, the target name for SRV) -> the per-type
functions of plugin/backend_lookup.go (A, AAAA, SRV, TXT, PTR, CNAME, NS, SOA) -> handler.go
(NXDOMAIN vs NODATA vs SERVFAIL, the SOA in Authority). Names are lowercase label tuples; the
query's case is put back at render time (wire.py).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from svcnet.dns import wire
from svcnet.dns.index import ClusterIndex
from svcnet.dns.model import NO_PORT, endpoint_hostname
from svcnet.dns.wire import (
    APEX,
    OWNER,
    RR,
    TYPE_A,
    TYPE_AAAA,
    TYPE_AXFR,
    TYPE_CNAME,
    TYPE_IXFR,
    TYPE_MX,
    TYPE_NS,
    TYPE_PTR,
    TYPE_SOA,
    TYPE_SRV,
    TYPE_TXT,
    ZONE,
    NameRef,
)

DNS_SCHEMA_VERSION = "1.1.0"
DNS_VERSION_TTL = 28800
MAX_CNAME_CHAIN = 10
PODS_MODES = ("disabled", "insecure", "verified")

Labels = tuple[str, ...]
# An external lookup (the --upstream resolvers): (name, qtype) -> (answer RRs, truncated), or
# None when the lookup failed.
UpstreamLookup = Callable[[str, int], Awaitable[tuple[list[RR], bool] | None]]


@dataclass(frozen=True)
class ZoneOptions:
    zones: tuple[Labels, ...] = (("cluster", "local"),)
    ttl: int = 5
    pods: str = "disabled"
    ignore_empty_service: bool = False
    namespaces: frozenset[str] = frozenset()
    endpoint_pod_names: bool = False
    local_ips: tuple[str, ...] = ("127.0.0.1",)

    @property
    def primary_zone(self) -> Labels:
        for z in self.zones:
            if not is_reverse(z):
                return z
        raise ValueError("at least one non-reverse zone is needed")


@dataclass(slots=True)
class Entry:
    """CoreDNS's msg.Service: what one name lookup found."""

    host: str  # an IP address, or a name (ExternalName)
    ttl: int
    port: int = 0
    target: NameRef | None = None  # the name SRV records point at
    text: str | None = None


@dataclass(slots=True)
class Result:
    rcode: int
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)
    authoritative: bool = True
    truncated: bool = False
    dynamic: bool = False  # holds upstream data: not to be cached with the zone's answers
    # The one namespace whose objects decide this answer, or None when others may (cached
    # answers are dropped per namespace when objects change).
    depends: str | None = None


@dataclass(slots=True)
class _State:
    name: Labels  # lowercase
    owner: NameRef  # the name as asked (query case)
    zone: Labels
    qtype: int


class _Ctx:
    __slots__ = ("crossed", "dynamic", "fake")

    def __init__(self, fake: bool = False) -> None:
        self.dynamic = False  # upstream data went into the answer
        self.crossed = False  # another in-zone name was looked up (a CNAME chased)
        self.fake = fake


def is_reverse(labels: Labels) -> bool:
    return labels[-2:] == ("in-addr", "arpa") or labels[-2:] == ("ip6", "arpa")


def is_subdomain(parent: Labels, child: Labels) -> bool:
    return len(child) >= len(parent) and child[len(child) - len(parent):] == parent


def host_type(host: str) -> int:
    """msg.Service.HostType: A or AAAA for an address, CNAME for anything else."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return TYPE_CNAME
    if ip.version == 4 or ip.ipv4_mapped is not None:
        return TYPE_A
    return TYPE_AAAA


def _ip_bytes(host: str, rtype: int) -> bytes:
    ip = ipaddress.ip_address(host)
    if rtype == TYPE_A and ip.version == 6:
        assert ip.ipv4_mapped is not None
        return ip.ipv4_mapped.packed
    return ip.packed


def _lower_labels(text: str) -> Labels:
    return tuple(x.lower() for x in text.rstrip(".").split(".")) if text.strip(".") else ()


def reverse_address(name: Labels) -> str | None:
    """dnsutil.ExtractAddressFromReverse: the address a full reverse name stands for."""
    if name[-2:] == ("in-addr", "arpa"):
        parts = list(reversed(name[:-2]))
        try:
            return str(ipaddress.IPv4Address(".".join(parts)))
        except ValueError:
            return None
    if name[-2:] == ("ip6", "arpa"):
        nibbles = list(reversed(name[:-2]))
        if len(nibbles) != 32 or any(len(n) != 1 for n in nibbles):
            return None
        try:
            groups = ["".join(nibbles[i:i + 4]) for i in range(0, 32, 4)]
            return str(ipaddress.IPv6Address(":".join(groups)))
        except ValueError:
            return None
    return None


def _strip_underscore(s: str) -> str:
    return s[1:] if s.startswith("_") else s


def _match_port(want_port: str, port_name: str, want_proto: str, proto: str) -> bool:
    return (want_port == "" or want_port == port_name.lower()) and (
        want_proto == "" or want_proto == proto.lower())


class ZoneLookup:
    def __init__(self, index: ClusterIndex, options: ZoneOptions,
                 upstream: UpstreamLookup | None = None) -> None:
        self.index = index
        self.opts = options
        self.upstream = upstream
        self.primary = options.primary_zone

    # -- zones ---------------------------------------------------------------------------------

    def zone_of(self, name: Labels) -> Labels | None:
        """The longest configured zone the name lies in (plugin.Zones.Matches)."""
        best = None
        for z in self.opts.zones:
            if is_subdomain(z, name) and (best is None or len(z) > len(best)):
                best = z
        return best

    def namespace_exposed(self, ns: str) -> bool:
        if self.opts.namespaces and ns not in self.opts.namespaces:
            return False
        return ns in self.index.namespaces

    # -- Records / findServices / findPods -----------------------------------------------------

    def records(self, name: Labels, zone: Labels) -> tuple[list[Entry] | None, bool]:
        """(entries, name_error)."""
        base = name[:len(name) - len(zone)]
        if base in ((), ("svc",), ("pod",)):
            return [], False
        kind = base[-1]
        if kind not in ("svc", "pod"):
            return None, True
        rest = base[:-1]
        namespace = rest[-1]
        rest = rest[:-1]
        service = rest[-1] if rest else ""
        rest = rest[:-1]
        endpoint = port = proto = ""
        if len(rest) == 1:
            endpoint = rest[0]
        elif len(rest) == 2:
            port, proto = _strip_underscore(rest[0]), _strip_underscore(rest[1])
        elif len(rest) > 2:
            return None, True
        if is_reverse(name):
            return None, True
        if not self.namespace_exposed(namespace):
            return None, True
        if kind == "pod":
            return self._find_pods(namespace, service)
        return self._find_services(namespace, service, endpoint, port, proto)

    def _find_pods(self, namespace: str, label: str) -> tuple[list[Entry] | None, bool]:
        mode = self.opts.pods
        if mode == "disabled" or not self.namespace_exposed(namespace):
            return None, True
        if label == "":
            return [], False
        if label.count("-") == 3 and "--" not in label:
            ip = label.replace("-", ".")
        else:
            ip = label.replace("-", ":")
        if mode == "insecure":
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                return None, True
            return [Entry(ip, self.opts.ttl)], False
        pods = self.index.pods_by_ip.get(ip, ())  # keyed by the IP already: only the namespace to check
        found = [Entry(ip, self.opts.ttl) for pod_ns, _ in pods if pod_ns == namespace]
        return (found, False) if found else (None, True)

    def _find_services(self, namespace: str, service: str, endpoint: str, port: str,
                       proto: str) -> tuple[list[Entry] | None, bool]:
        if service == "":
            return [], False
        svc = self.index.services.get((namespace, service))
        if svc is None:
            return None, True
        ttl = self.opts.ttl
        slices = None
        if self.opts.ignore_empty_service and svc.type != "ExternalName" and not svc.headless:
            slices = self.index.service_slices(svc.namespace, svc.name)
            if not any(sl.addresses for sl in slices):
                return None, True
        svc_labels = (svc.name, svc.namespace, "svc")
        if svc.type == "ExternalName":
            if endpoint or port or proto or host_type(svc.external_name) != TYPE_CNAME:
                return None, True
            return [Entry(svc.external_name, ttl, target=(_enc(svc_labels), ZONE))], False
        out: list[Entry] = []
        found = False
        if svc.headless or endpoint:
            if slices is None:
                slices = self.index.service_slices(svc.namespace, svc.name)
            for sl in slices:
                for addr in sl.addresses:
                    label = endpoint_hostname(addr, self.opts.endpoint_pod_names)
                    if endpoint and endpoint != label.lower():
                        continue
                    for p in sl.ports:
                        if not _match_port(port, p.name, proto, p.protocol):
                            continue
                        found = True
                        out.append(Entry(addr.ip, ttl, p.port, (_enc((label, *svc_labels)), ZONE)))
            return (out, False) if found else (None, True)
        for p in svc.ports:
            if not _match_port(port, p.name, proto, p.protocol):
                continue
            found = True
            for ip in svc.cluster_ips:
                if not ip:  # no address allocated yet: nothing to answer (CoreDNS would CNAME to ".")
                    continue
                out.append(Entry(ip, ttl, p.port, (_enc(svc_labels), ZONE)))
        return (out, False) if found else (None, True)

    # -- Kubernetes.Services -------------------------------------------------------------------

    def services(self, st: _State, qtype: int) -> tuple[list[Entry] | None, bool]:
        if qtype == TYPE_TXT:
            base = st.name[:len(st.name) - len(st.zone)]
            if base == ("dns-version",):
                return [Entry("", DNS_VERSION_TTL, text=DNS_SCHEMA_VERSION)], False
            found, _ = self.records(st.name, st.zone)
            if found:
                return [], False
            return None, True
        if st.name == ("ns", "dns", *st.zone):
            wanted = TYPE_A if qtype == TYPE_A else TYPE_AAAA if qtype == TYPE_AAAA else 0
            return [Entry(ip, self.opts.ttl) for ip, _ in self.ns_addresses()
                    if host_type(ip) == wanted], False
        found, err = self.records(st.name, st.zone)
        if qtype == TYPE_SRV and found:
            found = [e for e in found if host_type(e.host) != TYPE_CNAME]
        return found, err

    def ns_addresses(self) -> list[tuple[str, NameRef]]:
        """nsAddrs: the DNS service's addresses (found through our own endpoint IP), else the
        local address the server listens on, named ns.dns.<zone>."""
        out: list[tuple[str, NameRef]] = []
        found = False
        for local in self.opts.local_ips:
            for key in self.index.slices_by_ip.get(local, ()):
                found = True
                sl = self.index.slices[key]
                svc = self.index.services.get((sl.namespace, sl.service))
                if svc is None:
                    continue
                labels = (svc.name, svc.namespace, "svc")
                if svc.headless:
                    for addr in sl.addresses:
                        host = endpoint_hostname(addr, self.opts.endpoint_pod_names)
                        out.append((addr.ip, (_enc((host, *labels)), ZONE)))
                else:
                    for ip in svc.cluster_ips:
                        out.append((ip, (_enc(labels), ZONE)))
        if not found:
            out = [(ip, ((b"ns", b"dns"), ZONE)) for ip in self.opts.local_ips]
        return out

    # -- per-type lookups (plugin/backend_lookup.go) -------------------------------------------

    async def address(self, st: _State, previous: list[RR], ctx: _Ctx
                      ) -> tuple[list[RR] | None, bool]:
        """plugin.A / plugin.AAAA (st.qtype says which): (records or None on name error, tc)."""
        want = st.qtype
        if st.name == st.zone:
            found, err = self.records(st.name, st.zone)
        else:
            found, err = self.services(st, want)
        if err or found is None:
            return None, False
        out: list[RR] = []
        seen: set[str] = set()
        truncated = False
        for e in found:
            what = host_type(e.host)
            if what == TYPE_CNAME:
                target = _lower_labels(e.host)
                if is_subdomain(st.name, target) or len(previous) > MAX_CNAME_CHAIN:
                    continue
                cname = RR(st.owner, TYPE_CNAME, e.ttl, wire.abs_name(e.host))
                if any(p.rtype == TYPE_CNAME and p.rdata == cname.rdata for p in previous):
                    continue
                if is_subdomain(st.zone, target):
                    ctx.crossed = True
                    inner = _State(target, wire.abs_name(e.host), st.zone, want)
                    more, tc = await self.address(inner, [*previous, cname], ctx)
                    if more:
                        out.append(cname)
                        out.extend(more)
                    truncated = truncated or tc
                    continue
                got = await self._upstream(e.host, want, ctx)
                if got is None:
                    continue
                answer, tc = got
                truncated = truncated or tc
                out.append(cname)
                out.extend(answer)
            elif what == want and e.host not in seen:
                seen.add(e.host)
                out.append(RR(st.owner, want, e.ttl, _ip_bytes(e.host, want)))
        return out, truncated

    async def _upstream(self, host: str, qtype: int, ctx: _Ctx) -> tuple[list[RR], bool] | None:
        if ctx.fake:
            return [], False
        if self.upstream is None:
            # CoreDNS asks its own server, which with no forwarder has nothing to add.
            return [], False
        ctx.dynamic = True
        return await self.upstream(host, qtype)

    def srv(self, st: _State) -> tuple[list[RR] | None, list[RR]]:
        found, err = self.services(st, TYPE_SRV)
        if err or found is None:
            return None, []
        total = 100 * len(found)  # every entry has priority 0 and the default weight 100
        records: list[RR] = []
        extra: list[RR] = []
        seen: set[tuple[object, ...]] = set()
        for e in found:
            if e.port == NO_PORT:
                continue
            weight = max(1, math.floor(100.0 / total * 100))
            what = host_type(e.host)
            assert e.target is not None
            tkey = _key(e.target)
            if ("srv", tkey, e.port) not in seen:
                seen.add(("srv", tkey, e.port))
                records.append(RR(st.owner, TYPE_SRV, e.ttl, (0, weight, e.port, e.target)))
            if ("addr", tkey, e.host) not in seen:
                seen.add(("addr", tkey, e.host))
                extra.append(RR(e.target, what, e.ttl, _ip_bytes(e.host, what)))
        return records, extra

    def txt(self, st: _State) -> list[RR] | None:
        found, err = self.services(st, TYPE_TXT)
        if err or found is None:
            return None
        seen: set[str] = set()
        out = []
        for e in found:
            if e.text is not None and e.text not in seen:
                seen.add(e.text)
                out.append(RR(st.owner, TYPE_TXT, e.ttl, (e.text.encode(),)))
        return out

    def ptr(self, st: _State) -> list[RR] | None:
        ip = reverse_address(st.name)
        if ip is None:
            _, err = self.records(st.name, st.zone)
            return None if err else []
        targets = self.reverse_targets(ip)
        if not targets:
            return None
        out = []
        seen: set[str] = set()
        for t in targets:
            if t not in seen:
                seen.add(t)
                out.append(RR(st.owner, TYPE_PTR, self.opts.ttl, wire.abs_name(t)))
        return out

    def reverse_targets(self, ip: str) -> list[str]:
        """serviceRecordForIP: the first service with that ClusterIP, else every endpoint."""
        zone = ".".join(self.primary)
        restricted = bool(self.opts.namespaces)
        for ns, name in self.index.services_by_ip.get(ip, ()):
            if restricted and not self.namespace_exposed(ns):
                continue
            return [f"{name}.{ns}.svc.{zone}"]
        out = []
        for key in self.index.slices_by_ip.get(ip, ()):
            sl = self.index.slices[key]
            if not sl.service or (restricted and not self.namespace_exposed(sl.namespace)):
                continue
            for addr in sl.addresses:
                if addr.ip == ip:
                    host = endpoint_hostname(addr, self.opts.endpoint_pod_names)
                    out.append(f"{host}.{sl.service}.{sl.namespace}.svc.{zone}")
        return out

    def cname(self, st: _State) -> list[RR] | None:
        found, err = self.services(st, TYPE_CNAME)
        if err or found is None:
            return None
        if found and host_type(found[0].host) == TYPE_CNAME:
            return [RR(st.owner, TYPE_CNAME, found[0].ttl, wire.abs_name(found[0].host))]
        return []

    def ns(self, st: _State) -> tuple[list[RR], list[RR]]:
        records: list[RR] = []
        extra: list[RR] = []
        seen: set[object] = set()
        for ip, target in self.ns_addresses():
            what = host_type(ip)
            extra.append(RR(target, what, self.opts.ttl, _ip_bytes(ip, what)))
            if _key(target) not in seen:
                seen.add(_key(target))
                records.append(RR(st.owner, TYPE_NS, self.opts.ttl, target))
        return records, extra

    def soa(self) -> RR:
        ttl = self.opts.ttl
        return RR(APEX, TYPE_SOA, min(ttl, 300),
                  (((b"ns", b"dns"), ZONE), ((b"hostmaster",), ZONE), self.index.modified & 0xFFFFFFFF,
                   7200, 1800, 86400, ttl))

    # -- handler.go ServeDNS -------------------------------------------------------------------

    async def answer(self, name: Labels, zone: Labels, qtype: int, owner: NameRef = OWNER) -> Result:
        """The reply for ``name`` (lowercase labels) in ``zone``; ``owner`` is how answer
        records name it (the query's own name unless autopath asks on another's behalf)."""
        st = _State(name, owner, zone, qtype)
        ctx = _Ctx()
        records: list[RR] | None = []
        extra: list[RR] = []
        truncated = False
        if qtype in (TYPE_A, TYPE_AAAA):
            records, truncated = await self.address(st, [], ctx)
        elif qtype == TYPE_TXT:
            records = self.txt(st)
        elif qtype == TYPE_CNAME:
            records = self.cname(st)
        elif qtype == TYPE_PTR:
            records = self.ptr(st)
        elif qtype == TYPE_MX:
            found, err = self.services(st, TYPE_MX)
            records = None if err else []
        elif qtype == TYPE_SRV:
            records, extra = self.srv(st)
        elif qtype == TYPE_SOA:
            records = [self.soa()] if name == zone else []
        elif qtype in (TYPE_AXFR, TYPE_IXFR):
            return Result(wire.RCODE_REFUSED, authoritative=False)
        elif qtype == TYPE_NS and name == zone:
            records, extra = self.ns(st)
        else:
            fake = _State(name, owner, zone, TYPE_A)
            fake_ctx = _Ctx(fake=True)
            found, _ = await self.address(fake, [], fake_ctx)
            records = None if found is None else []
            ctx.crossed = fake_ctx.crossed
        depends = None if ctx.crossed else _namespace_of(name[:len(name) - len(zone)])
        if records is None:
            rcode = wire.RCODE_NXDOMAIN if self.index.synced else wire.RCODE_SERVFAIL
            return Result(rcode, authority=[self.soa()], depends=depends)
        if not records:
            return Result(wire.RCODE_NOERROR, authority=[self.soa()], dynamic=ctx.dynamic, depends=depends)
        return Result(wire.RCODE_NOERROR, answer=records, additional=extra, truncated=truncated,
                      dynamic=ctx.dynamic, depends=depends)


def _namespace_of(base: Labels) -> str | None:
    """The namespace a name below a zone lives in (``....<ns>.svc`` or ``....<ns>.pod``), whose
    objects alone decide its answer; None for the apex, reverse names and ns.dns."""
    if len(base) >= 2 and base[-1] in ("svc", "pod"):
        return base[-2]
    return None


def _enc(labels: tuple[str, ...]) -> tuple[bytes, ...]:
    return tuple(x.encode() for x in labels)


def _key(ref: NameRef) -> tuple[object, ...]:
    labels, anchor = ref
    return (tuple(x.lower() for x in labels), anchor)
