"""Prometheus metrics with CoreDNS's names and labels, plus /health and /ready as CoreDNS's
health and ready plugins serve them.

The hot path only bumps plain dict counters and a bucket array (a prometheus_client
Counter.labels().inc() costs more than answering a query); a custom collector turns them into
metric families when /metrics is scraped.
"""

from __future__ import annotations

import bisect
import socket
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

# plugin.TimeBuckets: prometheus.ExponentialBuckets(0.00025, 2, 16)
TIME_BUCKETS = tuple(0.00025 * 2**i for i in range(16))

# request.Request's type label: these types by name, anything else "other" (plugin/metrics/vars).
_MONITORED = {1: "A", 28: "AAAA", 15: "MX", 6: "SOA", 5: "CNAME", 12: "PTR", 16: "TXT", 2: "NS",
              33: "SRV", 43: "DS", 48: "DNSKEY", 46: "RRSIG", 47: "NSEC", 50: "NSEC3", 13: "HINFO",
              251: "IXFR", 252: "AXFR", 255: "ANY", 64: "SVCB", 65: "HTTPS"}
_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
           16: "BADVERS"}

ZONE_LABEL = "."  # the server block (CoreDNS's default Corefile serves ".")


class DnsMetrics:
    def __init__(self, server: str) -> None:
        self.server = server
        # (proto, family, qtype, rcode, plugin) -> count
        self.counts: dict[tuple[str, int, int, int, str], int] = {}
        self.buckets = [0] * (len(TIME_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.cache_hits: Callable[[], dict[str, int]] = dict
        self.cache_misses: Callable[[], int] = lambda: 0
        self.cache_size: Callable[[], int] = lambda: 0

    def observe(self, proto: str, family: int, qtype: int, rcode: int, plugin: str,
                seconds: float) -> None:
        key = (proto, family, qtype, rcode, plugin)
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1
        self.buckets[bisect.bisect_left(TIME_BUCKETS, seconds)] += 1
        self.duration_sum += seconds

    def collect(self) -> Iterator[Any]:
        requests = CounterMetricFamily(
            "coredns_dns_requests", "Counter of DNS requests made per zone, protocol and family.",
            labels=["server", "zone", "view", "proto", "family", "type"])
        responses = CounterMetricFamily(
            "coredns_dns_responses", "Counter of response status codes.",
            labels=["server", "zone", "view", "rcode", "plugin"])
        by_request: dict[tuple[str, str, str], int] = {}
        by_response: dict[tuple[str, str], int] = {}
        for (proto, family, qtype, rcode, plugin), n in list(self.counts.items()):
            rk = (proto, str(family), _MONITORED.get(qtype, "other"))
            by_request[rk] = by_request.get(rk, 0) + n
            sk = (_RCODES.get(rcode, str(rcode)), plugin)
            by_response[sk] = by_response.get(sk, 0) + n
        for (proto, family, qtype_name), n in sorted(by_request.items()):
            requests.add_metric([self.server, ZONE_LABEL, "", proto, family, qtype_name], n)
        for (rcode_name, plugin), n in sorted(by_response.items()):
            responses.add_metric([self.server, ZONE_LABEL, "", rcode_name, plugin], n)
        yield requests
        yield responses
        duration = HistogramMetricFamily(
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took per zone.",
            labels=["server", "zone", "view"])
        cumulative = []
        total = 0
        for bound, n in zip((*TIME_BUCKETS, float("inf")), self.buckets, strict=True):
            total += n
            cumulative.append((repr(bound) if bound != float("inf") else "+Inf", total))
        duration.add_metric([self.server, ZONE_LABEL, ""], cumulative, self.duration_sum)
        yield duration
        hits = CounterMetricFamily("coredns_cache_hits", "The count of cache hits.",
                                   labels=["server", "type", "zones", "view"])
        for kind, n in sorted(self.cache_hits().items()):
            hits.add_metric([self.server, kind, ZONE_LABEL, ""], n)
        yield hits
        misses = CounterMetricFamily("coredns_cache_misses", "The count of cache misses.",
                                     labels=["server", "zones", "view"])
        misses.add_metric([self.server, ZONE_LABEL, ""], self.cache_misses())
        yield misses
        entries = GaugeMetricFamily("coredns_cache_entries", "The number of elements in the cache.",
                                    labels=["server", "type", "zones", "view"])
        entries.add_metric([self.server, "success", ZONE_LABEL, ""], self.cache_size())
        yield entries


def family_of(addr: Any) -> int:
    """CoreDNS's family label: 1 for IPv4 clients, 2 for IPv6."""
    host = addr[0] if isinstance(addr, tuple) else ""
    return 2 if ":" in host else 1


def build_http_app(metrics: DnsMetrics, ready: Callable[[], bool]) -> web.Application:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)  # type: ignore[arg-type]

    async def metrics_handler(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def ready_handler(_: web.Request) -> web.Response:
        # The ready plugin answers 200 "OK", or 503 listing the plugins not ready yet.
        if ready():
            return web.Response(text="OK")
        return web.Response(status=503, text="kubernetes")

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready_handler)
    return app


def server_label(host: str, port: int) -> str:
    """CoreDNS's server label, e.g. dns://:53 (host omitted when listening on all addresses)."""
    if host in ("", "0.0.0.0", "::"):
        return f"dns://:{port}"
    try:
        socket.inet_pton(socket.AF_INET6, host)
        return f"dns://[{host}]:{port}"
    except OSError:
        return f"dns://{host}:{port}"
