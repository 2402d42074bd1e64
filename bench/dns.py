"""Cluster DNS throughput and latency: svcnet dns against NSD (a C authoritative server) loaded
with the same records, measured with dnsperf in the same run; plus svcnet's memory at N services.

    .venv/bin/python bench/dns.py [--services 10000] [--duration 10] [--workers 1]

Installs the Debian packages dnsperf and nsd when missing (needs root; `make test` does not
need them). Prints queries per second, p50/p99 latency, the svcnet/NSD ratio and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This file is bench/dns.py: drop its folder from the import path, or it would shadow dnspython.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

NAMESPACES = 10
ZONE = "cluster.local"


def ensure_tools() -> None:
    missing = [
        pkg
        for tool, pkg in (("dnsperf", "dnsperf"), ("nsd", "nsd"))
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()
    ]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"bench/dns.py needs the Debian packages {' '.join(missing)} (run as root to install them)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True, env=env
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_ip(i: int) -> str:
    return f"10.96.{i // 250}.{i % 250 + 1}"


def endpoint_ip(i: int, j: int) -> str:
    return f"10.244.{i // 250 % 256}.{(i % 250) + 1}".rsplit(".", 1)[0] + f".{(i * 3 + j) % 250 + 1}"


def build_objects(n: int) -> tuple[list[dict], dict[str, list[tuple[str, str]]]]:
    """N services over NAMESPACES namespaces: most ClusterIP with a 3-endpoint slice, every
    tenth headless. Also returns the zone's records {name: [(type, rdata)]} for NSD."""
    items: list[dict] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns{k}"}} for k in range(NAMESPACES)
    ]
    records: dict[str, list[tuple[str, str]]] = {}
    for i in range(n):
        ns, name = f"ns{i % NAMESPACES}", f"svc{i}"
        fqdn = f"{name}.{ns}.svc.{ZONE}."
        headless = i % 10 == 0
        ip = "None" if headless else service_ip(i)
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "clusterIP": ip,
                    "clusterIPs": [ip],
                    "selector": {"app": name},
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                },
            }
        )
        eps = [endpoint_ip(i, j) for j in range(3)]
        items.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-x",
                    "namespace": ns,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [{"addresses": [e], "conditions": {"ready": True}} for e in eps],
            }
        )
        if headless:
            records[fqdn] = [("A", e) for e in eps]
            for e in eps:
                host = e.replace(".", "-")
                records[f"{host}.{fqdn}"] = [("A", e)]
            records[f"_http._tcp.{fqdn}"] = [("SRV", f"0 33 8080 {e.replace('.', '-')}.{fqdn}") for e in eps]
        else:
            records[fqdn] = [("A", ip)]
            records[f"_http._tcp.{fqdn}"] = [("SRV", f"0 100 80 {fqdn}")]
    records[f"dns-version.{ZONE}."] = [("TXT", '"1.1.0"')]
    return items, records


def build_queries(n: int, count: int = 5000, seed: int = 1) -> list[str]:
    """A mix of cluster names: 70% A of services, 10% AAAA (NODATA), 10% SRV, 10% NXDOMAIN."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        i = rng.randrange(n)
        fqdn = f"svc{i}.ns{i % NAMESPACES}.svc.{ZONE}"
        r = rng.random()
        if r < 0.7:
            out.append(f"{fqdn} A")
        elif r < 0.8:
            out.append(f"{fqdn} AAAA")
        elif r < 0.9:
            out.append(f"_http._tcp.{fqdn} SRV")
        else:
            out.append(f"missing{i}.ns{i % NAMESPACES}.svc.{ZONE} A")
    return out


def write_zone(path: Path, records: dict[str, list[tuple[str, str]]]) -> None:
    lines = [
        f"$ORIGIN {ZONE}.",
        "$TTL 5",
        f"@ 5 IN SOA ns.dns.{ZONE}. hostmaster.{ZONE}. 1 7200 1800 86400 5",
        f"@ 5 IN NS ns.dns.{ZONE}.",
        "ns.dns 5 IN A 127.0.0.1",
    ]
    for name, rrs in records.items():
        for rtype, rdata in rrs:
            lines.append(f"{name} 5 IN {rtype} {rdata}")
    path.write_text("\n".join(lines) + "\n")


def start_nsd(tmp: Path, port: int, zonefile: Path, servers: int) -> subprocess.Popen[bytes]:
    conf = tmp / "nsd.conf"
    conf.write_text(f"""server:
  ip-address: 127.0.0.1@{port}
  port: {port}
  server-count: {servers}
  username: ""
  chroot: ""
  zonesdir: "{tmp}"
  database: ""
  zonelistfile: "{tmp}/zone.list"
  xfrdfile: "{tmp}/xfrd.state"
  xfrdir: "{tmp}"
  pidfile: "{tmp}/nsd.pid"
  logfile: "{tmp}/nsd.log"
  verbosity: 0
  hide-version: yes
  # Response rate limiting would treat dnsperf (one source address) as an attack.
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: {ZONE}
  zonefile: "{zonefile}"
