"""Choosing an endpoint for one service port: scheduler + session affinity + passive health,
and the bookkeeping that lets removed endpoints drain.

A `PortBackends` pool holds one `Backend` object per endpoint of a service port; the internal
(ClusterIP) and external (NodePort, external IPs, LB IPs) balancers of the port pick from
subsets of it, so their connection counts are shared. An endpoint that leaves both subsets
(removed, or terminating while ready ones exist) gets no new connections; while it still has
open connections it stays in the pool as *draining* until they end or the drain timeout
closes them.

Session affinity (ClientIP) follows upstream's user-space proxier: a client IP maps to the
endpoint it last used; the entry is reused and refreshed while younger than the timeout, and
replaced when its endpoint is gone or a connect to it fails.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from svcnet.proxy.userspace.schedulers import Backend, PickContext, Scheduler

log = logging.getLogger("svcnet.proxy.userspace")

BACKOFF_BASE = 1.0
BACKOFF_MAX = 30.0


@dataclass
class AffinityEntry:
    backend: Backend
    last_used: float


class Balancer:
    """Picks endpoints for one frontend scope (internal or external) of a service port."""

    def __init__(self, name: str, scheduler: Scheduler, affinity_timeout: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.scheduler = scheduler
        self.affinity_timeout = affinity_timeout
        self.clock = clock
        self.backends: list[Backend] = []
        self._signature: list[tuple[int, int]] | None = None
        self.affinity: dict[str, AffinityEntry] = {}

    def set_backends(self, backends: Sequence[Backend]) -> None:
        signature = [(id(b), b.weight) for b in backends]
        if signature == self._signature:
            return
        self._signature = signature
        self.backends = list(backends)
        self.scheduler.update(self.backends)
        live = set(map(id, self.backends))
        for ip in [ip for ip, e in self.affinity.items() if id(e.backend) not in live]:
            del self.affinity[ip]

    def set_scheduler(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        scheduler.update(self.backends)

    def choose(self, ctx: PickContext, tried: Iterable[Backend] = ()) -> Backend | None:
        """The endpoint for a new connection, skipping `tried` ones (None: nothing usable)."""
        now = self.clock()
        tried_ids = {id(b) for b in tried}
        if self.affinity_timeout > 0 and not tried_ids:
            entry = self.affinity.get(ctx.client_ip)
            if entry is not None and now - entry.last_used < self.affinity_timeout \
                    and entry.backend.down_until <= now and entry.backend.weight > 0:
                entry.last_used = now
                return entry.backend

        def healthy(b: Backend) -> bool:
            return id(b) not in tried_ids and b.down_until <= now

        chosen = self.scheduler.pick(ctx, healthy)
        if chosen is None:
            # Everything is marked down: try them anyway rather than refuse outright.
            chosen = self.scheduler.pick(ctx, lambda b: id(b) not in tried_ids)
        if chosen is None:
            return None
        chosen.choices += 1
        if self.affinity_timeout > 0:
            self.affinity[ctx.client_ip] = AffinityEntry(chosen, now)
        return chosen

    def expire_affinity(self) -> int:
        """Drop entries older than the timeout (bounds the table); returns how many."""
        now = self.clock()
        old = [ip for ip, e in self.affinity.items() if now - e.last_used >= self.affinity_timeout]
        for ip in old:
            del self.affinity[ip]
        return len(old)


def connect_failed(backend: Backend, clock: Callable[[], float] = time.monotonic) -> float:
    """Passive health: mark the endpoint down for an exponential back-off; returns it."""
    backend.failures += 1
    backend.retries += 1
    backoff = min(BACKOFF_BASE * 2 ** (backend.failures - 1), BACKOFF_MAX)
    backend.down_until = clock() + backoff
    return backoff


def connect_ok(backend: Backend) -> None:
    backend.failures = 0
    backend.down_until = 0.0


class PortBackends:
    """The Backend objects of one service port: current ones and draining ones."""

    def __init__(self) -> None:
        self.current: dict[str, Backend] = {}
        self.draining: dict[str, Backend] = {}
        # bumped each time a key starts draining, so a drain timer armed for an earlier period
        # (the endpoint came back, then left again) does not cut the new period short
        self.drain_epoch: dict[str, int] = {}
        self.conns: dict[str, set] = {}  # backend key -> open connection objects

    def get(self, ip: str, port: int, weight: int) -> Backend:
        probe = Backend(ip, port, weight)
        b = self.current.get(probe.key) or self.draining.pop(probe.key, None) or probe
        b.weight = weight
        return b

    def replace(self, backends: Iterable[Backend]) -> list[Backend]:
        """Make `backends` the current set; returns the ones that just started draining."""
        new = {b.key: b for b in backends}
        started = []
        for key, b in self.current.items():
            if key not in new:
                if self.open_count(b):
                    self.draining[key] = b
                    self.drain_epoch[key] = self.drain_epoch.get(key, 0) + 1
                    started.append(b)
                else:
                    self.conns.pop(key, None)
        self.current = new
        return started

    def open_count(self, b: Backend) -> int:
        return len(self.conns.get(b.key, ()))

    def add_conn(self, b: Backend, conn: object) -> None:
        self.conns.setdefault(b.key, set()).add(conn)

    def remove_conn(self, b: Backend, conn: object) -> None:
        conns = self.conns.get(b.key)
        if conns is not None:
            conns.discard(conn)
            if not conns and b.key not in self.current:
                self.conns.pop(b.key, None)
                self.draining.pop(b.key, None)
                self.drain_epoch.pop(b.key, None)

    def all(self) -> list[Backend]:
        return [*self.current.values(), *self.draining.values()]
