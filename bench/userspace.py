"""Benchmark of the user-space proxy against direct connections and haproxy, in one run.

Four backends (one uvloop process listening on 127.0.0.51-54) serve two requests: "S n"
(send n bytes, then close) and "E" (echo lines). The same client measures, for each path:
direct to a backend, `svcnet proxy userspace` (rr, default copies; and with --splice), and
haproxy in TCP mode (roundrobin over the same four backends, one thread like our one event
loop), and a bare splice relay (a blocking thread per direction and nothing else: what the
extra hop alone costs on the machine):

- bulk throughput: 1 MB transfers (x100) and 100 MB transfers (x3), MB/s;
- new connections per second: 16 concurrent clients, connect + "S 64" + read to EOF, for 2 s;
- small-request latency: one kept-alive connection, 64-byte echo round trips (x5000), p50/p99.

Three rounds interleave the paths; each figure is the median over the rounds.

Prints a table and the ratios the targets use (throughput >= 0.7x direct, conn/s >= 0.5x
haproxy). Needs no root: the ClusterIP is in 127.96.0.0/16 and bound directly. haproxy is the
Debian package; it is installed with apt-get when missing (that part needs root).

    .venv/bin/python bench/userspace.py [--quick] [--markdown]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from plotlib import import_pyplot  # bench/ is on sys.path when a bench runs as a script

ROOT = Path(__file__).resolve().parent.parent
RELAY_NAME = "bare splice relay (reference)"
BACKEND_IPS = ["127.0.0.51", "127.0.0.52", "127.0.0.53", "127.0.0.54"]
CLUSTER_IPS = {True: "127.96.250.1", False: "127.96.250.2"}  # splice on / off
HAPROXY_IP = "127.0.0.60"
RELAY_IP = "127.0.0.61"

BACKEND = r'''
import asyncio, sys
import uvloop
ZERO = memoryview(bytes(1 << 20))
async def handle(reader, writer):
    try:
        line = await reader.readline()
        if line.startswith(b"S "):
            n = int(line[2:])
            while n > 0:
                chunk = ZERO[:min(n, len(ZERO))]
                writer.write(chunk)
                n -= len(chunk)
                await writer.drain()
        elif line.startswith(b"E"):
            while line := await reader.readline():
                writer.write(line)
    except ConnectionError:
        pass
    finally:
        writer.close()
async def main(port, ips):
    for ip in ips:
        await asyncio.start_server(handle, ip, port, backlog=4096, reuse_address=True)
    print("ready", flush=True)
    await asyncio.Event().wait()
uvloop.run(main(int(sys.argv[1]), sys.argv[2:]))
'''

# A reference for the hop itself: about the least a user-space TCP proxy can do per byte (a
# blocking thread per direction, os.splice through a pipe, no scheduling, no accounting), to
# tell what the extra hop costs on this machine from what svcnet's own work costs.
RELAY = r'''
import fcntl, os, socket, sys, threading
ip, port, backend, bport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def pump(src, dst):
    r, w = os.pipe()
    fcntl.fcntl(w, 1031, 1 << 20)  # F_SETPIPE_SZ
    try:
        while n := os.splice(src.fileno(), w, 1 << 20):
            while n:
                n -= os.splice(r, dst.fileno(), n)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        os.close(r); os.close(w)
def handle(c):
    with c, socket.create_connection((backend, bport)) as u:
        t = threading.Thread(target=pump, args=(u, c)); t.start()
        pump(c, u); t.join()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((ip, port)); s.listen(4096); print("ready", flush=True)
while True:
    threading.Thread(target=handle, args=(s.accept()[0],), daemon=True).start()
'''


def free_port(ips: list[str]) -> int:
    for _ in range(100):
        s = socket.socket()
        s.bind((ips[0], 0))
        port = s.getsockname()[1]
        s.close()
        try:
            for ip in ips:
                t = socket.socket()
                t.bind((ip, port))
                t.close()
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def wait_port(ip: str, port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((ip, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {ip}:{port}")


# --- measurements (the client) ---

def bulk(ip: str, port: int, size: int, count: int) -> float:
    """MB/s over `count` transfers of `size` bytes, each on a new connection."""
    buf = bytearray(1 << 20)
    total = 0
    start = time.perf_counter()
    for _ in range(count):
        with socket.create_connection((ip, port)) as s:
            s.sendall(b"S %d\n" % size)
            got = 0
            while n := s.recv_into(buf):
                got += n
            if got != size:
                raise RuntimeError(f"short transfer: {got} of {size}")
            total += got
    return total / (time.perf_counter() - start) / 1e6


async def _conn_rate(ip: str, port: int, seconds: float, concurrency: int) -> tuple[float, int]:
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            reader, writer = await asyncio.open_connection(ip, port)
            writer.write(b"S 64\n")
            data = await reader.read()
            writer.close()
            if len(data) != 64:
                raise RuntimeError(f"short reply: {len(data)}")
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start), done


def conn_rate(ip: str, port: int, seconds: float, concurrency: int = 16) -> tuple[float, int]:
    import uvloop

    return uvloop.run(_conn_rate(ip, port, seconds, concurrency))


def latency(ip: str, port: int, count: int) -> tuple[float, float]:
    """p50 and p99 of 64-byte echo round trips on one connection, in microseconds."""
    msg = b"x" * 63 + b"\n"
    samples = []
    with socket.create_connection((ip, port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"E\n")
        for _ in range(count + 100):
            t0 = time.perf_counter()
            s.sendall(msg)
            got = 0
            while got < len(msg):
                got += len(s.recv(4096))
            samples.append(time.perf_counter() - t0)
    samples = sorted(samples[100:])  # the first ones warm up caches and the scheduler
    return samples[len(samples) // 2] * 1e6, samples[int(len(samples) * 0.99)] * 1e6


# --- the paths under test ---

def start_svcnet(tmp: Path, cluster_ip: str, port: int, bport: int, splice: bool) -> subprocess.Popen:
    objs = tmp / f"objs-{splice}.json"
    objs.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bench", "namespace": "default"},
         "spec": {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ipFamilies": ["IPv4"],
                  "ports": [{"name": "tcp", "port": port, "targetPort": bport, "protocol": "TCP"}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
         "metadata": {"name": "bench-1", "namespace": "default",
                      "labels": {"kubernetes.io/service-name": "bench"}},
         "ports": [{"name": "tcp", "port": bport, "protocol": "TCP"}],
         "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in BACKEND_IPS]}]}))
    cmd = [sys.executable, "-m", "svcnet", "proxy", "userspace", "-f", str(objs), "--node-name", "bench",
           "--scheduler", "rr", "--healthz-bind-address", "127.0.0.1:0", "--metrics-bind-address", "",
           "--max-connections", "100000", "--splice" if splice else "--no-splice"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    wait_port(cluster_ip, port)
    return proc


def ensure_haproxy() -> str | None:
    path = shutil.which("haproxy") or (os.path.exists("/usr/sbin/haproxy") and "/usr/sbin/haproxy") or None
    if path:
        return path
    print("haproxy is missing: installing the Debian package", file=sys.stderr)
    try:
        subprocess.run(["apt-get", "install", "-y", "-q", "haproxy"], check=True, capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, timeout=600)
    except (subprocess.SubprocessError, OSError) as e:
        print(f"cannot install haproxy ({e}): skipping the haproxy reference", file=sys.stderr)
        return None
    return shutil.which("haproxy") or "/usr/sbin/haproxy"


def start_haproxy(binary: str, tmp: Path, port: int, bport: int) -> subprocess.Popen:
    servers = "\n".join(f"    server b{i} {ip}:{bport}" for i, ip in enumerate(BACKEND_IPS))
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(f"""global
    maxconn 8000
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind {HAPROXY_IP}:{port}
    default_backend be
