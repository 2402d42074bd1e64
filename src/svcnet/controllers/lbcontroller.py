"""The load-balancer IP controller: gives LoadBalancer Services of no loadBalancerClass an
address from --lb-pool (lbipam.py decides which), written to status.loadBalancer.ingress
through the status subresource. An exhausted pool leaves the Service pending (kubectl shows
`<pending>`) with an AllocationFailed Event; it is retried when a Service goes away.

The pool state is what Services' status already holds, plus the writes this controller made
that its cache may not show yet, so one worker never hands out an address twice. An address
is released by the status going away: the API server clears LB status when a Service stops
being a LoadBalancer, and a deleted Service takes its status with it.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from svcnet.client.api import ApiClient, ApiError
from svcnet.client.cache import object_key
from svcnet.client.informer import InformerSource
from svcnet.controllers.base import Controller
from svcnet.controllers.lbipam import LBPools, PoolExhaustedError, RequestedIPError, handles, ingress_ips

Obj = dict[str, Any]
COMPONENT = "service-lb-controller"


class LoadBalancerController(Controller):
    name = "lb-ipam"

    def __init__(self, client: ApiClient, source: InformerSource, pools: LBPools) -> None:
        super().__init__(client, workers=1)  # one worker: assignments are decided in order
        self.pools = pools
        self.services = source.store("services")
        self._written: dict[str, str] = {}  # service key -> address we wrote
        self._failed: dict[str, str] = {}  # service key -> last failure reported (no event spam)
        source.add_handler("services", self._enqueue, self._updated, self._deleted)

    def _enqueue(self, svc: Obj) -> None:
        self.queue.add(object_key(svc))

    def _updated(self, old: Obj, new: Obj) -> None:
        if handles(old) and not handles(new):
            self._freed(new)
        self.queue.add(object_key(new))

    def _deleted(self, svc: Obj) -> None:
        self._freed(svc)

    def _freed(self, svc: Obj) -> None:
        """An address may have come free: retry every Service still waiting for one."""
        self._written.pop(object_key(svc), None)
        for key in list(self._failed):
            self.queue.add(key)

    def _in_use(self) -> dict[str, str]:
        used: dict[str, str] = {}
        for svc in self.services.list():
            if handles(svc):
                for ip in ingress_ips(svc):
                    used[ip] = object_key(svc)
        for key, ip in self._written.items():
            used[ip] = key
        return used

    async def sync(self, key: Hashable) -> None:
        assert isinstance(key, str)
        namespace, _, name = key.partition("/")
        svc = self.services.get(namespace, name)
        if svc is None or not handles(svc):
            self._written.pop(key, None)
            self._failed.pop(key, None)
            return
        in_use = self._in_use()
        try:
            ip = self.pools.assign(svc, in_use)
        except (PoolExhaustedError, RequestedIPError) as exc:
            message = f"Failed to allocate IP for \"{key}\": {exc}"
            if self._failed.get(key) != message:
                self._failed[key] = message
                await self.record_event(svc, "Warning", "AllocationFailed", message, COMPONENT)
            self.log.warning("%s", message)
            return  # stays pending; retried when an address comes free
        self._failed.pop(key, None)
        if ingress_ips(svc) == [ip]:
            self._written[key] = ip
            return
        status = dict(svc.get("status") or {})
        status["loadBalancer"] = {"ingress": [{"ip": ip, "ipMode": "VIP"}]}
        body = {**svc, "status": status}
        try:
            await self.client.update_status("services", body, namespace)
        except ApiError as exc:
            if exc.code == 404:
                return
            raise
        self._written[key] = ip
        self.log.info("assigned %s to %s", ip, key)
        await self.record_event(svc, "Normal", "IPAllocated", f"Assigned IP [\"{ip}\"]", COMPONENT)
