"""Benchmark of the nftables proxy against the iptables proxy, in throwaway network namespaces.

(a) Control plane at 10k services: one endpoint change, end to end, inside the node's
    namespace as the proxy runs (the change tracker takes the new EndpointSlice, the syncer
    plans the transaction against its mirror, libnftables applies it; the nft binary too, for
    comparison), against a full sync of the same 10k services. Targets: <= 50 ms and <= 5%.
(b) Data plane: TCP connect latency (the first packet of a connection traverses the rules;
    later ones follow conntrack) from a client namespace to the most recently added service
    (named to sort last, so the iptables KUBE-SERVICES scan reaches it last) with 10, 1k, 5k
    and 10k services, iptables mode against nftables mode, in one run: one node namespace per
    configuration, loaded first, then rounds of connects that take turns across them.
    Target: nftables at 10k within 1.2x of nftables at 10. Upstream's published chart
    (KEP-3866) shows iptables growing with the number of services and nftables flat.

A PNG plot of (b) goes to docs/nftables-latency.png: with matplotlib if pip can install it
into a scratch directory at run time (pyproject is left alone), else with a small PNG writer.
Run as root:  .venv/bin/python bench/nftables.py [--sizes 10,1000,5000,10000] [--samples 600]
              [--parts a,b]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "src"))

from plotlib import import_pyplot  # noqa: E402
from svcnet.node.netns import entered  # noqa: E402
from svcnet.proxy import iptables as ipt_render  # noqa: E402
from svcnet.proxy.apply.nft import LibNft, Nft, node_nft  # noqa: E402
from svcnet.proxy.config import NodeConfig  # noqa: E402
from svcnet.proxy.nftables import NftablesSyncer  # noqa: E402
from svcnet.proxy.state import ProxyState  # noqa: E402

SERVER_IP, CLIENT_IP = "10.200.2.2", "10.200.1.2"
NODE_CLIENT_SIDE, NODE_SERVER_SIDE = "10.200.1.1", "10.200.2.1"
POD_CIDR = "10.200.0.0/16"

SERVER = r'''
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(4096)
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.close()
'''

CLIENT = r'''
import json, socket, sys, time
host, port, samples, warm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out = []
for i in range(warm + samples):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    t0 = time.perf_counter_ns(); s.connect((host, port)); t1 = time.perf_counter_ns()
    s.close()
    if i >= warm:
        out.append((t1 - t0) / 1000.0)
print(json.dumps(out))
'''


def sh(*args: str, text: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), input=text, capture_output=True, text=True, check=check)


class Lab:
    """client ns -- node ns -- server ns, routed (no bridge): the node DNATs service traffic."""

    def __init__(self, run_id: str, index: int = 0) -> None:
        self.prefix = f"bnf{run_id}{index}"
        self.node, self.client, self.server = (f"{self.prefix}{x}" for x in ("node", "cli", "srv"))
        self.made: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.dir = tempfile.mkdtemp(prefix="bench-nft-")

    def run(self, ns: str, *args: str, text: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", ns, *args, text=text, check=check)

    def build(self) -> None:
        for ns in (self.node, self.client, self.server):
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
            self.run(ns, "ip", "link", "set", "lo", "up")
        for peer_ns, node_ip, peer_ip, tag in ((self.client, NODE_CLIENT_SIDE, CLIENT_IP, "c"),
                                               (self.server, NODE_SERVER_SIDE, SERVER_IP, "s")):
            a, b = f"{self.prefix}{tag}0", f"{self.prefix}{tag}1"
            sh("ip", "link", "add", a, "netns", self.node, "type", "veth", "peer", "name", b,
               "netns", peer_ns)
            self.run(self.node, "ip", "addr", "add", f"{node_ip}/24", "dev", a)
            self.run(self.node, "ip", "link", "set", a, "up")
            self.run(peer_ns, "ip", "addr", "add", f"{peer_ip}/24", "dev", b)
            self.run(peer_ns, "ip", "link", "set", b, "up")
            self.run(peer_ns, "ip", "route", "add", "default", "via", node_ip)
        self.run(self.node, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
        # service IPs must route somewhere before DNAT; point them at the client side
        self.run(self.node, "ip", "route", "add", "default", "via", CLIENT_IP)
        path = os.path.join(self.dir, "server.py")
        with open(path, "w") as f:
            f.write(SERVER)
        proc = subprocess.Popen(["ip", "netns", "exec", self.server, sys.executable, path],
                                stdout=subprocess.PIPE, text=True, start_new_session=True)
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def connect_latency(self, ip: str, samples: int) -> list[float]:
        path = os.path.join(self.dir, "client.py")
        with open(path, "w") as f:
            f.write(CLIENT)
        res = self.run(self.client, sys.executable, path, ip, "80", str(samples), "50")
        return json.loads(res.stdout)

    def teardown(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
                proc.wait(timeout=5)
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def service_ip(i: int) -> str:
    return f"10.96.{i // 250}.{i % 250 + 1}"


def make_state(n: int, node: NodeConfig) -> ProxyState:
    st = ProxyState(node.family, node.node_name)
    st.services_synced = st.slices_synced = True
    for i in range(n):
        st.on_service(service_obj(i))
        st.on_endpoint_slice(slice_obj(i, [SERVER_IP]))
    st.take_changes()
    return st


def service_obj(i: int) -> dict:
    return {"kind": "Service", "metadata": {"namespace": "bench", "name": f"svc-{i:05d}"},
            "spec": {"clusterIP": service_ip(i), "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}


def slice_obj(i: int, ips: list[str]) -> dict:
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"namespace": "bench", "name": f"svc-{i:05d}-1",
                         "labels": {"kubernetes.io/service-name": f"svc-{i:05d}"}},
            "endpoints": [{"addresses": [ip]} for ip in ips],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def node_config() -> NodeConfig:
    return NodeConfig(node_name="bench-node", node_ips=[NODE_CLIENT_SIDE], cluster_cidrs=[POD_CIDR],
                      service_cidrs=["10.96.0.0/16"])


def clear(lab: Lab) -> None:
    lab.run(lab.node, "nft", "flush", "ruleset")  # iptables-nft tables too: a clean node each time


def load_iptables(lab: Lab, st: ProxyState, node: NodeConfig) -> None:
    text = ipt_render.render(st.svc_port_map, st.endpoints_map, node).text
    lab.run(lab.node, "iptables-restore", "--noflush", text=text)
    for jump in ipt_render.JUMP_CHAINS:
        lab.run(lab.node, "iptables", "-t", jump.table, "-I", jump.src_chain, *jump.rule_args())


def load_nftables(lab: Lab, st: ProxyState, node: NodeConfig) -> float:
    plan = NftablesSyncer(node).plan(st.svc_port_map, st.endpoints_map)
    t0 = time.perf_counter()
    lab.run(lab.node, "nft", "-f", "-", text=plan.text)
    return time.perf_counter() - t0


def bench_incremental(lab: Lab, n: int, rounds: int) -> dict:
    """As the proxy does it, inside the node's namespace: the change tracker takes a new
    EndpointSlice, the syncer plans against its mirror, the transaction goes to the kernel
    through libnftables (the daemon's runner) and, for comparison, through the nft binary."""
    node = node_config()
    clear(lab)
    st = ProxyState(node.family, node.node_name)
    st.services_synced = st.slices_synced = True
    for i in range(n):
        st.on_service(service_obj(i))
        st.on_endpoint_slice(slice_obj(i, [SERVER_IP]))
    syncer = NftablesSyncer(node)
    plan_times: list[float] = []
    out: dict = {"services": n}
    with entered(lab.node):
        runners = {"libnftables": node_nft("ip"), "nft binary": Nft("ip")}
        if not isinstance(runners["libnftables"], LibNft):
            del runners["libnftables"]

        def sync(runner: Nft, full: bool) -> int:
            t0 = time.perf_counter()
            changes = st.take_changes()
            if full:
                syncer.reset()
            plan = syncer.plan(st.svc_port_map, st.endpoints_map,
                               changed=None if full else changes.updated_services,
                               changed_ports=changes.updated_ports)
            plan_times.append(time.perf_counter() - t0)
            runner.run(plan.text)
            syncer.commit(plan)
            return plan.lines

        first_runner = next(iter(runners.values()))
        t0 = time.perf_counter()
        out["full_sync_lines"] = sync(first_runner, full=True)  # first sync: the whole table
        out["first_sync_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        sync(first_runner, full=True)  # a full resync of an existing table (a failure or restart)
        out["full_sync_s"] = time.perf_counter() - t0
        out["incremental"] = {}
        step = 0
        for name, runner in runners.items():
            incs, inc_lines = [], []
            plan_times.clear()
            for _ in range(rounds):
                i = (step * 7919) % n
                t0 = time.perf_counter()
                st.on_endpoint_slice(slice_obj(i, [SERVER_IP, f"10.200.3.{step % 250 + 1}"]))
                inc_lines.append(sync(runner, full=False))
                incs.append(time.perf_counter() - t0)
                step += 1
            out["incremental"][name] = {
                "p50_ms": statistics.median(incs) * 1000, "max_ms": max(incs) * 1000,
                "lines": statistics.median(inc_lines), "plan_ms": statistics.median(plan_times) * 1000,
                "ratio": statistics.median(incs) / out["full_sync_s"]}
        out["nft_forms_ms"] = _nft_forms()
        out["transaction"] = syncer_last_text(syncer, st)
    return out


def syncer_last_text(syncer: NftablesSyncer, st: ProxyState) -> str:
    """The transaction of one more endpoint change (planned, not applied): what gets sent."""
    st.on_endpoint_slice(slice_obj(1, [SERVER_IP, "10.200.9.9"]))
    changes = st.take_changes()
    return syncer.plan(st.svc_port_map, st.endpoints_map, changed=changes.updated_services,
                       changed_ports=changes.updated_ports).text


def _nft_forms() -> dict[str, float]:
    """`nft -c -f` (evaluated and sent to the kernel, then aborted) of one rule for an existing
    chain in upstream's form and in the block form the incremental syncs use: the first makes
    nft read every chain and set of the table first, the second only the table."""
    forms = {"add rule": "add rule ip kube-proxy masquerading counter\n",
             "add chain { rule }": "add chain ip kube-proxy masquerading { counter ; }\n"}
    result = {}
    for name, text in forms.items():
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            sh("nft", "-c", "-f", "-", text=text)
            times.append(time.perf_counter() - t0)
        result[name] = statistics.median(times) * 1000
    return result


def bench_latency(run_id: str, labs: list[Lab], sizes: list[int], samples: int, rounds: int = 6) -> dict:
    """One node namespace per (mode, size), all loaded first; then the connect batches take
    turns across them, so background load on the machine falls on every configuration alike."""
    node = node_config()
    configs: list[tuple[str, int, Lab]] = []
    for n in sizes:
        st = make_state(n, node)
        for mode in ("iptables", "nftables"):
            lab = Lab(run_id, len(labs))
            labs.append(lab)
            lab.build()
            if mode == "iptables":
                load_iptables(lab, st, node)
            else:
                load_nftables(lab, st, node)
            configs.append((mode, n, lab))
            print(f"  loaded {mode} with {n} services", flush=True)
    lat: dict[tuple[str, int], list[float]] = {(m, n): [] for m, n, _ in configs}
    for _ in range(rounds):
        for mode, n, lab in configs:
            # the most recently added service (sorts last: svc-{n-1:05d})
            lat[(mode, n)] += lab.connect_latency(service_ip(n - 1), samples // rounds)
    results: dict[str, dict[int, dict]] = {"iptables": {}, "nftables": {}}
    for (mode, n), values in sorted(lat.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        q = statistics.quantiles(sorted(values), n=100)
        results[mode][n] = {"p50": q[49], "p90": q[89], "p99": q[98], "mean": statistics.fmean(values)}
        print(f"  {mode:8s} {n:6d} services: connect p50 {q[49]:7.1f} us  p90 {q[89]:7.1f} us  "
              f"p99 {q[98]:7.1f} us", flush=True)
    return results


# --- plotting ---

def plot(results: dict, sizes: list[int], path: str) -> str:
    try:
        return _plot_matplotlib(results, sizes, path)
    except Exception as e:  # no matplotlib and no way to install it: a plain PNG
        print(f"  (matplotlib unavailable: {e}; writing the PNG directly)")
        _plot_png(results, sizes, path)
        return "built-in PNG writer"


def _plot_matplotlib(results: dict, sizes: list[int], path: str) -> str:
    plt = import_pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for mode, color in (("iptables", "#d62728"), ("nftables", "#1f77b4")):
        xs = sizes
        ax.plot(xs, [results[mode][n]["p50"] for n in xs], "o-", color=color, label=f"{mode} p50")
        ax.plot(xs, [results[mode][n]["p90"] for n in xs], "s--", color=color, alpha=0.6, label=f"{mode} p90")
    ax.set_xlabel("services")
    ax.set_ylabel("TCP connect latency (µs), first packet")
    ax.set_title("svcnet kube-proxy: iptables vs nftables (connect to the newest service)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return "matplotlib"


def _plot_png(results: dict, sizes: list[int], path: str, w: int = 640, h: int = 400) -> None:
    """Lines on a white canvas: red = iptables p50, blue = nftables p50 (x: services, y: µs)."""
    px = bytearray(b"\xff" * (w * h * 3))

    def dot(x: int, y: int, c: tuple[int, int, int]) -> None:
        if 0 <= x < w and 0 <= y < h:
            i = (y * w + x) * 3
            px[i:i + 3] = bytes(c)

    def line(x0: int, y0: int, x1: int, y1: int, c: tuple[int, int, int]) -> None:
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for s in range(steps + 1):
            x, y = x0 + (x1 - x0) * s // steps, y0 + (y1 - y0) * s // steps
            for dx in (0, 1):
                for dy in (0, 1):
                    dot(x + dx, y + dy, c)

    left, bottom, right, top = 50, h - 40, w - 20, 20
    ymax = max(results[m][n]["p50"] for m in results for n in sizes) * 1.15
    xmax = max(sizes)
    line(left, bottom, right, bottom, (0, 0, 0))
    line(left, bottom, left, top, (0, 0, 0))

    def pos(n: int, v: float) -> tuple[int, int]:
        return (left + int((right - left) * n / xmax), bottom - int((bottom - top) * v / ymax))

    for mode, color in (("iptables", (214, 39, 40)), ("nftables", (31, 119, 180))):
        pts = [pos(n, results[mode][n]["p50"]) for n in sizes]
        for (x0, y0), (x1, y1) in itertools.pairwise(pts):
            line(x0, y0, x1, y1, color)
        for x, y in pts:
            for dx in range(-3, 4):
                for dy in range(-3, 4):
                    dot(x + dx, y + dy, color)
    raw = b"".join(b"\x00" + bytes(px[y * w * 3:(y + 1) * w * 3]) for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def control_plane(lab: Lab, n: int, rounds: int) -> dict:
    print(f"(a) one endpoint change at {n} services vs a full sync (nftables):", flush=True)
    a = bench_incremental(lab, n, rounds)
    print(f"  first sync {a['first_sync_s'] * 1000:.0f} ms ({a['full_sync_lines']} statements); "
          f"full resync {a['full_sync_s'] * 1000:.0f} ms")
    for name, r in a["incremental"].items():
        print(f"  one endpoint change end to end via {name}: p50 {r['p50_ms']:.1f} ms, max "
              f"{r['max_ms']:.1f} ms, {r['lines']:.0f} statements, planning {r['plan_ms']:.1f} ms; "
              f"ratio to a full sync {r['ratio'] * 100:.2f}% (targets: <= 50 ms, <= 5%)", flush=True)
    print("  `nft -c -f` of one rule at this size: " +
          ", ".join(f"{k} {v:.1f} ms" for k, v in a["nft_forms_ms"].items()))
    print("  the transaction of one endpoint change:\n    " +
          a["transaction"].strip().replace("\n", "\n    "), flush=True)
    return a


def data_plane(run_id: str, labs: list[Lab], sizes: list[int], args: argparse.Namespace) -> dict:
    lab = labs[0]
    print("(b) TCP connect latency to the most recently added service:", flush=True)
    clear(lab)
    b = bench_latency(run_id, labs, sizes, args.samples)
    lo, hi = min(sizes), max(sizes)
    nft_ratio = b["nftables"][hi]["p50"] / b["nftables"][lo]["p50"]
    ipt_ratio = b["iptables"][hi]["p50"] / b["iptables"][lo]["p50"]
    print(f"  nftables p50 at {hi} / at {lo}: {nft_ratio:.2f}x (target <= 1.2x); "
          f"iptables: {ipt_ratio:.2f}x; at {hi} iptables/nftables = "
          f"{b['iptables'][hi]['p50'] / b['nftables'][hi]['p50']:.2f}x")
    how = plot(b, sizes, args.plot)
    print(f"  plot: {os.path.relpath(args.plot, ROOT)} ({how})")
    return b




def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,1000,5000,10000")
    ap.add_argument("--samples", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--plot", default=os.path.join(ROOT, "docs", "nftables-latency.png"))
    ap.add_argument("--json", default="")
    ap.add_argument("--parts", default="a,b", help="which measurements: a (control plane), b (latency)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/nftables.py needs root (network namespaces, nft, iptables)", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",")]
    run_id = secrets.token_hex(3)
    lab = Lab(run_id)
    labs = [lab]
    try:
        lab.build()
        print(f"kernel {os.uname().release}; {sh('nft', '--version').stdout.strip()}; "
              f"{sh('iptables', '-V').stdout.strip()}")
        parts = set(args.parts.split(","))
        a: dict = {}
        b: dict = {}
        if "a" in parts:
            a = control_plane(lab, max(sizes), args.rounds)
        if "b" in parts:
            b = data_plane(run_id, labs, sizes, args)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"incremental": a, "latency": b}, f, indent=1)
    finally:
        for each in labs:
            each.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
