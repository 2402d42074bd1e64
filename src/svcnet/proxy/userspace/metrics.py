"""Per service and endpoint metrics of the user-space proxy, read at scrape time.

The forwarder keeps plain integer counters on each Backend (cheap on the data path); this
collector turns them into Prometheus families when /metrics is scraped. Counters belong to the
endpoint's Backend object, so they restart from zero if an endpoint leaves and comes back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from svcnet.proxy.userspace.proxier import UserspaceProxier


class UserspaceCollector(Collector):
    def __init__(self, proxier: UserspaceProxier) -> None:
        self.proxier = proxier

    def collect(self) -> Iterator:
        ep_labels = ["service", "protocol", "endpoint"]
        conns = CounterMetricFamily("svcnet_userspace_connections",
                                    "Connections (TCP) or flows (UDP) forwarded to an endpoint",
                                    labels=ep_labels)
        active = GaugeMetricFamily("svcnet_userspace_active_connections",
                                   "Open connections or flows to an endpoint (not half-closed)",
                                   labels=ep_labels)
        inactive = GaugeMetricFamily("svcnet_userspace_inactive_connections",
                                     "Half-closed connections to an endpoint", labels=ep_labels)
        nbytes = CounterMetricFamily("svcnet_userspace_bytes", "Bytes forwarded, by direction (in = to the "
                                     "endpoint, out = to the client)", labels=[*ep_labels, "direction"])
        choices = CounterMetricFamily("svcnet_userspace_scheduler_choices",
                                      "Times the scheduler (or session affinity) chose an endpoint",
                                      labels=[*ep_labels, "scheduler"])
        retries = CounterMetricFamily("svcnet_userspace_connect_retries",
                                      "Failed connects to an endpoint after which another one was tried",
                                      labels=ep_labels)
        up = GaugeMetricFamily("svcnet_userspace_endpoint_up",
                               "1 unless passive or active health checks marked the endpoint down",
                               labels=ep_labels)
        draining = GaugeMetricFamily("svcnet_userspace_endpoint_draining",
                                     "1 for an endpoint that gets no new connections while its open ones end",
                                     labels=ep_labels)
        rejected = CounterMetricFamily("svcnet_userspace_rejected_connections",
                                       "Connections refused: max-connections reached, or no usable endpoint",
                                       labels=["service", "protocol", "reason"])
        now = time.monotonic()
        for rt in self.proxier.runtimes():
            svc, proto = str(rt.name), rt.name.protocol
            for b in rt.pool.all():
                labels = [svc, proto, b.key]
                conns.add_metric(labels, b.connections)
                active.add_metric(labels, b.active)
                inactive.add_metric(labels, b.inactive)
                nbytes.add_metric([*labels, "in"], b.bytes_in)
                nbytes.add_metric([*labels, "out"], b.bytes_out)
                choices.add_metric([*labels, rt.scheduler], b.choices)
                retries.add_metric(labels, b.retries)
                up.add_metric(labels, 0 if b.down_until > now else 1)
                draining.add_metric(labels, 1 if b.key in rt.pool.draining else 0)
            limit = sum(fe.rejected_limit for fe in rt.frontends.values())
            none = sum(fe.rejected_no_endpoint for fe in rt.frontends.values())
            rejected.add_metric([svc, proto, "max-connections"], limit)
            rejected.add_metric([svc, proto, "no-endpoint"], none)
        yield from (conns, active, inactive, nbytes, choices, retries, up, draining, rejected)
