"""Benchmark of the iptables proxy: render, restore size, kernel apply, partial sync, RSS.

For 1k, 5k and 10k services x 5 endpoints: the time to turn objects into the change tracker's
maps, the time of a full render and the restore input's size; then, inside a throwaway network
namespace, the time iptables-restore takes to apply that full sync (printed as a ratio against
the render), and at 10k the time of a partial sync after one endpoint change against the full
apply. Peak RSS of this process at the end. Run as root:

    .venv/bin/python bench/proxy.py [--sizes 1000,5000,10000]
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from svcnet.proxy.config import NodeConfig
from svcnet.proxy.iptables import render
from svcnet.proxy.state import ProxyState

ENDPOINTS = 5


def objects(n: int) -> tuple[list[dict], list[dict]]:
    services, slices = [], []
    for i in range(n):
        name = f"svc-{i}"
        services.append({"kind": "Service", "metadata": {"namespace": "bench", "name": name},
                         "spec": {"clusterIP": f"172.{16 + i // 65536}.{i // 256 % 256}.{i % 256}",
                                  "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        ips = [f"10.{i // 256 % 256}.{i % 256}.{j}" for j in range(1, ENDPOINTS + 1)]
        slices.append(endpoint_slice(i, ips))
    return services, slices


def endpoint_slice(i: int, ips: list[str]) -> dict:
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"namespace": "bench", "name": f"svc-{i}-abcde",
                         "labels": {"kubernetes.io/service-name": f"svc-{i}"}},
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


class Netns:
    def __init__(self) -> None:
        self.name = "svb" + secrets.token_hex(3)

    def __enter__(self) -> Netns:
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False)

    def restore(self, text: str, binary: str) -> float:
        t0 = time.perf_counter()
        res = subprocess.run(["ip", "netns", "exec", self.name, binary, "-w", "5", "--noflush",
                              "--counters"], input=text, text=True, capture_output=True, check=False)
        elapsed = time.perf_counter() - t0
        if res.returncode != 0:
            raise RuntimeError(res.stderr)
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--no-apply", action="store_true", help="skip the kernel part (no root needed)")
    parser.add_argument("--restore", default="iptables-legacy-restore",
                        help="restore binary for the kernel part (iptables-nft-restore is far slower at 10k: "
                             "see docs/benchmarks.md)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    apply = not args.no_apply and os.geteuid() == 0
    node = NodeConfig(node_name="bench-node", node_ips=["192.168.0.2"], cluster_cidrs=["10.0.0.0/8"])
    print(f"restore binary: {args.restore if apply else '(not applied)'}")
    print(f"{'services':>8} {'build s':>8} {'render s':>9} {'re-render s':>11} {'restore MB':>10} "
          f"{'nat rules':>9} {'apply s':>8} {'apply/render':>12}")
    for n in sizes:
        services, slices = objects(n)
        t0 = time.perf_counter()
        state = ProxyState("IPv4", node.node_name)
        state.replace_all(services, slices, [])
        state.take_changes()
        t1 = time.perf_counter()
        full = render(state.svc_port_map, state.endpoints_map, node)
        t2 = time.perf_counter()
        render(state.svc_port_map, state.endpoints_map, node)
        t3 = time.perf_counter()
        apply_s = ratio = float("nan")
        partial_line = ""
        if apply:
            with Netns() as ns:
                apply_s = ns.restore(full.text, args.restore)
                ratio = apply_s / (t2 - t1)
                if n == max(sizes):
                    # one endpoint of one service changes: partial sync (KEP-3453)
                    state.on_endpoint_slice(endpoint_slice(7, ["10.0.7.1", "10.0.7.2", "10.0.7.3", "10.0.7.4",
                                                               "10.0.7.99"]))
                    t4 = time.perf_counter()
                    changes = state.take_changes()
                    partial = render(state.svc_port_map, state.endpoints_map, node,
                                     changed=changes.updated_services,
                                     existing_nat_chains=full.active_nat_chains)
                    t5 = time.perf_counter()
                    partial_apply = ns.restore(partial.text, args.restore)
                    full_again = render(state.svc_port_map, state.endpoints_map, node)
                    full_apply = ns.restore(full_again.text, args.restore)
                    partial_line = (f"partial sync at {n}: render {t5 - t4:.3f} s, restore "
                                    f"{len(partial.text) / 1e6:.2f} MB, apply {partial_apply:.3f} s; "
                                    f"full apply {full_apply:.3f} s; "
                                    f"partial/full apply = {partial_apply / full_apply:.3f}")
        print(f"{n:>8} {t1 - t0:>8.3f} {t2 - t1:>9.3f} {t3 - t2:>11.3f} {len(full.text) / 1e6:>10.2f} "
              f"{full.nat_rules:>9} {apply_s:>8.3f} {ratio:>12.2f}")
        if partial_line:
            print(partial_line)
        del services, slices, state, full  # keep only one size's data alive at a time
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
