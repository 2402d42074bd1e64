"""Server-side search-path expansion: CoreDNS's ``autopath @kubernetes``.

A pod with ``ndots:5`` asks ``google.com.<ns>.svc.<zone>`` first, then walks its search list,
one NXDOMAIN at a time. When a query comes from a known pod's IP (``--pods verified``) and its
name lies under that pod's first search domain, the server walks the list itself: base name
plus ``<ns>.svc.<zone>``, ``svc.<zone>``, ``<zone>``, then the bare name (forwarded), and
answers the first that is not NXDOMAIN, with a CNAME from the asked name to the found one
(plugin/autopath/autopath.go, ``cnamer``). When every try is NXDOMAIN the ordinary answer
stands, and the client goes on searching.
"""

from __future__ import annotations

from dataclasses import dataclass

from svcnet.dns import wire
from svcnet.dns.forward import Forwarder, TooManyQueries
from svcnet.dns.lookup import Labels, ZoneLookup, is_subdomain
from svcnet.dns.wire import OWNER, RR, TYPE_CNAME


@dataclass(slots=True)
class Found:
    rcode: int
    answer: list[RR]
    authority: list[RR]
    additional: list[RR]
    dynamic: bool


def pod_namespace(lookup: ZoneLookup, client_ip: str) -> str | None:
    """The namespace of the pod with this IP (the first one, as CoreDNS's podWithIP)."""
    pods = lookup.index.pods_by_ip.get(client_ip)
    if not pods:
        return None
    return next(iter(pods))[0]


async def expand(lookup: ZoneLookup, forwarder: Forwarder | None, namespace: str, qname: Labels,
                 qname_as_asked: tuple[bytes, ...], qtype: int) -> Found | None:
    """The autopath answer for ``qname`` asked from a pod in ``namespace``, or None when
    autopath does not apply or finds nothing better than the ordinary answer."""
    zone = lookup.zone_of(qname)
    if zone is None:
        return None
    first = (namespace, "svc", *zone)
    if not is_subdomain(first, qname) or qname == first:
        return None
    cut = len(qname) - len(first)
    base = qname[:cut]
    base_as_asked = qname_as_asked[:cut]
    original = await lookup.answer(qname, zone, qtype)
    if original.rcode != wire.RCODE_NXDOMAIN:
        return None  # the name as asked exists (or the index is not synced): answer it as such
    for suffix in (("svc", *zone), zone, ()):
        name = base + suffix
        target = (base_as_asked + tuple(x.encode() for x in suffix), wire.ABS)
        try_zone = lookup.zone_of(name)
        if try_zone is not None:
            result = await lookup.answer(name, try_zone, qtype, owner=target)
            if result.rcode == wire.RCODE_NXDOMAIN:
                continue
            if result.rcode != wire.RCODE_NOERROR:
                return None
            return Found(result.rcode, _cnamer(result.answer), result.authority, result.additional,
                         result.dynamic)
        if forwarder is None or not name:
            return None
        try:
            entry = await forwarder.resolve(wire.name_wire(tuple(x.encode() for x in name)), qtype, 1)
        except TooManyQueries:
            return None
        if entry is None or entry.template.rcode != wire.RCODE_NOERROR:
            return None
        return Found(wire.RCODE_NOERROR, _cnamer(Forwarder.aged_answer(entry)), [], [], True)
    return None


def _cnamer(answer: list[RR]) -> list[RR]:
    """A CNAME from the asked name to the owner of the first answer, put in front."""
    if not answer:
        return answer
    first = answer[0]
    return [RR(OWNER, TYPE_CNAME, first.ttl, first.owner), *answer]
