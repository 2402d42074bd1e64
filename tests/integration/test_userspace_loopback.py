"""The user-space proxy over real sockets, without root: backends on 127.0.0.x, ClusterIPs in
127.96.0.0/16 bound directly (no rules), an in-process proxier fed Service and EndpointSlice
objects the way the daemon feeds it; and the `svcnet proxy userspace` command itself."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import itertools
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from svcnet.proxy.config import NodeConfig
from svcnet.proxy.userspace import tcp
from svcnet.proxy.userspace.options import UserspaceOptions
from svcnet.proxy.userspace.proxier import UserspaceProxier
from svcnet.proxy.userspace.tcp import HAVE_SPLICE, MIN_READ

_ids = itertools.count(random.Random(os.getpid()).randrange(1, 200) * 250)


def unique_cluster_ip() -> str:
    n = next(_ids)
    return f"127.96.{(n // 250) % 250 + 1}.{n % 250 + 1}"


def free_port(ips: list[str]) -> int:
    """A TCP and UDP port free on every one of `ips`."""
    for _ in range(100):
        probe = socket.socket()
        probe.bind((ips[0], 0))
        port = probe.getsockname()[1]
        probe.close()
        ok = True
        for ip in ips:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                s = socket.socket(socket.AF_INET, kind)
                try:
                    s.bind((ip, port))
                except OSError:
                    ok = False
                finally:
                    s.close()
        if ok:
            return port
    raise RuntimeError("no free port")


@dataclass
class EchoBackend:
    """Greets with its name, then echoes; `hold_after_eof` keeps the socket open after EOF."""

    name: str
    ip: str
    port: int
    hold_after_eof: bool = False
    server: asyncio.base_events.Server | None = None
    udp: asyncio.DatagramTransport | None = None
    accepted: int = 0
    writers: list = field(default_factory=list)

    async def start(self) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted += 1
            self.writers.append(writer)
            try:
                writer.write(f"{self.name}\n".encode())
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
                if self.hold_after_eof:
                    await asyncio.sleep(3600)
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        name = self.name.encode()

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, addr):
                self.transport.sendto(name + b" " + data, addr)

        self.server = await asyncio.start_server(handle, self.ip, self.port, reuse_address=True)
        loop = asyncio.get_running_loop()
        self.udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=(self.ip, self.port))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for w in self.writers:
                w.close()
        if self.udp is not None:
            self.udp.close()


def service(name: str, cluster_ip: str, port: int, target_port: int, protocols=("TCP",),
            annotations: dict | None = None, affinity_timeout: int | None = None,
            node_port: int | None = None, external_ips: list[str] | None = None) -> dict:
    spec: dict = {"type": "NodePort" if node_port else "ClusterIP", "clusterIP": cluster_ip,
                  "clusterIPs": [cluster_ip], "ipFamilies": ["IPv4"],
                  "ports": [{"name": p.lower(), "port": port, "targetPort": target_port, "protocol": p,
                             **({"nodePort": node_port} if node_port else {})} for p in protocols]}
    if affinity_timeout is not None:
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": affinity_timeout}}
    if external_ips:
        spec["externalIPs"] = external_ips
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations or {}},
            "spec": spec}


def endpoint_slice(svc: str, port: int, endpoints: list[tuple[str, str]], protocols=("TCP",),
                   nodes: dict[str, str] | None = None) -> dict:
    """endpoints: (ip, state) with state ready | terminating (serving) | gone-serving (not serving);
    nodes: ip -> nodeName (default n1, the proxy's node)."""
    eps = []
    for ip, state in endpoints:
        cond = {"ready": state == "ready", "serving": state in ("ready", "terminating"),
                "terminating": state != "ready"}
        eps.append({"addresses": [ip], "conditions": cond, "nodeName": (nodes or {}).get(ip, "n1"),
                    "targetRef": {"kind": "Pod", "namespace": "default", "name": f"pod-{ip}"}})
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{svc}-abc", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": svc}},
            "ports": [{"name": p.lower(), "port": port, "protocol": p} for p in protocols],
            "endpoints": eps}