backend be
    balance roundrobin
{servers}
""")
    proc = subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(HAPROXY_IP, port)
    return proc


def start_relay(tmp: Path, port: int, bport: int) -> subprocess.Popen:
    script = tmp / "relay.py"
    script.write_text(RELAY)
    proc = subprocess.Popen([sys.executable, str(script), RELAY_IP, str(port), BACKEND_IPS[0], str(bport)],
                            stdout=subprocess.PIPE, text=True)
    if proc.stdout is None or proc.stdout.readline().strip() != "ready":
        raise RuntimeError("relay did not start")
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid: int | None) -> float:
    """user + system CPU time of a process (from /proc; 0 for the direct path)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(name: str, ip: str, port: int, pid: int | None, backend_pid: int,
            args: argparse.Namespace) -> dict:
    """The figures of one path; for a proxy also its CPU time per GB and per 1,000 connections,
    which depends much less on what else the machine is doing than the rates do. `all_gb` is
    the CPU per GB of client + backend + proxy together: on C cores, C / all_gb bounds what
    the path can move per second however the work is scheduled."""
    row = {"path": name}
    gb = args.big_count * 100 * 1.048576 / 1000
    c0, b0, s0 = cpu_seconds(pid), cpu_seconds(backend_pid), time.process_time()
    row["mb100"] = bulk(ip, port, 100 << 20, args.big_count)
    c1 = cpu_seconds(pid)
    row["cpu_gb"] = (c1 - c0) / gb
    row["all_gb"] = (c1 - c0 + cpu_seconds(backend_pid) - b0 + time.process_time() - s0) / gb
    row["mb1"] = bulk(ip, port, 1 << 20, args.small_count)
    c2 = cpu_seconds(pid)
    row["conns"], count = conn_rate(ip, port, args.seconds)
    row["cpu_kconn"] = (cpu_seconds(pid) - c2) / count * 1000
    row["p50"], row["p99"] = latency(ip, port, args.rtts)
    print(f"  {name:<28} 1MB {row['mb1']:6.0f} MB/s  100MB {row['mb100']:6.0f} MB/s  "
          f"{row['conns']:6.0f} conn/s  p50 {row['p50']:5.0f} us  p99 {row['p99']:5.0f} us  "
          f"cpu {row['cpu_gb']:.2f} s/GB {row['cpu_kconn']:.3f} s/1k conns", file=sys.stderr)
    return row


