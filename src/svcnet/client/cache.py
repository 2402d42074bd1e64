"""An indexed, in-memory cache of Kubernetes objects: client-go's thread-safe store + indexer.

Both the informers and the file source keep their objects here, so every consumer reads objects
the same way wherever they came from. Objects are stored as the JSON dicts the API returns and
are handed out by reference: callers must treat them as read-only (copy before changing), as
client-go's listers require, because copying every object on every read would cost more than
the rest of a proxy sync.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

Obj = dict[str, Any]
# An index function maps an object to the index values it is filed under (none, one or more).
IndexFunc = Callable[[Obj], Iterable[str]]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"

# Names of the indexers svcnet components commonly want; register them with add_indexer.
INDEX_SERVICE = "service"  # EndpointSlices by "<namespace>/<service name>"
INDEX_NODE_NAME = "nodeName"  # Pods by spec.nodeName


def object_key(obj: Obj) -> str:
    """The cache key client-go uses (MetaNamespaceKeyFunc): ``namespace/name`` or ``name``."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    name = meta.get("name", "")
    return f"{namespace}/{name}" if namespace else name


def endpointslice_service_index(obj: Obj) -> list[str]:
    """Index an EndpointSlice under ``namespace/service`` from its kubernetes.io/service-name label."""
    meta = obj.get("metadata") or {}
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return [f"{meta.get('namespace', '')}/{service}"] if service else []


def pod_node_name_index(obj: Obj) -> list[str]:
    """Index a Pod under the node it is bound to (unscheduled pods under "")."""
    return [(obj.get("spec") or {}).get("nodeName") or ""]


class ObjectCache:
    """Objects of one resource keyed by namespace/name, with named secondary indexes."""

    def __init__(self) -> None:
        self._items: dict[str, Obj] = {}
        self._by_namespace: dict[str, dict[str, Obj]] = {}
        self._indexers: dict[str, IndexFunc] = {}
        # index name -> index value -> keys filed under it
        self._indices: dict[str, dict[str, set[str]]] = {}

    # -- reading -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        """The keys, snapshotted so the cache may change while iterating."""
        return iter(list(self._items))

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def list(self, namespace: str | None = None) -> list[Obj]:
        """Every object, or those of one namespace. Cluster-scoped objects have namespace ""."""
        if namespace is None:
            return list(self._items.values())
        return list(self._by_namespace.get(namespace, {}).values())

    def get(self, namespace: str | None, name: str) -> Obj | None:
        """One object by namespace (None or "" for cluster-scoped kinds) and name."""
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def get_by_key(self, key: str) -> Obj | None:
        return self._items.get(key)

    def by_index(self, index_name: str, value: str) -> list[Obj]:
        """The objects an indexer filed under ``value``; KeyError for an unknown index name."""
        if index_name not in self._indexers:
            raise KeyError(f"index {index_name!r} does not exist")
        keys = self._indices[index_name].get(value, ())
        return [self._items[k] for k in keys]

    # -- indexers ------------------------------------------------------------------------------

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        """Add a secondary index; existing objects are indexed at once. Re-adding a name replaces it."""
        self._indexers[name] = fn
        index: dict[str, set[str]] = {}
        for key, obj in self._items.items():
            for value in fn(obj):
                index.setdefault(value, set()).add(key)
        self._indices[name] = index

    # -- writing (only the owner of the cache, an informer or a file source, calls these) ------

    def upsert(self, obj: Obj) -> Obj | None:
        """Insert or replace; returns the previous object with the same key, if any."""
        key = object_key(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        namespace = (obj.get("metadata") or {}).get("namespace") or ""
        self._by_namespace.setdefault(namespace, {})[key] = obj
        for name, fn in self._indexers.items():
            index = self._indices[name]
            for value in fn(obj):
                index.setdefault(value, set()).add(key)
        return old

    def remove(self, obj: Obj) -> Obj | None:
        """Remove the object with obj's key; returns what was stored, if anything."""
        key = object_key(obj)
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _unindex(self, key: str, old: Obj) -> None:
        namespace = (old.get("metadata") or {}).get("namespace") or ""
        bucket = self._by_namespace.get(namespace)
        if bucket is not None:
            bucket.pop(key, None)
            if not bucket:
                del self._by_namespace[namespace]
        for name, fn in self._indexers.items():
            index = self._indices[name]
            for value in fn(old):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]
