"""bench/trace.py: one packet through a 10k-service iptables rule set, parse included.

Renders N ClusterIP services (E endpoints each) with svcnet's iptables renderer, then times
`svcnet trace`'s work for one packet to the last service (the worst case: KUBE-SERVICES is
scanned to its end). Reference run in the same process: splitting the same text into lines and
words, the least any reader of the dump must do. Target (issue #6): at most 200 ms.

    .venv/bin/python bench/trace.py [--services 10000] [--endpoints 5] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from svcnet.netfilter.api import Node, trace_text
from svcnet.netfilter.trace import Packet
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.objects import Snapshot
from svcnet.proxy.render import render_full

TARGET_MS = 200.0


def cluster_ip(i: int) -> str:
    return f"172.30.{i // 250}.{i % 250 + 1}"


def objects(services: int, endpoints: int) -> Snapshot:
    svcs, slices = [], []
    for i in range(services):
        name = f"svc{i}"
        svcs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"namespace": "bench", "name": name},
                "spec": {
                    "type": "ClusterIP",
                    "clusterIP": cluster_ip(i),
                    "clusterIPs": [cluster_ip(i)],
                    "ipFamilies": ["IPv4"],
                    "sessionAffinity": "None",
                    "internalTrafficPolicy": "Cluster",
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
                },
            }
        )
        slices.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "namespace": "bench",
                    "name": f"{name}-1",
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "endpoints": [
                    {
                        "addresses": [
                            f"10.{64 + (i * endpoints + e) // 65536}."
                            f"{(i * endpoints + e) // 256 % 256}.{(i * endpoints + e) % 256}"
                        ],
                        "conditions": {"ready": True},
                    }
                    for e in range(endpoints)
                ],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }
        )
    return Snapshot(services=svcs, endpoint_slices=slices, nodes=[])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--endpoints", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    node = NodeConfig(node_name="bench-node", node_ips=["192.168.0.2"], cluster_cidrs=["10.0.0.0/8"])
    text = render_full("iptables", objects(args.services, args.endpoints), node)
    lines = text.count("\n")
    packet = Packet("10.0.0.2", cluster_ip(args.services - 1), 80)

    def reference() -> None:
        for line in text.splitlines():
            line.split()

    def run() -> None:
        result = trace_text("iptables", text, packet, Node(["192.168.0.2"]))
        assert result.verdict == "DNAT" and len(result.endpoints) == args.endpoints, result.verdict

    def timed(fn) -> float:
        samples = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1000)
        return statistics.median(samples)

    ref_ms = timed(reference)
    trace_ms = timed(run)
    verdict = "meets" if trace_ms <= TARGET_MS else "MISSES"
    print(
        f"rule set: {args.services} services x {args.endpoints} endpoints, {lines} lines, "
        f"{len(text) / 1e6:.1f} MB"
    )
    print(f"reference (split lines and words): {ref_ms:8.1f} ms")
    print(
        f"trace one packet, parse included:  {trace_ms:8.1f} ms  ({trace_ms / ref_ms:.1f}x reference; "
        f"target {TARGET_MS:.0f} ms: {verdict})"
    )


if __name__ == "__main__":
    main()