class Proxy:
    """An in-process proxier with the daemon's event plumbing reduced to direct calls."""

    def __init__(self, node: NodeConfig | None = None, clock=None, **opts) -> None:
        self.slices: dict[str, dict] = {}
        kwargs = {"clock": clock} if clock is not None else {}
        self.proxier = UserspaceProxier(node or NodeConfig(node_name="n1"), UserspaceOptions(**opts),
                                        raw_slices=lambda ns, name: [s for s in self.slices.values()
                                                                     if s["metadata"]["labels"]
                                                                     ["kubernetes.io/service-name"] == name],
                                        **kwargs)
        self.proxier.state.services_synced = self.proxier.state.slices_synced = True

    async def apply(self, *objs: dict, deleted: bool = False) -> None:
        for obj in objs:
            if obj["kind"] == "Service":
                self.proxier.state.on_service(obj, deleted=deleted)
            else:
                self.slices[obj["metadata"]["name"]] = obj
                if deleted:
                    self.slices.pop(obj["metadata"]["name"])
                self.proxier.state.on_endpoint_slice(obj, deleted=deleted)
        await self.proxier.sync()

    def runtime(self, name: str, protocol: str = "TCP"):
        for spn, rt in self.proxier.ports.items():
            if spn.name == name and spn.protocol == protocol:
                return rt
        raise KeyError(name)

    async def stop(self) -> None:
        await self.proxier.stop()


