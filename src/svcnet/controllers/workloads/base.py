"""A level-driven controller over informers: owner objects are queued by namespace/name on
any change to them or their pods, and synced one at a time per key."""

from __future__ import annotations

import asyncio
import logging

from svcnet.client.api import ApiClient, ApiError
from svcnet.client.informer import RETRYABLE, InformerSource
from svcnet.controllers.scheduler import pick_node
from svcnet.controllers.workloads.common import Expectations, Obj, controller_uid
from svcnet.controllers.workqueue import RateLimitedQueue, ShutDownError

log = logging.getLogger(__name__)


class WorkloadController:
    resource = ""  # plural of the owner resource
    kind = ""

    def __init__(self, client: ApiClient, source: InformerSource, workers: int = 2) -> None:
        self.client = client
        self.source = source
        self.workers = workers
        self.queue = RateLimitedQueue(base_delay=0.05, max_delay=10.0)
        self.expectations = Expectations()
        self._uid_to_key: dict[str, str] = {}
        # Placements made but not yet seen by the pod informer, so a burst of creates spreads.
        self._assumed: dict[str, Obj] = {}
        for r in (self.resource, "pods", "nodes", "leases"):
            source.informer(r)
        source.add_handler(
            self.resource,
            on_add=self._owner_changed,
            on_update=lambda _o, n: self._owner_changed(n),
            on_delete=self._owner_deleted,
        )
        source.add_handler(
            "pods", on_add=self._pod_added, on_update=self._pod_updated, on_delete=self._pod_deleted
        )

    # -- event handlers --------------------------------------------------------------------------

    @staticmethod
    def key_of(obj: Obj) -> str:
        meta = obj.get("metadata") or {}
        return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"

    def _owner_changed(self, obj: Obj) -> None:
        self._uid_to_key[obj["metadata"]["uid"]] = self.key_of(obj)
        self.queue.add(self.key_of(obj))

    def _owner_deleted(self, obj: Obj) -> None:
        self._uid_to_key.pop(obj["metadata"].get("uid"), None)
        self.expectations.forget(self.key_of(obj))

    def _owner_key(self, pod: Obj) -> str | None:
        uid = controller_uid(pod)
        return self._uid_to_key.get(uid) if uid else None

    def _pod_added(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        self._assumed.pop(self.key_of(pod), None)
        if key:
            self.expectations.observed_add(key, pod["metadata"]["name"])
            self.queue.add(key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        key = self._owner_key(new)
        if key:
            if (new.get("metadata") or {}).get("deletionTimestamp"):
                self.expectations.observed_delete(key, new["metadata"]["name"])
            self.queue.add(key)

    def _pod_deleted(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key:
            self.expectations.observed_delete(key, pod["metadata"]["name"])
            self.queue.add(key)

    # -- helpers for sync ------------------------------------------------------------------------

    def owned_pods(self, owner: Obj) -> list[Obj]:
        uid = owner["metadata"]["uid"]
        ns = owner["metadata"].get("namespace") or "default"
        return [p for p in self.source.store("pods").list(ns) if controller_uid(p) == uid]

    def place(self, pod: Obj) -> None:
        """Set spec.nodeName as the scheduler would (see controllers/scheduler.py: the pod is
        born bound, which needs no pods/binding)."""
        if (pod.get("spec") or {}).get("nodeName"):
            return
        leases = {x["metadata"]["name"]: x for x in self.source.store("leases").list("kube-node-lease")}
        pods = self.source.store("pods").list() + list(self._assumed.values())
        node = pick_node(pod, self.source.store("nodes").list(), pods, leases)
        if node:
            pod["spec"]["nodeName"] = node

    async def create_pod(self, key: str, pod: Obj) -> None:
        self.place(pod)
        name = pod["metadata"]["name"]
        self.expectations.expect_add(key, name)
        if pod["spec"].get("nodeName"):
            self._assumed[self.key_of(pod)] = pod
        try:
            await self.client.create("pods", pod)
        except BaseException:
            self.expectations.observed_add(key, name)
            self._assumed.pop(self.key_of(pod), None)
            raise

    async def delete_pod(self, key: str, pod: Obj) -> None:
        name = pod["metadata"]["name"]
        self.expectations.expect_delete(key, name)
        try:
            await self.client.delete(
                "pods", name, pod["metadata"].get("namespace"), preconditions={"uid": pod["metadata"]["uid"]}
            )
        except ApiError as e:
            self.expectations.observed_delete(key, name)
            if e.code not in (404, 409):
                raise

    async def patch_status(self, owner: Obj, status: Obj) -> None:
        if all(owner.get("status", {}).get(k) == v for k, v in status.items()):
            return
        try:
            await self.client.patch(
                self.resource,
                owner["metadata"]["name"],
                {"status": status},
                owner["metadata"].get("namespace"),
                subresource="status",
                patch_type="merge",
            )
        except ApiError as e:
            if e.code != 404:
                raise

    # -- the loop --------------------------------------------------------------------------------

    async def sync(self, key: str, owner: Obj) -> None:
        raise NotImplementedError

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDownError:
                return
            try:
                ns, name = str(key).split("/", 1)
                owner = self.source.store(self.resource).get(ns, name)
                if owner is not None and not owner["metadata"].get("deletionTimestamp"):
                    if self.expectations.satisfied(str(key)):
                        await self.sync(str(key), owner)
                    else:
                        self.queue.add_after(key, 0.5)
                self.queue.forget(key)
            except (ApiError, *RETRYABLE) as e:
                log.warning("%s %s: %s; retrying", self.kind, key, e)
                self.queue.add_rate_limited(key)
            except Exception:
                log.exception("%s %s: sync failed", self.kind, key)
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.ensure_future(self._worker()) for _ in range(self.workers)]
        try:
            await stop.wait()
        finally:
            self.queue.shut_down()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