def median_rows(samples: dict[str, list[dict]]) -> list[dict]:
    """Per path, the median of each figure over the rounds (the machine is shared and noisy;
    rounds interleave the paths so that a busy moment hits all of them alike)."""
    out = []
    for name, rows in samples.items():
        med = {"path": name}
        for key in ("mb1", "mb100", "conns", "p50", "p99", "cpu_gb", "cpu_kconn", "all_gb"):
            med[key] = statistics.median(r[key] for r in rows)
        out.append(med)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run; no plot)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args()
    args.small_count, args.big_count, args.seconds, args.rtts, args.rounds = (100, 3, 2.0, 5000, 3)
    if args.quick:
        args.small_count, args.big_count, args.seconds, args.rtts, args.rounds = (10, 1, 1.0, 1000, 1)

    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="svcnet-bench-us-") as tmpdir:
        tmp = Path(tmpdir)
        bport = free_port(BACKEND_IPS)
        script = tmp / "backend.py"
        script.write_text(BACKEND)
        try:
            backend = subprocess.Popen([sys.executable, str(script), str(bport), *BACKEND_IPS],
                                       stdout=subprocess.PIPE, text=True)
            procs.append(backend)
            if backend.stdout.readline().strip() != "ready":
                raise RuntimeError("backend did not start")
            paths = [("direct", BACKEND_IPS[0], bport, None)]
            for splice in (True, False):
                ip = CLUSTER_IPS[splice]
                port = free_port([ip])
                procs.append(start_svcnet(tmp, ip, port, bport, splice))
                name = "svcnet userspace" + (" (splice)" if splice else "")
                paths.append((name, ip, port, procs[-1].pid))
            binary = ensure_haproxy()
            if binary:
                port = free_port([HAPROXY_IP])
                procs.append(start_haproxy(binary, tmp, port, bport))
                paths.append(("haproxy (1 thread)", HAPROXY_IP, port, procs[-1].pid))
            port = free_port([RELAY_IP])
            procs.append(start_relay(tmp, port, bport))
            paths.append((RELAY_NAME, RELAY_IP, port, procs[-1].pid))
            samples: dict[str, list[dict]] = {name: [] for name, *_ in paths}
            for r in range(args.rounds):
                print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
                for name, ip, port, pid in paths:
                    samples[name].append(measure(name, ip, port, pid, backend.pid, args))
        finally:
            for p in procs:
                if p.poll() is None:
                    stop(p)
    rows = median_rows(samples)

    by = {r["path"]: r for r in rows}
    ours, direct, hap = by["svcnet userspace"], by["direct"], by.get("haproxy (1 thread)")
    sep = "|" if args.markdown else " "
    header = ["path", "1 MB MB/s", "100 MB MB/s", "new conn/s", "p50 us", "p99 us", "CPU s/GB",
              "CPU ms/conn"]
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
    else:
        print(" ".join(f"{h:>14}" for h in header))
    for r in rows:
        cells = [r["path"], f"{r['mb1']:.0f}", f"{r['mb100']:.0f}", f"{r['conns']:.0f}",
                 f"{r['p50']:.0f}", f"{r['p99']:.0f}",
                 f"{r['cpu_gb']:.2f}" if r["path"] != "direct" else "-",
                 f"{r['cpu_kconn']:.3f}" if r["path"] != "direct" else "-"]  # s per 1k = ms per one
        print(f"{sep} " + f" {sep} ".join(cells) + f" {sep}" if args.markdown
              else " ".join(f"{c:>14}" for c in cells))
    print()
    t1, t100 = ours["mb1"] / direct["mb1"], ours["mb100"] / direct["mb100"]
    print(f"throughput vs direct: 1 MB {t1:.2f}x, 100 MB {t100:.2f}x (target >= 0.7x)")
    relay = by[RELAY_NAME]
    print(f"a bare splice relay (a blocking thread per direction) vs direct: 1 MB "
          f"{relay['mb1'] / direct['mb1']:.2f}x, 100 MB {relay['mb100'] / direct['mb100']:.2f}x; "
          f"svcnet vs the relay: 1 MB {ours['mb1'] / relay['mb1']:.2f}x, "
          f"100 MB {ours['mb100'] / relay['mb100']:.2f}x")
    cores = os.cpu_count() or 1
    busy_direct = direct["mb100"] / 1000 * direct["all_gb"]
    busy_needed = 0.7 * direct["mb100"] / 1000 * ours["all_gb"]
    print(f"CPU per GB, client + backend (+ proxy), 100 MB: direct {direct['all_gb']:.2f} s, "
          f"svcnet {ours['all_gb']:.2f} s: direct keeps {busy_direct:.1f} of {cores} cores busy; "
          f"0.7x direct through svcnet would keep {busy_needed:.1f} busy")
    if hap:
        print(f"conn/s vs haproxy: {ours['conns'] / hap['conns']:.2f}x (target >= 0.5x); "
              f"p99 vs haproxy: {ours['p99'] / hap['p99']:.2f}x")
        print(f"throughput vs haproxy: 1 MB {ours['mb1'] / hap['mb1']:.2f}x, "
              f"100 MB {ours['mb100'] / hap['mb100']:.2f}x")
    spliced = by["svcnet userspace (splice)"]
    print(f"--splice against the default copies (100 MB): "
          f"{spliced['mb100'] / ours['mb100']:.2f}x throughput, "
          f"{spliced['cpu_gb'] / max(ours['cpu_gb'], 1e-9):.2f}x the proxy's CPU per GB")
    if hap:
        print(f"CPU per connection vs haproxy: {ours['cpu_kconn'] / max(hap['cpu_kconn'], 1e-9):.2f}x; "
              f"CPU per GB vs haproxy: {ours['cpu_gb'] / max(hap['cpu_gb'], 1e-9):.2f}x")
    print(f"median conn/s over paths: {statistics.median(r['conns'] for r in rows):.0f}")
    if args.quick:  # a smoke run's figures must not replace the published plot
        print("--quick: no plot")
    else:
        _plot(rows)
    return 0


