"""Leader election through a coordination.k8s.io/v1 Lease, as client-go's leaderelection does.

A candidate reads the Lease; it may take it when nobody holds it or when the holder's record
has not changed for leaseDurationSeconds by the candidate's own clock (client-go trusts the
local observation time, not the timestamps written by others, so clock skew between processes
does not matter). Writes are compare-and-swap on the Lease's resourceVersion, so two
candidates can never both win one round. The leader renews every ``retry_period``; if it
cannot renew within ``renew_deadline`` it gives up leadership (and its callers stop acting)
before any other candidate may take over (renew_deadline < lease_duration).

Defaults are upstream's: lease 15 s, renew deadline 10 s, retry 2 s.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from svcnet.client.api import ApiClient, ApiError
from svcnet.controllers.base import rfc3339_nano  # metav1.MicroTime

log = logging.getLogger("svcnet.controllers.leaderelection")

Obj = dict[str, Any]


@dataclass
class LeaderElectionConfig:
    namespace: str = "kube-system"
    name: str = "svcnet-controller-manager"
    identity: str = ""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not (self.lease_duration > self.renew_deadline > self.retry_period > 0):
            raise ValueError("leader election needs lease-duration > renew-deadline > retry-period > 0")


class LeaderElector:
    def __init__(self, client: ApiClient, config: LeaderElectionConfig) -> None:
        self.client = client
        self.config = config
        self.is_leader = False
        self._observed_rv = ""
        self._observed_at = 0.0  # monotonic time the record last changed, as we saw it

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this candidate holds the lease (True) or ``stop`` is set (False)."""
        while not stop.is_set():
            if await self._try_acquire_or_renew():
                self.is_leader = True
                log.info("%s became the leader (lease %s/%s)", self.config.identity,
                         self.config.namespace, self.config.name)
                return True
            try:
                await asyncio.wait_for(stop.wait(), self.config.retry_period)
            except TimeoutError:
                pass
        return False

    async def hold(self, stop: asyncio.Event) -> None:
        """Renew until renewal fails for renew_deadline or ``stop`` is set; then return (and
        on ``stop``, release the lease so a successor need not wait for it to expire)."""
        last_renew = time.monotonic()
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.config.retry_period)
            except TimeoutError:
                pass
            if stop.is_set():
                break
            if await self._try_acquire_or_renew():
                last_renew = time.monotonic()
            elif time.monotonic() - last_renew >= self.config.renew_deadline:
                log.warning("%s failed to renew the lease within %.1fs: leadership lost",
                            self.config.identity, self.config.renew_deadline)
                break
            if not self.is_leader:
                break
        was_leader = self.is_leader
        self.is_leader = False
        if stop.is_set() and was_leader:
            await self._release()

    async def _get(self) -> Obj | None:
        try:
            return await self.client.get("leases", self.config.name, self.config.namespace)
        except ApiError as exc:
            if exc.code == 404:
                return None
            raise

    def _record(self, transitions: int, acquire_time: str) -> Obj:
        return {
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": max(1, math.ceil(self.config.lease_duration)),
            "acquireTime": acquire_time,
            "renewTime": rfc3339_nano(),
            "leaseTransitions": transitions,
        }

    async def _try_acquire_or_renew(self) -> bool:
        try:
            lease = await self._get()
            if lease is None:
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.config.name, "namespace": self.config.namespace},
                    "spec": self._record(0, rfc3339_nano()),
                }
                created = await self.client.create("leases", body, self.config.namespace)
                self._observe(created)
                return True
            self._observe(lease)
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity") or ""
            mine = holder == self.config.identity
            duration = spec.get("leaseDurationSeconds") or self.config.lease_duration
            if holder and not mine and time.monotonic() < self._observed_at + duration:
                self.is_leader = False
                return False  # someone else holds a lease that has not expired
            transitions = int(spec.get("leaseTransitions") or 0)
            acquire_time = spec.get("acquireTime") or rfc3339_nano()
            if not mine:
                transitions += 1
                acquire_time = rfc3339_nano()
            lease["spec"] = self._record(transitions, acquire_time)
            updated = await self.client.update("leases", lease, self.config.namespace)
            self._observe(updated)
            return True
        except ApiError as exc:
            if exc.code not in (409,):
                log.warning("leader election: %s", exc.message)
            return False
        except (OSError, TimeoutError) as exc:
            log.warning("leader election: cannot reach the API server: %s", exc)
            return False
        except Exception as exc:  # aiohttp errors and the like: never crash the elector
            log.warning("leader election: %s: %s", type(exc).__name__, exc)
            return False

    def _observe(self, lease: Obj) -> None:
        rv = (lease.get("metadata") or {}).get("resourceVersion") or ""
        if rv != self._observed_rv:
            self._observed_rv = rv
            self._observed_at = time.monotonic()

    async def _release(self) -> None:
        """Give the lease up (client-go's ReleaseOnCancel): an empty holder, duration 1 s."""
        try:
            lease = await self._get()
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.config.identity:
                return
            spec = lease["spec"]
            lease["spec"] = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1,
                             "renewTime": rfc3339_nano()}
            await self.client.update("leases", lease, self.config.namespace)
        except Exception as exc:
            log.info("releasing the lease: %s", exc)
