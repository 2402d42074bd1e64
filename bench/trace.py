"""bench/trace.py: one packet through a 10k-service iptables rule set, parse included.

Renders N ClusterIP services (E endpoints each) with svcnet's iptables renderer, then times
`svcnet trace`'s work for one packet to the last service (the worst case: KUBE-SERVICES is
scanned to its end). Reference run in the same process: splitting the same text into lines and
words, the least any reader of the dump must do. Target (issue #6): at most 200 ms.

    .venv/bin/python bench/trace.py [--services 10000] [--endpoints 5] [--repeat 5]
                                    [--mode iptables|nftables|nftables-rendered]

With --mode nftables the rule set is a compact `nft -f` transaction in kube-proxy's nftables
layout written by this script (each chain added once, no flushes): the same services,
dispatched through the service-ips verdict map and `numgen random mod N vmap`. With --mode
nftables-rendered it is what svcnet's nftables renderer writes for a first sync (every chain
added, flushed, then filled: the text `svcnet proxy render --mode nftables` prints).
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


NFT_BASE = """add table ip kube-proxy { comment "rules for kube-proxy" ; }
add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }
add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }
add map ip kube-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; }
add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }
add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority 100 ; }
add chain ip kube-proxy filter-forward { type filter hook forward priority 0 ; }
add chain ip kube-proxy services
add chain ip kube-proxy service-endpoints-check
add chain ip kube-proxy mark-for-masquerade
add chain ip kube-proxy masquerading
add rule ip kube-proxy nat-prerouting jump services
add rule ip kube-proxy nat-postrouting jump masquerading
add rule ip kube-proxy filter-forward ct state new jump service-endpoints-check
add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip kube-proxy service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services
add rule ip kube-proxy mark-for-masquerade mark set mark or 0x4000
add rule ip kube-proxy masquerading mark and 0x4000 == 0 return
add rule ip kube-proxy masquerading mark set mark xor 0x4000
add rule ip kube-proxy masquerading masquerade fully-random
"""


def nft_rules(services: int, endpoints: int) -> str:
    out = [NFT_BASE]
    for i in range(services):
        svc = f"service-BENCH000-bench/svc{i}/tcp/http"
        chains = []
        for e in range(endpoints):
            n = i * endpoints + e
            ip = f"10.{64 + n // 65536}.{n // 256 % 256}.{n % 256}"
            chain = f"endpoint-BENCH000-bench/svc{i}/tcp/http__{ip}/8080"
            chains.append(chain)
            out.append(
                f"add chain ip kube-proxy {chain}\n"
                f"add rule ip kube-proxy {chain} ip saddr {ip} jump mark-for-masquerade\n"
                f"add rule ip kube-proxy {chain} meta l4proto tcp dnat to {ip}:8080\n"
            )
        vmap = " , ".join(f"{k} : goto {c}" for k, c in enumerate(chains))
        out.append(
            f"add chain ip kube-proxy {svc}\n"
            f"add rule ip kube-proxy {svc} ip daddr {cluster_ip(i)} tcp dport 80 ip saddr != 10.0.0.0/8 "
            "jump mark-for-masquerade\n"
            f"add rule ip kube-proxy {svc} numgen random mod {endpoints} vmap {{ {vmap} }}\n"
            f"add element ip kube-proxy cluster-ips {{ {cluster_ip(i)} }}\n"
            f"add element ip kube-proxy service-ips {{ {cluster_ip(i)} . tcp . 80 : goto {svc} }}\n"
        )
    return "".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--endpoints", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--mode", choices=("iptables", "nftables", "nftables-rendered"), default="iptables")
    args = ap.parse_args()
    node = NodeConfig(node_name="bench-node", node_ips=["192.168.0.2"], cluster_cidrs=["10.0.0.0/8"])
    if args.mode == "nftables":
        text = nft_rules(args.services, args.endpoints)
    else:
        text = render_full(args.mode.removesuffix("-rendered"), objects(args.services, args.endpoints), node)
    tracer = args.mode.removesuffix("-rendered")
    lines = text.count("\n")
    packet = Packet("10.0.0.2", cluster_ip(args.services - 1), 80)

    def reference() -> None:
        for line in text.splitlines():
            line.split()

    def run() -> None:
        result = trace_text(tracer, text, packet, Node(["192.168.0.2"]))
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
        f"{args.mode} rule set: {args.services} services x {args.endpoints} endpoints, {lines} lines, "
        f"{len(text) / 1e6:.1f} MB"
    )
    print(f"reference (split lines and words): {ref_ms:8.1f} ms")
    print(
        f"trace one packet, parse included:  {trace_ms:8.1f} ms  ({trace_ms / ref_ms:.1f}x reference; "
        f"target {TARGET_MS:.0f} ms: {verdict})"
    )


if __name__ == "__main__":
    main()