def _plot(rows: list[dict]) -> None:
    try:
        plt = import_pyplot()
    except (ImportError, subprocess.SubprocessError, OSError) as e:
        print(f"matplotlib is unavailable ({e}): no plot (docs/benchmarks.md has the table only)")
        return
    fig, axes = plt.subplots(2, 2, figsize=(11, 6))
    names = [r["path"] for r in rows]
    direct = next(r for r in rows if r["path"] == "direct")
    panels = (("mb1", "1 MB transfers (MB/s)", 0.7), ("mb100", "100 MB transfers (MB/s)", 0.7),
              ("conns", "new connections/s", None), ("p99", "p99 of 64-byte round trips (us)", None))
    for ax, (key, title, target) in zip(axes.flat, panels, strict=True):
        ax.barh(names, [r[key] for r in rows], color=["#1f77b4" if n.startswith("svcnet") else "#999999"
                                                       for n in names])
        if target is not None:  # the target: this fraction of direct
            ax.axvline(target * direct[key], color="#d62728", linestyle="--", label=f"{target}x direct")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_title(title)
        ax.locator_params(axis="x", nbins=5)
    fig.tight_layout()
    out = ROOT / "docs" / "userspace-bench.png"
    fig.savefig(out, dpi=100)
    print(f"plot written to {out}")


if __name__ == "__main__":
    sys.exit(main())