async def greet(ip: str, port: int, source: str | None = None) -> tuple[str, asyncio.StreamReader,
                                                                        asyncio.StreamWriter]:
    """Connect, read the backend's greeting line; returns (backend name, reader, writer)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        ip, port, local_addr=(source, 0) if source else None), 5)
    line = await asyncio.wait_for(reader.readline(), 5)
    return line.decode().strip(), reader, writer


async def ask(ip: str, port: int, source: str | None = None) -> str:
    name, _, writer = await greet(ip, port, source)
    writer.close()
    return name


BACKEND_IPS = ["127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24"]


@pytest.fixture
async def backends():
    port = free_port(BACKEND_IPS)
    bes = [EchoBackend(f"be{i + 1}", ip, port) for i, ip in enumerate(BACKEND_IPS)]
    for b in bes:
        await b.start()
    try:
        yield bes
    finally:
        for b in bes:
            await b.stop()


@pytest.fixture
async def proxies():
    made: list[Proxy] = []

    def make(**kw) -> Proxy:
        p = Proxy(**kw)
        made.append(p)
        return p

    try:
        yield make
    finally:
        for p in made:
            await p.stop()


async def setup_service(make, backends, name="web", scheduler="rr", states=None, **svc_kw):
    proxy = make()
    cip, port = unique_cluster_ip(), free_port(["127.0.0.1"])
    states = states or ["ready"] * len(backends)
    await proxy.apply(service(name, cip, port, backends[0].port,
                              annotations={"svcnet.io/scheduler": scheduler}, **svc_kw),
                      endpoint_slice(name, backends[0].port, [(b.ip, st) for b, st in zip(backends, states,
                                                                                          strict=True)]))
    return proxy, cip, port


async def test_rr_over_real_sockets_is_exactly_even(backends, proxies):
    _, cip, port = await setup_service(proxies, backends, scheduler="rr")
    got = Counter([await ask(cip, port) for _ in range(200)])
    assert got == {"be1": 50, "be2": 50, "be3": 50, "be4": 50}


async def test_lc_sends_new_connections_where_connections_were_released(backends, proxies):
    _, cip, port = await setup_service(proxies, backends, scheduler="lc")
    held = [await greet(cip, port) for _ in range(8)]
    assert Counter(name for name, _, _ in held) == {"be1": 2, "be2": 2, "be3": 2, "be4": 2}
    for name, _, writer in held:
        if name == "be3":
            writer.close()
            await writer.wait_closed()
    await asyncio.sleep(0.2)  # the proxy sees both ends close
    fresh = [await greet(cip, port) for _ in range(2)]
    assert [n for n, _, _ in fresh] == ["be3", "be3"]
    for _, _, w in [*held, *fresh]:
        w.close()


@pytest.mark.parametrize("scheduler", ["sh", "mh"])
async def test_hashing_schedulers_are_stable_per_client_address(backends, proxies, scheduler):
    _, cip, port = await setup_service(proxies, backends, scheduler=scheduler)
    sources = [f"127.0.1.{i}" for i in range(1, 41)]
    first = {src: await ask(cip, port, src) for src in sources}
    assert len(set(first.values())) >= 3  # sources spread over the backends
    for src in sources[:20]:
        assert {await ask(cip, port, src) for _ in range(3)} == {first[src]}


async def test_client_ip_affinity_is_sticky_within_its_timeout(backends, proxies):
    class Clock:
        now = 100.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    proxy = proxies(clock=clock)
    cip, port = unique_cluster_ip(), free_port(["127.0.0.1"])
    await proxy.apply(service("sticky", cip, port, backends[0].port, affinity_timeout=30,
                              annotations={"svcnet.io/scheduler": "rr"}),
                      endpoint_slice("sticky", backends[0].port, [(b.ip, "ready") for b in backends]))
    first = await ask(cip, port, "127.0.2.1")
    for _ in range(10):
        clock.now += 20  # under the timeout since the last use
        assert await ask(cip, port, "127.0.2.1") == first
        await ask(cip, port, "127.0.2.2")  # another client moves rr along
    clock.now += 31
    names = {await ask(cip, port, "127.0.2.1")}
    clock.now += 31
    names.add(await ask(cip, port, "127.0.2.1"))
    assert names != {first}


async def test_removed_endpoint_drains_50_long_lived_connections_while_new_ones_avoid_it(backends, proxies):
    proxy = proxies(drain_timeout=60)
    cip, port = unique_cluster_ip(), free_port(["127.0.0.1"])
    bport = backends[0].port
    svc = service("drain", cip, port, bport, annotations={"svcnet.io/scheduler": "rr"})
    await proxy.apply(svc, endpoint_slice("drain", bport, [(backends[0].ip, "ready")]))
    old = [await greet(cip, port) for _ in range(50)]
    assert {n for n, _, _ in old} == {"be1"}
    # be1 starts terminating while three ready endpoints appear; then it disappears entirely
    await proxy.apply(endpoint_slice("drain", bport, [(backends[0].ip, "terminating")]
                                     + [(b.ip, "ready") for b in backends[1:]]))
    new = Counter([await ask(cip, port) for _ in range(30)])
    assert new == {"be2": 10, "be3": 10, "be4": 10}
    await proxy.apply(endpoint_slice("drain", bport, [(b.ip, "ready") for b in backends[1:]]))
    rt = proxy.runtime("drain")
    assert f"127.0.0.21:{bport}" in rt.pool.draining
    new = Counter([await ask(cip, port) for _ in range(30)])
    assert "be1" not in new

    payload = os.urandom(64 * 1024)

    async def finish(reader, writer):
        writer.write(payload)
        writer.write_eof()
        echoed = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return echoed == payload

    results = await asyncio.gather(*(finish(r, w) for _, r, w in old))
    assert all(results) and len(results) == 50
    await asyncio.sleep(0.2)
    assert f"127.0.0.21:{bport}" not in rt.pool.draining  # fully drained: forgotten


async def test_drain_timeout_closes_connections_left_open(backends, proxies):
    proxy = proxies(drain_timeout=0.3)
    cip, port = unique_cluster_ip(), free_port(["127.0.0.1"])
    bport = backends[0].port
    await proxy.apply(service("dt", cip, port, bport),
                      endpoint_slice("dt", bport, [(backends[0].ip, "ready")]))
    _, reader, writer = await greet(cip, port)
    await proxy.apply(endpoint_slice("dt", bport, [(backends[1].ip, "ready")]))
    t0 = time.monotonic()
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 5)
    assert time.monotonic() - t0 < 3
    writer.close()


async def test_serving_terminating_endpoints_are_used_only_when_nothing_else_is_left(backends, proxies):
    proxy, cip, port = await setup_service(proxies, backends[:2], states=["terminating", "terminating"])
    assert {await ask(cip, port) for _ in range(6)} == {"be1", "be2"}
    await proxy.apply(endpoint_slice("web", backends[0].port,
                                     [(backends[0].ip, "terminating"), (backends[1].ip, "terminating"),
                                      (backends[2].ip, "ready")]))
    assert {await ask(cip, port) for _ in range(6)} == {"be3"}


async def test_refusing_backend_is_skipped_without_client_visible_errors(backends, proxies):
    proxy = proxies()
    cip, port = unique_cluster_ip(), free_port(["127.0.0.1"])
    bport = backends[0].port
    dead = "127.0.0.29"  # nothing listens there: connection refused
    eps = [(dead, "ready")] + [(b.ip, "ready") for b in backends]
    await proxy.apply(service("flaky", cip, port, bport, annotations={"svcnet.io/scheduler": "rr"}),
                      endpoint_slice("flaky", bport, eps))
    got = Counter([await ask(cip, port) for _ in range(100)])
    assert sum(got.values()) == 100 and set(got) == {"be1", "be2", "be3", "be4"}
    pool = proxy.runtime("flaky").pool
    bad = pool.current[f"{dead}:{bport}"]
    assert bad.retries >= 1 and bad.connections == 0 and bad.down_until > 0


async def test_max_connections_refuses_cleanly_beyond_the_limit(backends, proxies):
    proxy = proxies(max_connections=5)
    cip, port = unique_cluster_ip(), free_port(["127.0.0.1"])
    await proxy.apply(service("lim", cip, port, backends[0].port),
                      endpoint_slice("lim", backends[0].port, [(b.ip, "ready") for b in backends]))
    held = [await greet(cip, port) for _ in range(5)]
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        # reset at once: during the handshake's completion or at the first read
        reader, writer = await asyncio.open_connection(cip, port)
        try:
            await asyncio.wait_for(reader.readexactly(1), 5)
        finally:
            writer.close()
    fe = proxy.runtime("lim").frontends["internal"]
    assert fe.rejected_limit == 1
    held[0][2].close()
    await asyncio.sleep(0.2)
    assert await ask(cip, port) in {"be1", "be2", "be3", "be4"}
    for _, _, w in held[1:]:
        w.close()


async def test_silent_and_half_closed_clients_do_not_pin_connections(proxies):
    ip = "127.0.0.31"
    bport = free_port([ip])
    holder = EchoBackend("hold", ip, bport, hold_after_eof=True)
    await holder.start()
    try:
        proxy = proxies(idle_timeout=0.3, half_close_timeout=0.3)
        cip, port = unique_cluster_ip(), free_port(["127.0.0.1"])
        await proxy.apply(service("idle", cip, port, bport), endpoint_slice("idle", bport, [(ip, "ready")]))
        _, reader, writer = await greet(cip, port)  # then silence
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 5)
        writer.close()
        _, reader, writer = await greet(cip, port)
        writer.write_eof()  # half-close; the backend never closes its side
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 5)
        writer.close()
        await asyncio.sleep(0.1)
        b = next(iter(proxy.runtime("idle").pool.current.values()))
        assert b.active == 0 and b.inactive == 0 and b.connections == 2
    finally:
        await holder.stop()


@pytest.mark.parametrize("splice", [True, False], ids=["splice", "copy"])
async def test_bulk_transfer_is_intact(backends, proxies, splice, monkeypatch):
    if splice and not HAVE_SPLICE:
        pytest.skip("os.splice is not available on this platform")
    pipes = []  # a pump takes a pipe when it switches a bulk flow to splice

    def take_pipe():
        pipes.append(take())
        return pipes[-1]

    take = tcp._take_pipe
    monkeypatch.setattr(tcp, "_take_pipe", take_pipe)
    proxy, cip, port = await setup_service(lambda: proxies(splice=splice), backends[:1])
    _, reader, writer = await greet(cip, port)
    data = os.urandom(8 << 20)

    async def send():
        writer.write(data)
        await writer.drain()
        writer.write_eof()

    sender = asyncio.create_task(send())
    echoed = await asyncio.wait_for(reader.read(-1), 20)
    await sender
    writer.close()
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(data).digest()
    b = next(iter(proxy.runtime("web").pool.current.values()))
    assert b.bytes_in == len(data) and b.bytes_out == len(data) + len(b"be1\n")
    assert (len(pipes) >= 1) if splice else not pipes, pipes  # splice on: the bulk flow went zero-copy


async def test_a_client_that_stops_reading_pins_little_memory(backends, proxies):
    """Bulk reads grow to 1 MB, but never beyond what the destination can take at once: data
    read and not yet written stays near one small read however slow the reader, and the flow
    completes, intact, once the client reads again."""
    proxy, cip, port = await setup_service(lambda: proxies(splice=False), backends[:1])
    _, reader, writer = await greet(cip, port)
    data = os.urandom(24 << 20)
    writer.write(data)  # the echo comes back through the proxy, which the client does not read
    pumps = []
    worst = 0
    for _ in range(30):
        await asyncio.sleep(0.05)
        pumps = [p for conns in proxy.runtime("web").pool.conns.values() for c in conns for p in c._pumps]
        worst = max([worst, *(len(p.leftover) for p in pumps if p.leftover is not None)])
    assert pumps and any(p.writing for p in pumps)  # the proxy is blocked on the client
    assert worst <= 2 * MIN_READ, worst
    writer.write_eof()
    echoed = await asyncio.wait_for(reader.read(-1), 30)
    writer.close()
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(data).digest()


async def test_udp_flows_per_client_with_idle_timeout(backends, proxies):
    proxy = proxies(udp_idle_timeout=0.3)
    cip, port = unique_cluster_ip(), free_port(["127.0.0.1"])
    bport = backends[0].port
    await proxy.apply(service("dns", cip, port, bport, protocols=("UDP",),
                              annotations={"svcnet.io/scheduler": "rr"}),
                      endpoint_slice("dns", bport, [(b.ip, "ready") for b in backends[:2]],
                                     protocols=("UDP",)))

    def query(sock: socket.socket, text: bytes) -> tuple[bytes, tuple]:
        sock.sendto(text, (cip, port))
        return sock.recvfrom(1000)

    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (a, b):
        s.settimeout(2)
    try:
        replies_a = [await asyncio.to_thread(query, a, b"q%d" % i) for i in range(5)]
        reply_b, _ = await asyncio.to_thread(query, b, b"x")
        names_a = {r.split()[0] for r, _ in replies_a}
        assert len(names_a) == 1  # one flow: one backend
        assert reply_b.split()[0] not in names_a  # rr: the next client's flow goes elsewhere
        assert all(src == (cip, port) for _, src in replies_a)  # replies come from the service
        assert replies_a[3][0].endswith(b"q3")
        listener = next(iter(proxy.runtime("dns", "UDP").listeners.values()))
        assert listener.open == 2
        await asyncio.sleep(0.8)
        assert listener.open == 0  # idle flows closed
    finally:
        a.close()
        b.close()


async def test_nodeport_and_external_ip_listeners_and_removal(backends, proxies):
    node = NodeConfig(node_name="n1", nodeport_addresses=["127.0.0.0/8"])
    proxy = proxies(node=node)
    cip, port = unique_cluster_ip(), free_port(["127.0.0.1"])
    node_port = free_port(["127.0.0.1"])
    ext = "127.0.0.77"
    bport = backends[0].port
    svc = service("np", cip, port, bport, node_port=node_port, external_ips=[ext])
    await proxy.apply(svc, endpoint_slice("np", bport, [(backends[0].ip, "ready")]))
    assert await ask("127.0.0.1", node_port) == "be1"
    assert await ask(ext, port) == "be1"
    assert await ask(cip, port) == "be1"
    _, reader, writer = await greet(cip, port)
    await proxy.apply(svc, deleted=True)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(cip, port)
    writer.write(b"still here")  # the established connection keeps flowing
    assert await asyncio.wait_for(reader.readexactly(10), 5) == b"still here"
    writer.close()


async def test_wrr_weights_from_the_service_annotation(backends, proxies):
    proxy = proxies()
    cip, port = unique_cluster_ip(), free_port(["127.0.0.1"])
    bport = backends[0].port
    # by endpoint IP, or by the pod name in the endpoint's targetRef
    weights = f"{backends[0].ip}=3,pod-{backends[1].ip}=2,{backends[3].ip}=0"
    await proxy.apply(service("w", cip, port, bport,
                              annotations={"svcnet.io/scheduler": "wrr", "svcnet.io/weights": weights}),
                      endpoint_slice("w", bport, [(b.ip, "ready") for b in backends]))
    got = Counter([await ask(cip, port) for _ in range(60)])
    assert got == {"be1": 30, "be2": 20, "be3": 10}


def test_cli_serves_files_and_follows_changes(tmp_path: Path):
    """`svcnet proxy userspace -f` as a user runs it (uvloop, no root): serves the ClusterIP,
    follows edits of the objects file, exposes metrics."""
    ips = ["127.0.0.41", "127.0.0.42"]
    bport = free_port(ips)
    server = tmp_path / "backend.py"
    server.write_text(
        "import socket, sys, threading\n"
        "def serve(ip):\n"
        "    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"    s.bind((ip, {bport})); s.listen(64)\n"
        "    while True:\n"
        "        c, _ = s.accept(); c.sendall(ip.encode() + b'\\n'); c.close()\n"
        f"for ip in {ips!r}: threading.Thread(target=serve, args=(ip,), daemon=True).start()\n"
        "print('ready', flush=True); threading.Event().wait()\n")
    cip, port = unique_cluster_ip(), free_port(["127.0.0.1"])
    metrics_port = free_port(["127.0.0.1"])
    objs = tmp_path / "objs.yaml"

    def write(eps: list[str]) -> None:
        objs.write_text(yaml.safe_dump_all([
            service("cli", cip, port, bport),
            endpoint_slice("cli", bport, [(ip, "ready") for ip in eps])]))

    def ask_sync() -> str:
        with socket.create_connection((cip, port), timeout=5) as c:
            return c.makefile().readline().strip()

    write(ips)
    backend = subprocess.Popen([sys.executable, str(server)], stdout=subprocess.PIPE, text=True)
    proxy = subprocess.Popen(
        [sys.executable, "-m", "svcnet", "proxy", "userspace", "-f", str(objs), "--node-name", "n1",
         "--scheduler", "rr", "--healthz-bind-address", "127.0.0.1:0",
         "--metrics-bind-address", f"127.0.0.1:{metrics_port}"],
        stderr=subprocess.PIPE, text=True)
    try:
        assert backend.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 15
        while True:
            try:
                first = ask_sync()
                break
            except OSError:
                if time.monotonic() > deadline or proxy.poll() is not None:
                    raise
                time.sleep(0.1)
        assert {first, ask_sync(), ask_sync()} == set(ips)
        write(ips[1:])  # the first endpoint goes away
        deadline = time.monotonic() + 10
        while ips[0] in {ask_sync() for _ in range(4)}:
            assert time.monotonic() < deadline, "proxy did not follow the file change"
            time.sleep(0.2)
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert (f'svcnet_userspace_connections_total{{endpoint="{ips[1]}:{bport}",protocol="TCP",'
                f'service="default/cli:tcp"}}') in text
        assert "kubeproxy_sync_proxy_rules_duration_seconds" in text
    finally:
        for p in (proxy, backend):
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    assert proxy.returncode == 0, proxy.stderr.read()


async def test_active_checks_mark_a_dead_endpoint_down_and_back_up(backends, proxies):
    proxy = proxies(health_check_interval=1.0)
    cip, port = unique_cluster_ip(), free_port(["127.0.0.1"])
    bport = backends[0].port
    await proxy.apply(service("hc", cip, port, bport),
                      endpoint_slice("hc", bport, [(b.ip, "ready") for b in backends[:2]]))
    pool = proxy.runtime("hc").pool
    await proxy.proxier.active_check()
    assert all(b.down_until == 0 for b in pool.current.values())
    await backends[1].stop()
    await proxy.proxier.active_check()
    dead = pool.current[f"{backends[1].ip}:{bport}"]
    assert dead.down_until > time.monotonic()
    assert {await ask(cip, port) for _ in range(6)} == {"be1"}  # no retry needed: it is skipped
    assert dead.retries == 0
    await backends[1].start()
    await proxy.proxier.active_check()
    assert dead.down_until == 0


async def test_unknown_scheduler_annotation_falls_back_to_the_default(backends, proxies, caplog):
    proxy, cip, port = await setup_service(lambda: proxies(scheduler="rr"), backends, scheduler="fastest")
    assert proxy.runtime("web").scheduler == "rr"
    assert "unknown svcnet.io/scheduler 'fastest'" in caplog.text
    assert Counter([await ask(cip, port) for _ in range(8)]) == {"be1": 2, "be2": 2, "be3": 2, "be4": 2}


def test_running_out_of_descriptors_neither_spins_nor_wedges(tmp_path: Path):
    """A proxy limited to 64 open files, flooded with held connections: it refuses or queues
    what it cannot take, does not spin on the readable listening socket, keeps answering
    /metrics, and serves again once clients let go."""
    import resource

    ip = "127.0.0.43"
    bport = free_port([ip])
    server = tmp_path / "hold.py"
    server.write_text(
        "import socket, threading\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('{ip}', {bport}))\n"
        "s.listen(512); print('ready', flush=True)\n"
        "def hold(c):\n"
        "    c.sendall(b'hi\\n')\n"
        "    while c.recv(100): pass\n"
        "    c.close()\n"
        "while True:\n"
        "    c, _ = s.accept(); threading.Thread(target=hold, args=(c,), daemon=True).start()\n")
    cip, port = unique_cluster_ip(), free_port(["127.0.0.1"])
    metrics_port = free_port(["127.0.0.1"])
    objs = tmp_path / "objs.yaml"
    objs.write_text(yaml.safe_dump_all([service("fd", cip, port, bport),
                                        endpoint_slice("fd", bport, [(ip, "ready")])]))

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    backend = subprocess.Popen([sys.executable, str(server)], stdout=subprocess.PIPE, text=True)
    proxy = subprocess.Popen(
        [sys.executable, "-m", "svcnet", "proxy", "userspace", "-f", str(objs), "--node-name", "n1",
         "--healthz-bind-address", "127.0.0.1:0", "--metrics-bind-address", f"127.0.0.1:{metrics_port}"],
        stderr=subprocess.PIPE, text=True, preexec_fn=limit)
    held: list[socket.socket] = []
    try:
        assert backend.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection((cip, port), timeout=2) as c:
                    assert c.recv(10) == b"hi\n"
                break
            except OSError:
                assert time.monotonic() < deadline and proxy.poll() is None
                time.sleep(0.1)
        for _ in range(60):  # about two descriptors each in the proxy: far beyond 64
            c = socket.socket()
            c.settimeout(2)
            try:
                c.connect((cip, port))
            except OSError:
                c.close()
                continue
            held.append(c)
        time.sleep(0.5)

        def cpu() -> float:
            fields = Path(f"/proc/{proxy.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        before = cpu()
        time.sleep(1.0)
        assert cpu() - before < 0.5, "the proxy spins while out of descriptors"
        for c in held:
            c.close()
        held.clear()
        deadline = time.monotonic() + 10
        while True:  # after the flood: served again, and /metrics answers
            try:
                with socket.create_connection((cip, port), timeout=2) as c:
                    if c.recv(10) == b"hi\n":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the proxy did not recover"
            time.sleep(0.2)
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert "svcnet_userspace_connections_total" in text
        assert proxy.poll() is None
    finally:
        for c in held:
            c.close()
        for p in (proxy, backend):
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


async def test_external_traffic_policy_local_serves_node_ports_from_local_endpoints(backends, proxies):
    node = NodeConfig(node_name="n1", nodeport_addresses=["127.0.0.0/8"])
    proxy = proxies(node=node)
    cip, port = unique_cluster_ip(), free_port(["127.0.0.1"])
    node_port = free_port(["127.0.0.1"])
    bport = backends[0].port
    svc = service("etp", cip, port, bport, node_port=node_port,
                  annotations={"svcnet.io/scheduler": "rr"})
    svc["spec"]["externalTrafficPolicy"] = "Local"
    await proxy.apply(svc, endpoint_slice("etp", bport, [(b.ip, "ready") for b in backends[:2]],
                                          nodes={backends[1].ip: "n2"}))
    assert {await ask(cip, port) for _ in range(4)} == {"be1", "be2"}  # ClusterIP: every endpoint
    assert {await ask("127.0.0.1", node_port) for _ in range(4)} == {"be1"}  # NodePort: local only


async def test_udp_endpoint_that_answers_unreachable_is_marked_down(backends, proxies):
    proxy = proxies()
    cip, port = unique_cluster_ip(), free_port(["127.0.0.1"])
    bport = backends[0].port
    dead = "127.0.0.29"  # no UDP socket there: ICMP port unreachable
    await proxy.apply(service("u", cip, port, bport, protocols=("UDP",),
                              annotations={"svcnet.io/scheduler": "rr"}),
                      endpoint_slice("u", bport, [(dead, "ready"), (backends[0].ip, "ready")],
                                     protocols=("UDP",)))
    replies = []
    for i in range(6):  # a new client (flow) each time: rr alternates until the dead one is down
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(0.3)
        try:
            sock.sendto(b"q%d" % i, (cip, port))
            try:
                replies.append(await asyncio.to_thread(sock.recv, 100))
            except TimeoutError:
                replies.append(None)
        finally:
            sock.close()
    assert replies.count(None) == 1, replies  # one datagram went to the dead endpoint, once
    assert all(r.startswith(b"be1") for r in replies if r is not None)
    down = proxy.runtime("u", "UDP").pool.current[f"{dead}:{bport}"]
    assert down.down_until > 0 and down.retries == 1


async def test_ipv6_service_on_loopback():
    from svcnet.proxy.ipnet import IPV6

    backend = EchoBackend("v6", "::1", free_port(["127.0.0.1"]))
    try:
        await backend.start()
    except OSError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    proxy = Proxy(node=NodeConfig(family=IPV6, node_name="n1"))
    try:
        port = free_port(["127.0.0.1"])
        svc = service("v6", "::1", port, backend.port)
        svc["spec"]["ipFamilies"] = ["IPv6"]
        sl = endpoint_slice("v6", backend.port, [("::1", "ready")])
        sl["addressType"] = "IPv6"
        await proxy.apply(svc, sl)
        assert await ask("::1", port) == "v6"
        assert list(proxy.runtime("v6").pool.current) == [f"[::1]:{backend.port}"]
    finally:
        await proxy.stop()
        await backend.stop()


async def test_udp_flow_without_a_free_descriptor_drops_the_datagram_and_recovers(backends, proxies):
    """Out of descriptors (EMFILE) when a new UDP flow needs its socket: the datagram is
    dropped (as a full buffer would drop it), the endpoint is not blamed, nothing escapes the
    listener's callback, and the next datagram opens the flow."""
    proxy = proxies()
    cip, port = unique_cluster_ip(), free_port(["127.0.0.1"])
    bport = backends[0].port
    await proxy.apply(service("uf", cip, port, bport, protocols=("UDP",)),
                      endpoint_slice("uf", bport, [(backends[0].ip, "ready")], protocols=("UDP",)))
    loop = asyncio.get_running_loop()
    escaped: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: escaped.append(context))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(2)
    real_socket = socket.socket

    def no_descriptor(*args, **kwargs):
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    try:
        socket.socket = no_descriptor  # only while the proxy handles the first datagram
        try:
            client.sendto(b"lost", (cip, port))
            await asyncio.sleep(0.2)
        finally:
            socket.socket = real_socket
        assert not escaped, escaped
        fe = proxy.runtime("uf", "UDP").frontends["internal"]
        assert fe.rejected_no_endpoint == 1
        b = fe.pool.current[f"{backends[0].ip}:{bport}"]
        assert b.down_until == 0 and b.retries == 0  # not the endpoint's fault
        client.sendto(b"again", (cip, port))
        assert await asyncio.to_thread(client.recv, 100) == b"be1 again"
    finally:
        loop.set_exception_handler(None)
        client.close()