""")
    return subprocess.Popen(
        ["nsd", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def wait_answering(port: int, name: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    import dns.message
    import dns.query

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server on port {port} exited with {proc.returncode}")
        try:
            r = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=0.5)
            if r.answer:
                return
        except Exception:
            pass
        time.sleep(0.2)
    sys.exit(f"server on port {port} did not answer {name} within {timeout}s")


def dnsperf(port: int, queries: Path, duration: float, clients: int, verbose: bool) -> dict[str, float]:
    cmd = [
        "dnsperf",
        "-s",
        "127.0.0.1",
        "-p",
        str(port),
        "-d",
        str(queries),
        "-l",
        str(duration),
        "-c",
        str(clients),
        "-q",
        "200",
        "-t",
        "2",
    ]
    if verbose:
        cmd.append("-v")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = {}
    latencies: list[float] = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Queries per second:"):
            result["qps"] = float(line.split()[-1])
        elif line.startswith("Queries lost:"):
            result["lost"] = float(line.split()[2])
        elif line.startswith("Queries completed:"):
            result["completed"] = float(line.split()[2])
        elif line.startswith(">"):  # "> RCODE name type latency"; timeouts carry no latency
            try:
                latencies.append(float(line.split()[-1]))
            except ValueError:
                pass
    if latencies:
        latencies.sort()
        result["p50_ms"] = latencies[len(latencies) // 2] * 1000
        result["p99_ms"] = latencies[int(len(latencies) * 0.99)] * 1000
    return result


def rss_mb(pid: int) -> float:
    """RSS of a process and its children (the --workers forks), in MB."""
    pids = [pid]
    try:
        children = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True
        ).stdout
        pids += [int(p) for p in children.split()]
    except (OSError, ValueError):
        pass
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):  # peak resident set
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(args: argparse.Namespace) -> dict[str, object]:
    ensure_tools()
    with tempfile.TemporaryDirectory(prefix="svcnet-bench-dns-") as d:
        tmp = Path(d)
        items, records = build_objects(args.services)
        objects = tmp / "objects.json"
        objects.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        zonefile = tmp / "cluster.local.zone"
        write_zone(zonefile, records)
        queries = tmp / "queries.txt"
        queries.write_text("\n".join(build_queries(args.services)) + "\n")
        probe = f"svc1.ns1.svc.{ZONE}."
        results: dict[str, object] = {
            "services": args.services,
            "duration_s": args.duration,
            "clients": args.clients,
        }

        svc_port, nsd_port = free_port(), free_port()
        t0 = time.monotonic()
        svc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "svcnet",
                "dns",
                "-f",
                str(objects),
                "--listen",
                f"127.0.0.1:{svc_port}",
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
        )
        nsd = None
        try:
            wait_answering(svc_port, probe, svc)
            results["svcnet_startup_s"] = round(time.monotonic() - t0, 2)
            nsd = start_nsd(tmp, nsd_port, zonefile, args.nsd_servers)
            wait_answering(nsd_port, probe, nsd)
            for port in (svc_port, nsd_port):
                dnsperf(port, queries, 1, args.clients, False)  # warm up (svcnet's answer cache)
            # Rounds alternate between the servers so that load from other jobs on the machine
            # falls on both alike; the median round is reported.
            rounds: dict[str, list[dict[str, float]]] = {"svcnet": [], "nsd": []}
            for _ in range(args.rounds):
                rounds["svcnet"].append(dnsperf(svc_port, queries, args.duration, args.clients, False))
                rounds["nsd"].append(dnsperf(nsd_port, queries, args.duration, args.clients, False))
            for name, runs in rounds.items():
                runs.sort(key=lambda r: r["qps"])
                results[name] = runs[len(runs) // 2]
                results[f"{name}_qps_rounds"] = [round(r["qps"]) for r in runs]
            latency_s = min(args.duration, 5)
            results["svcnet_latency"] = dnsperf(svc_port, queries, latency_s, args.clients, True)
            results["nsd_latency"] = dnsperf(nsd_port, queries, latency_s, args.clients, True)
            results["svcnet_rss_mb"] = round(rss_mb(svc.pid), 1)
            results["nsd_rss_mb"] = round(rss_mb(nsd.pid), 1)
            results["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
        finally:
            stop(svc)
            if nsd is not None:
                stop(nsd)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--services", type=int, default=10000)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--workers", type=int, default=1, help="svcnet dns processes (SO_REUSEPORT)")
    p.add_argument("--nsd-servers", type=int, default=1, help="NSD server-count")
    p.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds per server")
    p.add_argument("--json", action="store_true", help="print the raw results as JSON too")
    args = p.parse_args()
    r = run(args)
    s, n = r["svcnet"], r["nsd"]
    sl, nl = r["svcnet_latency"], r["nsd_latency"]
    assert isinstance(s, dict) and isinstance(n, dict) and isinstance(sl, dict) and isinstance(nl, dict)
    print(
        f"cluster DNS, {args.services} services, dnsperf {args.duration:g}s x {args.clients} clients, "
        f"svcnet workers={args.workers}, nsd server-count={args.nsd_servers}"
    )
    print(f"{'server':<8} {'qps':>10} {'lost':>6} {'p50 ms':>8} {'p99 ms':>8} {'RSS MB':>8}")
    print(
        f"{'svcnet':<8} {s['qps']:>10.0f} {s.get('lost', 0):>6.0f} {sl.get('p50_ms', 0):>8.2f} "
        f"{sl.get('p99_ms', 0):>8.2f} {r['svcnet_rss_mb']:>8}"
    )
    print(
        f"{'nsd':<8} {n['qps']:>10.0f} {n.get('lost', 0):>6.0f} {nl.get('p50_ms', 0):>8.2f} "
        f"{nl.get('p99_ms', 0):>8.2f} {r['nsd_rss_mb']:>8}"
    )
    print(
        f"svcnet/nsd qps ratio: {s['qps'] / n['qps']:.2f}   (target: svcnet >= 30000 qps; "
        f"RSS <= 200 MB at 10,000 services)"
    )
    print(
        f"svcnet start to first answer: {r['svcnet_startup_s']} s; qps per round (sorted): "
        f"svcnet {r['svcnet_qps_rounds']}, nsd {r['nsd_qps_rounds']}; load average {r['loadavg']}"
    )
    if args.json:
        print(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
