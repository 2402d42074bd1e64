"""Namespace lifecycle: the namespaces kube-apiserver creates at start, and the work of the
namespace controller for a namespace marked for deletion (delete its content, drop the
"kubernetes" finalizer, remove the namespace)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from svcnet.api import resources
from svcnet.api.errors import StatusError
from svcnet.apiserver.registry import NAMESPACE_FINALIZER, NAMESPACES, DeleteOptions, Registry
from svcnet.apiserver.watchcache import decode_kv
from svcnet.store.interface import CompareFailedError, StoreError

log = logging.getLogger("svcnet.apiserver.namespaces")


class NamespaceLifecycle:
    def __init__(self, registry: Registry, retry_seconds: float) -> None:
        self.registry = registry
        self.retry_seconds = retry_seconds
        self._tasks: dict[str, asyncio.Task[None]] = {}
        registry.on_namespace_terminating = self.finalize_soon

    async def bootstrap(self, names: tuple[str, ...]) -> None:
        for name in names:
            try:
                await self.registry.create(
                    NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                )
            except StatusError as exc:
                if exc.reason != "AlreadyExists":
                    raise
        # Namespaces left terminating by a previous run still need finishing.
        for entry in list(self.registry.cache.cache(NAMESPACES).items.values()):
            if entry.obj.get("metadata", {}).get("deletionTimestamp"):
                self.finalize_soon(entry.obj["metadata"]["name"])

    def finalize_soon(self, name: str) -> None:
        task = self._tasks.get(name)
        if task is not None and not task.done():
            return
        self._tasks[name] = asyncio.get_running_loop().create_task(self._finalize(name))

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    async def _finalize(self, name: str) -> None:
        while True:
            try:
                if await self._finalize_once(name):
                    return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("finalizing namespace %s", name)
            await asyncio.sleep(self.retry_seconds)

    async def _finalize_once(self, name: str) -> bool:
        """One pass; True when there is nothing more to do."""
        registry = self.registry
        store = registry.store
        kv = await store.get(NAMESPACES.key(None, name))
        if kv is None or not decode_kv(kv).obj.get("metadata", {}).get("deletionTimestamp"):
            return True
        remaining = 0
        for resource in resources.RESOURCES:
            if not resource.namespaced:
                continue
            result = await store.range(resource.prefix(name))
            for item in result.kvs:
                remaining += 1
                obj_name = decode_kv(item).obj.get("metadata", {}).get("name", "")
                try:
                    await registry.delete(
                        resource, name, obj_name, DeleteOptions(propagation_policy="Background")
                    )
                except StatusError as exc:
                    if exc.code != 404:
                        log.info(
                            "namespace %s: deleting %s %s: %s", name, resource.plural, obj_name, exc.message
                        )
        if remaining:
            # Check again: objects with finalizers or a grace period may still be there.
            for resource in resources.RESOURCES:
                if resource.namespaced and await store.count(resource.prefix(name)):
                    return False
        kv = await store.get(NAMESPACES.key(None, name))
        if kv is None:
            return True
        ns = decode_kv(kv).obj
        spec = ns.setdefault("spec", {})
        if NAMESPACE_FINALIZER in (spec.get("finalizers") or []):
            spec["finalizers"] = [f for f in spec["finalizers"] if f != NAMESPACE_FINALIZER]
            try:
                ns = await registry.write_update(
                    NAMESPACES, kv, decode_kv(kv).obj, ns, subresource="finalize"
                )
            except CompareFailedError:
                return False
            kv = await store.get(NAMESPACES.key(None, name))
            if kv is None:
                return True
        if (ns.get("spec") or {}).get("finalizers") or ns.get("metadata", {}).get("finalizers"):
            return False  # someone else's finalizer: they finish it
        try:
            await store.delete(kv.key, kv.mod_revision)
        except StoreError:
            return False
        return True