async def test_udp_flows_beyond_max_connections_are_dropped(backends, proxies):
    proxy = proxies(max_connections=2)
    cip, port = unique_cluster_ip(), free_port(["127.0.0.1"])
    bport = backends[0].port
    await proxy.apply(service("ul", cip, port, bport, protocols=("UDP",)),
                      endpoint_slice("ul", bport, [(backends[0].ip, "ready")], protocols=("UDP",)))
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    try:
        got = []
        for s in socks:
            s.settimeout(0.3)
            s.sendto(b"x", (cip, port))
            try:
                got.append(await asyncio.to_thread(s.recv, 100))
            except TimeoutError:
                got.append(None)
        assert got[:2] == [b"be1 x", b"be1 x"] and got[2] is None
        assert proxy.runtime("ul", "UDP").frontends["internal"].rejected_limit == 1
    finally:
        for s in socks:
            s.close()


async def test_a_port_taken_by_someone_else_is_retried_on_the_next_sync(backends, proxies):
    proxy = proxies()
    cip, port = unique_cluster_ip(), free_port(["127.0.0.1"])
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind((cip, port))
    squatter.listen(1)
    bport = backends[0].port
    await proxy.apply(service("busy", cip, port, bport),
                      endpoint_slice("busy", bport, [(backends[0].ip, "ready")]))
    assert ("TCP", cip, port) in proxy.proxier.bind_errors
    squatter.close()
    await proxy.proxier.sync()  # nothing changed in the API: the bind is retried anyway
    assert await ask(cip, port) == "be1"
    assert not proxy.proxier.bind_errors
