"""A throwaway network-namespace lab for proxy kernel tests (iptables now, nftables later).

Topology (every name carries a unique `svt<hex>` prefix):

    client ns (external) --veth-- NODE ns --bridge-- pod ns ... (endpoints, pod clients)

The node namespace routes between an "outside" link and a pod bridge, with IP forwarding and
br_netfilter's bridge-nf-call-iptables on (as on a Kubernetes node). Pods run small Python
servers (TCP: reply "<name> <peer-ip>"; UDP: same per datagram); clients are short Python
processes run with `ip netns exec`. Everything is removed in teardown, even on failure:
processes by the PID the lab started, then the namespaces (which takes their links and rules).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SERVER = r'''
import socket, sys, threading
name, tcp_port, udp_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def peer(addr):  # dual-stack sockets show IPv4 peers as ::ffff:a.b.c.d
    return addr[0].removeprefix("::ffff:")
def dual(kind):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return s
def tcp():
    s = dual(socket.SOCK_STREAM); s.bind(("::", tcp_port)); s.listen(128)
    while True:
        c, addr = s.accept()
        try: c.sendall(f"{name} {peer(addr)}\n".encode())
        finally: c.close()
def udp():
    u = dual(socket.SOCK_DGRAM); u.bind(("::", udp_port))
    while True:
        data, addr = u.recvfrom(2048)
        u.sendto(f"{name} {peer(addr)}".encode(), addr)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
tcp()
'''

CLIENT = r'''
import json, socket, sys, time
mode = sys.argv[1]
if mode == "tcp":
    host, port, count, timeout = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    out = []
    for _ in range(count):
        t0 = time.monotonic()
        try:
            c = socket.create_connection((host, port), timeout=timeout)
            c.settimeout(timeout)
            out.append(c.recv(200).decode().strip()); c.close()
        except ConnectionRefusedError:
            out.append("ERR:refused %.3f" % (time.monotonic() - t0))
        except (TimeoutError, socket.timeout):
            out.append("ERR:timeout")
        except OSError as e:
            out.append("ERR:%s" % e)
    print(json.dumps(out))
else:  # udp HOST PORT SRCPORT COUNT INTERVAL
    host, port, sport = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    count, interval = int(sys.argv[5]), float(sys.argv[6])
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", sport)); u.settimeout(interval)
    for i in range(count):
        u.sendto(b"ping", (host, port))
        try: print(u.recv(200).decode(), flush=True)
        except (TimeoutError, socket.timeout): print("ERR:timeout", flush=True)
        time.sleep(interval)
'''


def _sh(*args: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=timeout)


def require_root_netns() -> None:
    if os.geteuid() != 0:
        pytest.skip("kernel tests need root (network namespaces, iptables)")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 'ip' not installed")


@dataclass
class Pod:
    name: str
    netns: str
    ip: str
    ip6: str | None = None


@dataclass
class NetnsLab:
    """Network namespaces for one test module; see the module docstring for the topology."""

    workdir: Path
    prefix: str = field(default_factory=lambda: "svt" + secrets.token_hex(3))
    node_ip: str = "192.168.50.1"
    client_ip: str = "192.168.50.2"
    pod_gateway: str = "10.244.0.1"
    pod_cidr: str = "10.244.0.0/16"
    # IPv6 side of the same topology (dual stack)
    node_ip6: str = "fd00:50::1"
    client_ip6: str = "fd00:50::2"
    pod_gateway6: str = "fd00:10:244::1"
    pod_cidr6: str = "fd00:10:244::/64"
    namespaces: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)
    pods: dict[str, Pod] = field(default_factory=dict)
    _links: int = 0

    @property
    def node(self) -> str:
        return f"{self.prefix}node"

    @property
    def client(self) -> str:
        return f"{self.prefix}cli"

    def _ns(self, name: str) -> str:
        _sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        _sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def _link_name(self) -> str:
        self._links += 1
        return f"{self.prefix}v{self._links}"

    def run(self, netns: str, *args: str, check: bool = True,
            timeout: float = 20) -> subprocess.CompletedProcess:
        return _sh("ip", "netns", "exec", netns, *args, check=check, timeout=timeout)

    def sysctl(self, netns: str, key: str, value: str) -> bool:
        path = Path("/proc/sys") / key.replace(".", "/")
        res = self.run(netns, "sh", "-c", f"test -e {path} && echo {value} > {path}", check=False)
        return res.returncode == 0

    def build(self) -> None:
        node = self._ns(self.node)
        self.run(node, "ip", "link", "add", "br0", "type", "bridge")
        self.run(node, "ip", "addr", "add", f"{self.pod_gateway}/24", "dev", "br0")
        self.run(node, "ip", "link", "set", "br0", "up")
        self.sysctl(node, "net.ipv4.ip_forward", "1")
        self.br_netfilter = self.sysctl(node, "net.bridge.bridge-nf-call-iptables", "1")
        client = self._ns(self.client)
        host, peer = self._link_name(), self._link_name()
        _sh("ip", "link", "add", host, "netns", node, "type", "veth", "peer", "name", peer, "netns", client)
        self.run(node, "ip", "addr", "add", f"{self.node_ip}/24", "dev", host)
        self.run(node, "ip", "link", "set", host, "up")
        self.run(client, "ip", "addr", "add", f"{self.client_ip}/24", "dev", peer)
        self.run(client, "ip", "link", "set", peer, "up")
        self.run(client, "ip", "route", "add", "default", "via", self.node_ip)
        # a default route (the "outside"), as real nodes have: service IPs must route somewhere
        # for the filter rules (REJECT for services without endpoints) to be reached.
        self.run(node, "ip", "route", "add", "default", "via", self.client_ip)
        # ...which leaves through the link the outside client sits on: no ICMP redirects, or they
        # would use up the per-host ICMP rate limit that REJECT's port-unreachable needs.
        for conf in ("all", "default", host):
            self.sysctl(node, f"net.ipv4.conf.{conf}.send_redirects", "0")
        # IPv6 (nodad: addresses usable at once, no duplicate-address-detection delay)
        self.sysctl(node, "net.ipv6.conf.all.forwarding", "1")
        self.br_netfilter6 = self.sysctl(node, "net.bridge.bridge-nf-call-ip6tables", "1")
        self.run(node, "ip", "-6", "addr", "add", f"{self.pod_gateway6}/64", "dev", "br0", "nodad")
        self.run(node, "ip", "-6", "addr", "add", f"{self.node_ip6}/64", "dev", host, "nodad")
        self.run(client, "ip", "-6", "addr", "add", f"{self.client_ip6}/64", "dev", peer, "nodad")
        self.run(client, "ip", "-6", "route", "add", "default", "via", self.node_ip6)
        self.run(node, "ip", "-6", "route", "add", "default", "via", self.client_ip6)

    def add_pod(self, name: str, ip: str, ip6: str | None = None) -> Pod:
        netns = self._ns(f"{self.prefix}{name}")
        host, peer = self._link_name(), self._link_name()
        _sh("ip", "link", "add", host, "netns", self.node, "type", "veth",
            "peer", "name", peer, "netns", netns)
        self.run(self.node, "ip", "link", "set", host, "master", "br0")
        # hairpin mode, as the bridge CNI plugin sets it: a pod reaching its own service is DNATed
        # back to itself, and br_netfilter re-bridges that frame out of the port it came in on.
        self.run(self.node, "ip", "link", "set", host, "type", "bridge_slave", "hairpin", "on")
        self.run(self.node, "ip", "link", "set", host, "up")
        self.run(netns, "ip", "addr", "add", f"{ip}/24", "dev", peer)
        self.run(netns, "ip", "link", "set", peer, "up")
        self.run(netns, "ip", "route", "add", "default", "via", self.pod_gateway)
        if ip6:
            self.run(netns, "ip", "-6", "addr", "add", f"{ip6}/64", "dev", peer, "nodad")
            self.run(netns, "ip", "-6", "route", "add", "default", "via", self.pod_gateway6)
        pod = Pod(name, netns, ip, ip6)
        self.pods[name] = pod
        return pod

    def start(self, netns: str, *args: str, log_name: str | None = None) -> subprocess.Popen:
        log_path = self.workdir / f"{log_name or 'proc'}-{len(self.procs)}.log"
        with open(log_path, "w") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", netns, *args], stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        proc.log_path = log_path  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def start_server(self, pod: Pod, tcp_port: int = 8080, udp_port: int = 5353) -> subprocess.Popen:
        script = self.workdir / "server.py"
        script.write_text(SERVER)
        proc = self.start(pod.netns, sys.executable, str(script), pod.name, str(tcp_port), str(udp_port),
                          log_name=f"server-{pod.name}")
        def listening() -> bool:
            return f":{tcp_port} " in self.run(pod.netns, "ss", "-ltn", check=False).stdout

        self.wait_for(listening, what=f"server in {pod.name}")
        return proc

    def tcp(self, netns: str, host: str, port: int, count: int = 1, timeout: float = 2.0) -> list[str]:
        script = self.workdir / "client.py"
        script.write_text(CLIENT)
        res = self.run(netns, sys.executable, str(script), "tcp", host, str(port), str(count), str(timeout),
                       timeout=count * timeout + 15)
        return json.loads(res.stdout)

    def udp_client(self, netns: str, host: str, port: int, sport: int, count: int,
                   interval: float) -> subprocess.Popen:
        script = self.workdir / "client.py"
        script.write_text(CLIENT)
        return self.start(netns, sys.executable, str(script), "udp", host, str(port), str(sport), str(count),
                          str(interval), log_name="udp-client")

    @staticmethod
    def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)  # the session the lab started for this PID
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def teardown(self) -> None:
        for proc in reversed(self.procs):
            try:
                self.stop(proc)
            except Exception:  # keep tearing down
                pass
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.fixture
def root_netns() -> None:
    """Skip (with the reason) unless the test can create network namespaces."""
    require_root_netns()


@pytest.fixture
def unbuilt_netns_lab(root_netns: None, tmp_path: Path) -> NetnsLab:
    """A lab the test builds and tears down itself (to test the lab's own cleanup)."""
    return NetnsLab(workdir=tmp_path)


@pytest.fixture(scope="module")
def netns_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsLab]:
    require_root_netns()
    lab = NetnsLab(workdir=tmp_path_factory.mktemp("netns-lab"))
    try:
        lab.build()
        yield lab
    finally:
        lab.teardown()
