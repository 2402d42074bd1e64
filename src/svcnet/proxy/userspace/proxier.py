"""The user-space proxier: one sync = take changes, then make listeners and endpoint sets match.

Every service port gets listeners on its ClusterIP:port (internal scope) and on its external
IPs, load-balancer IPs and NodePort (external scope); each scope forwards to the endpoints
upstream's CategorizeEndpoints gives it (Local traffic policies use local endpoints only;
serving-but-terminating endpoints only when no ready one is left). An address the proxy can
bind (a local address, or anything in 127.0.0.0/8) is served directly; any other address is
served by a listener on an ephemeral port of --bind-address plus a REDIRECT rule.

Endpoints that leave a scope get no new connections at once; their open connections keep
flowing until they end or the drain timeout closes them. A service port that disappears
closes its listeners the same way: established connections drain.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from svcnet.proxy.config import NodeConfig
from svcnet.proxy.ipnet import parse_ip
from svcnet.proxy.model import EndpointInfo, ServicePortInfo, ServicePortName
from svcnet.proxy.state import ProxyState
from svcnet.proxy.topology import categorize_endpoints
from svcnet.proxy.userspace.balancer import Balancer, PortBackends, connect_ok
from svcnet.proxy.userspace.options import UserspaceOptions
from svcnet.proxy.userspace.redirect import RedirectEntry, Redirector, nft_works
from svcnet.proxy.userspace.schedulers import SCHEDULERS, Backend, make_scheduler
from svcnet.proxy.userspace.tcp import Frontend, TcpListener, connect_backend
from svcnet.proxy.userspace.udp import UdpListener

log = logging.getLogger("svcnet.proxy.userspace")

SCHEDULER_ANNOTATION = "svcnet.io/scheduler"
WEIGHTS_ANNOTATION = "svcnet.io/weights"
LISTEN_BACKLOG = 4096
INTERNAL, EXTERNAL = "internal", "external"

Address = tuple[str, str, int]  # (protocol, ip, port)


def parse_weights(text: str) -> dict[str, int]:
    """`svcnet.io/weights: "10.244.1.5=3, web-0=2"`: endpoint IP or pod name -> weight (>= 0).
    Malformed items are skipped with a warning."""
    out: dict[str, int] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        try:
            weight = int(value)
        except ValueError:
            weight = -1
        if not sep or not key.strip() or weight < 0:
            log.warning("ignoring %s item %r (want NAME_OR_IP=WEIGHT, weight >= 0)", WEIGHTS_ANNOTATION, item)
            continue
        out[key.strip()] = weight
    return out


def _annotation(service: dict | None, key: str) -> object:
    """One annotation of a Service object; None when it or the annotations are missing or malformed."""
    annotations = ((service or {}).get("metadata") or {}).get("annotations")
    return annotations.get(key) if isinstance(annotations, dict) else None


def bind_socket(protocol: str, ip: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    kind = socket.SOCK_STREAM if protocol == "TCP" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setblocking(False)
        sock.bind((ip, port))
        if protocol == "TCP":
            sock.listen(LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass
class PortRuntime:
    name: ServicePortName
    info: ServicePortInfo | None
    pool: PortBackends
    frontends: dict[str, Frontend]
    scheduler: str
    signature: tuple = ()
    listeners: dict[Address, object] = field(default_factory=dict)  # direct binds
    redirect_listeners: dict[str, object] = field(default_factory=dict)  # scope -> listener
    redirects: dict[Address, str] = field(default_factory=dict)  # address -> scope

    def all_listeners(self) -> list:
        return [*self.listeners.values(), *self.redirect_listeners.values()]


class UserspaceProxier:
    def __init__(self, node: NodeConfig, opts: UserspaceOptions,
                 raw_slices: Callable[[str, str], list[dict]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.node = node
        self.opts = opts
        self.raw_slices = raw_slices
        self.clock = clock
        self.state = ProxyState(node.family, node.node_name)
        self.ports: dict[ServicePortName, PortRuntime] = {}
        self.retired: list[PortRuntime] = []  # removed service ports still draining
        self.redirector: Redirector | None = None
        self._redirect_backend: str | None = None if opts.redirect == "auto" else opts.redirect
        self._timers: set[asyncio.TimerHandle] = set()
        self._lock = asyncio.Lock()
        self.syncs = 0
        self.bind_errors: dict[Address, str] = {}

    # --- helpers ---

    def _scheduler_for(self, service: dict | None) -> str:
        name = _annotation(service, SCHEDULER_ANNOTATION)
        if name is None:
            return self.opts.scheduler
        if name not in SCHEDULERS:
            meta = service.get("metadata") or {}
            ns, svc = meta.get("namespace"), meta.get("name")
            log.warning("service %s/%s: unknown %s %r (one of %s): using %s", ns, svc, SCHEDULER_ANNOTATION,
                        name, ", ".join(SCHEDULERS), self.opts.scheduler)
            return self.opts.scheduler
        return name

    def _weights_for(self, spn: ServicePortName, service: dict | None) -> dict[str, int]:
        text = _annotation(service, WEIGHTS_ANNOTATION)
        if not isinstance(text, str) or not text:
            return {}
        by_key = parse_weights(text)
        out = {k: v for k, v in by_key.items() if parse_ip(k) is not None}
        names = {k: v for k, v in by_key.items() if k not in out}
        if names and self.raw_slices is not None:
            for sl in self.raw_slices(spn.namespace, spn.name):
                for ep in sl.get("endpoints") or []:
                    ref = (ep.get("targetRef") or {}) if isinstance(ep, dict) else {}
                    if ref.get("name") in names:
                        for addr in ep.get("addresses") or []:
                            out.setdefault(str(addr), names[ref["name"]])
        return out

    def _new_frontend(self, spn: ServicePortName, scope: str, scheduler: str, pool: PortBackends,
                      info: ServicePortInfo) -> Frontend:
        sched = make_scheduler(scheduler, self.opts.maglev_table_size)
        label = str(spn) if scope == INTERNAL else f"{spn} (external)"
        return Frontend(name=label, protocol=spn.protocol, pool=pool,
                        balancer=Balancer(label, sched, clock=self.clock),
                        dest_ip=info.cluster_ip if scope == INTERNAL else "",
                        dest_port=info.port if scope == INTERNAL else 0)

    def _desired_addresses(self, info: ServicePortInfo) -> dict[Address, str]:
        proto = info.protocol
        out: dict[Address, str] = {(proto, info.cluster_ip, info.port): INTERNAL}
        for ip in (*info.external_ips, *info.load_balancer_vips):
            out.setdefault((proto, ip, info.port), EXTERNAL)
        if info.node_port:
            any_addr = "::" if self.node.is_ipv6 else "0.0.0.0"
            addrs = [any_addr] if self.node.nodeports_match_all else self.node.nodeport_ips()
            for ip in addrs:
                out.setdefault((proto, ip, info.node_port), EXTERNAL)
        return out

    def _listener(self, protocol: str, sock: socket.socket, frontend: Frontend):
        if protocol == "TCP":
            return TcpListener(sock, frontend, self.opts)
        return UdpListener(sock, frontend, self.opts)

    # --- sync ---

    async def sync(self) -> None:
        async with self._lock:
            if not self.state.initialized:
                log.info("not syncing until Services and EndpointSlices have been received")
                return
            changes = self.state.take_changes()
            if changes.topology_changed:
                self.node.node_labels = dict(self.state.node_labels)
            for spn in [s for s in self.ports if s not in self.state.svc_port_map]:
                self._retire(self.ports.pop(spn))
            for spn, info in self.state.svc_port_map.items():
                try:
                    self._reconcile(spn, info, self.state.endpoints_map.get(spn, []))
                except Exception:
                    log.exception("%s: sync failed", spn)
            self.retired = [rt for rt in self.retired if any(rt.pool.conns.values())]
            await self._apply_redirects()
            self.syncs += 1

    def _reconcile(self, spn: ServicePortName, info: ServicePortInfo, endpoints: list[EndpointInfo]) -> None:
        if spn.protocol not in ("TCP", "UDP"):
            if spn not in self.ports:
                log.warning("%s: %s is not supported by the user-space proxy", spn, spn.protocol)
                self.ports[spn] = PortRuntime(spn, info, PortBackends(), {}, "")
            return
        service = self.state.services.get(spn.service)
        scheduler = self._scheduler_for(service)
        weights = self._weights_for(spn, service)
        signature = (info, tuple(endpoints), scheduler, tuple(sorted(weights.items())),
                     tuple(sorted(self.node.node_labels.items())))
        rt = self.ports.get(spn)
        if rt is not None and rt.signature == signature:
            return
        if rt is None:
            pool = PortBackends()
            rt = PortRuntime(spn, info, pool, {}, scheduler)
            self.ports[spn] = rt
        rt.signature = signature
        if rt.scheduler != scheduler:
            rt.scheduler = scheduler
            for fe in rt.frontends.values():
                fe.balancer.set_scheduler(make_scheduler(scheduler, self.opts.maglev_table_size))
        rt.info = info
        for scope in (INTERNAL, EXTERNAL):
            if scope not in rt.frontends:
                rt.frontends[scope] = self._new_frontend(spn, scope, scheduler, rt.pool, info)
            fe = rt.frontends[scope]
            fe.dest_ip = info.cluster_ip if scope == INTERNAL else ""
            fe.dest_port = info.port if scope == INTERNAL else 0
            fe.balancer.affinity_timeout = float(info.sticky_max_age_seconds) \
                if info.session_affinity_client_ip else 0.0

        cluster, local, _, _ = categorize_endpoints(endpoints, info, self.node.node_name,
                                                    self.node.node_labels)
        chosen = {INTERNAL: local if info.internal_policy_local else cluster,
                  # no external address: no external endpoints (they would only look in use)
                  EXTERNAL: (local if info.external_policy_local else cluster)
                  if info.externally_accessible else []}
        backends: dict[str, list[Backend]] = {}
        union: dict[str, Backend] = {}
        for scope, eps in chosen.items():
            backends[scope] = []
            for ep in eps:
                weight = weights.get(ep.ip, weights.get(ep.endpoint_string, 1))
                b = union.get(ep.endpoint_string) or rt.pool.get(ep.ip, ep.port, weight)
                union[b.key] = b
                backends[scope].append(b)
        draining = rt.pool.replace(union.values())
        for scope, fe in rt.frontends.items():
            fe.balancer.set_backends(backends[scope])
        if draining:
            log.info("%s: draining %s", spn, ", ".join(b.key for b in draining))
            self._schedule_drain(rt.pool, [b.key for b in draining])
        desired = self._desired_addresses(info)
        self._sync_listeners(rt, desired)
        if any(addr in self.bind_errors for addr in desired):
            rt.signature = ()  # retry the failed binds on the next sync (at most --sync-period away)

    def _sync_listeners(self, rt: PortRuntime, desired: dict[Address, str]) -> None:
        for addr in [a for a in rt.listeners if a not in desired]:
            rt.listeners.pop(addr).close()
        for addr in [a for a in rt.redirects if a not in desired]:
            del rt.redirects[addr]
        for addr, scope in desired.items():
            if addr in rt.listeners and rt.listeners[addr].frontend is rt.frontends[scope]:
                continue
            if addr in rt.listeners:
                rt.listeners.pop(addr).close()
            if addr in rt.redirects:
                rt.redirects[addr] = scope
                continue
            proto, ip, port = addr
            try:
                sock = bind_socket(proto, ip, port)
            except OSError as e:
                if e.errno == errno.EADDRNOTAVAIL and self.opts.redirect != "none":
                    rt.redirects[addr] = scope  # not a local address: REDIRECT to a proxy port
                    continue
                if self.bind_errors.get(addr) != str(e):
                    hint = " (ports below 1024 need root or net.ipv4.ip_unprivileged_port_start)" \
                        if e.errno == errno.EACCES else ""
                    log.error("%s: cannot listen on %s:%d/%s: %s%s", rt.name, ip, port, proto,
                              e.strerror, hint)
                self.bind_errors[addr] = str(e)
                continue
            self.bind_errors.pop(addr, None)
            rt.listeners[addr] = self._listener(proto, sock, rt.frontends[scope])
        needed = set(rt.redirects.values())
        for scope in [s for s in rt.redirect_listeners if s not in needed]:
            rt.redirect_listeners.pop(scope).close()
        for scope in needed - set(rt.redirect_listeners):
            try:
                sock = bind_socket(rt.name.protocol, self.opts.bind_address, 0)
            except OSError as e:
                log.error("%s: cannot open a proxy port on %s: %s", rt.name, self.opts.bind_address, e)
                continue
            rt.redirect_listeners[scope] = self._listener(rt.name.protocol, sock, rt.frontends[scope])

    def _retire(self, rt: PortRuntime) -> None:
        for listener in rt.all_listeners():
            listener.close()
        draining = rt.pool.replace([])
        for fe in rt.frontends.values():
            fe.balancer.set_backends([])
        if draining:
            log.info("%s removed: draining %d endpoint(s)", rt.name, len(draining))
            self._schedule_drain(rt.pool, [b.key for b in draining])
            self.retired.append(rt)

    def _schedule_drain(self, pool: PortBackends, keys: list[str]) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None
        armed = {key: pool.drain_epoch.get(key) for key in keys}

        def expire() -> None:
            self._timers.discard(handle)
            for key, epoch in armed.items():
                if key not in pool.draining or pool.drain_epoch.get(key) != epoch:
                    continue  # came back (perhaps to leave again later), or already drained
                conns = list(pool.conns.get(key, ()))
                if conns:
                    log.info("drain timeout: closing %d connection(s) to %s", len(conns), key)
                for conn in conns:
                    conn.abort("drain timeout")

        handle = loop.call_later(max(self.opts.drain_timeout, 0.0), expire)
        self._timers.add(handle)

    def redirect_entries(self) -> list[RedirectEntry]:
        out = []
        for rt in self.ports.values():
            for (proto, ip, port), scope in rt.redirects.items():
                listener = rt.redirect_listeners.get(scope)
                if listener is not None:
                    out.append(RedirectEntry(ip, port, proto.lower(), listener.port, str(rt.name)))
        return out

    async def _apply_redirects(self) -> None:
        entries = self.redirect_entries()
        if self.redirector is None:
            if not entries:
                return
            if self._redirect_backend is None:
                self._redirect_backend = "nftables" if await asyncio.to_thread(nft_works) else "iptables"
            self.redirector = Redirector(self._redirect_backend, ipv6=self.node.is_ipv6)
            log.info("service addresses that are not local are sent to the proxy with %s REDIRECT rules",
                     self._redirect_backend)
        await asyncio.to_thread(self.redirector.apply, entries)

    # --- housekeeping ---

    def expire_affinity(self) -> None:
        for rt in self.ports.values():
            for fe in rt.frontends.values():
                if fe.balancer.affinity_timeout > 0:
                    fe.balancer.expire_affinity()

    async def active_check(self) -> None:
        """Optional active TCP checks: a connect to every TCP endpoint; failure marks it down."""
        loop = asyncio.get_running_loop()
        checks = []
        for rt in self.ports.values():
            if rt.name.protocol == "TCP":
                checks.extend(rt.pool.current.values())

        async def check(b: Backend) -> None:
            try:
                sock = await connect_backend(loop, b, self.opts.connect_timeout)
            except (OSError, TimeoutError):
                b.down_until = self.clock() + max(self.opts.health_check_interval, 1.0)
                return
            sock.close()
            connect_ok(b)

        await asyncio.gather(*(check(b) for b in checks))

    def runtimes(self) -> list[PortRuntime]:
        return [*self.ports.values(), *self.retired]

    async def stop(self) -> None:
        """Close listeners and connections, remove REDIRECT rules."""
        for handle in list(self._timers):
            handle.cancel()
        for rt in self.runtimes():
            for listener in rt.all_listeners():
                listener.close()
            for conns in list(rt.pool.conns.values()):
                for conn in list(conns):
                    conn.abort("proxy stopping")
        if self.redirector is not None:
            await asyncio.to_thread(self.redirector.cleanup)
