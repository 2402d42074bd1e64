"""Objects read from files (``-f PATH``, repeatable, ``-`` for stdin), served as an ObjectSource.

A file is YAML (several documents separated by ``---``) or JSON; each document is a Kubernetes
object or a list (``kind: List``, or an API list such as ``ServiceList``) whose ``items`` are
objects. The file source applies what the API server would have applied on create (namespace
"default", the upstream defaults) and fills uid, resourceVersion and creationTimestamp, so the
proxy, DNS and trace see the same objects from a file as from a cluster.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import yaml

from svcnet.api.defaults import apply_defaults
from svcnet.api.resources import Resource, by_kind
from svcnet.client.cache import IndexFunc, Obj, ObjectCache, object_key
from svcnet.client.source import (
    AddHandler,
    DeleteHandler,
    HandlerSet,
    ResourceRef,
    UpdateHandler,
    replay_adds,
    resolve_resource,
)

log = logging.getLogger(__name__)

STDIN = "-"
DEFAULT_NAMESPACE = "default"
# uuid5 namespace for synthetic uids: the same object in the same files always gets the same uid.
_UID_NAMESPACE = uuid.UUID("5f7c2b0e-8d4e-4b7e-9a51-2d1f1c2f7a10")


class ObjectsFileError(ValueError):
    """A file that cannot be read as Kubernetes objects; the message names file and document."""


def _loader_class() -> type:
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class KubeYAMLLoader(base):  # type: ignore[misc, valid-type]
        """Safe loader that keeps timestamps as strings: Kubernetes JSON has no date type, and
        ``creationTimestamp: 2024-01-01T00:00:00Z`` must stay the string the API would send."""

    KubeYAMLLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in base.yaml_implicit_resolvers.items()
    }
    return KubeYAMLLoader


_Loader = _loader_class()


@dataclass
class LoadedObject:
    obj: Obj
    path: str
    document: int  # 1-based document number in its file


def _display(path: str) -> str:
    return "<stdin>" if path == STDIN else path


def _parse_json(text: str) -> list[tuple[int, Any]] | None:
    """The one JSON document of a file, or None when the text is not plain JSON (a JSON stream
    or YAML in flow style is then left to the YAML parser)."""
    try:
        return [(1, orjson.loads(text))]
    except orjson.JSONDecodeError:
        return None


def _parse_yaml(text: str, path: str) -> list[tuple[int, Any]]:
    docs: list[tuple[int, Any]] = []
    loader = _Loader(text)
    try:
        while loader.check_data():
            doc = loader.get_data()
            docs.append((len(docs) + 1, doc))
    except yaml.YAMLError as e:
        number = len(docs) + 1
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        context = getattr(e, "context", None)
        detail = f"{context}: {problem}" if context else problem
        raise ObjectsFileError(f"{_display(path)}: document {number}{where}: {detail}") from e
    finally:
        loader.dispose()
    return docs


def parse_documents(text: str, path: str) -> list[tuple[int, Any]]:
    """(document number, parsed value) for every document of one file, empty ones included."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        docs = _parse_json(text)
        if docs is not None:
            return docs
        try:
            return _parse_yaml(text, path)
        except ObjectsFileError:
            # Neither JSON nor YAML: the JSON parser's complaint is the more useful one.
            try:
                orjson.loads(text)
            except orjson.JSONDecodeError as e:
                raise ObjectsFileError(
                    f"{_display(path)}: document 1 (line {e.lineno}, column {e.colno}): "
                    f"invalid JSON: {e.msg}"
                ) from e
            raise
    return _parse_yaml(text, path)


def _check_object(obj: Any, where: str) -> Obj:
    if not isinstance(obj, dict):
        raise ObjectsFileError(f"{where}: expected a Kubernetes object (a mapping), got {type(obj).__name__}")
    for field in ("apiVersion", "kind"):
        if not isinstance(obj.get(field), str) or not obj[field]:
            raise ObjectsFileError(f"{where}: object has no {field}")
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise ObjectsFileError(f"{where}: {obj['kind']} has no metadata")
    if not isinstance(meta.get("name"), str) or not meta["name"]:
        raise ObjectsFileError(f"{where}: {obj['kind']} has no metadata.name")
    namespace = meta.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise ObjectsFileError(f"{where}: {obj['kind']} {meta['name']}: metadata.namespace must be a string")
    return obj


def _is_list(doc: dict[str, Any]) -> bool:
    kind = doc.get("kind")
    return isinstance(kind, str) and kind.endswith("List") and "items" in doc


def _expand(doc: Any, path: str, number: int) -> Iterator[LoadedObject]:
    where = f"{_display(path)}: document {number}"
    if isinstance(doc, dict) and _is_list(doc):
        items = doc["items"]
        if items is None:
            return
        if not isinstance(items, list):
            raise ObjectsFileError(f"{where}: items must be a list")
        # An API list (ServiceList) omits apiVersion/kind on its items; they are the list's.
        item_kind = doc["kind"][: -len("List")] if doc["kind"] != "List" else None
        for i, item in enumerate(items):
            if isinstance(item, dict) and item_kind:
                item.setdefault("kind", item_kind)
                if isinstance(doc.get("apiVersion"), str):
                    item.setdefault("apiVersion", doc["apiVersion"])
            yield LoadedObject(_check_object(item, f"{where}: items[{i}]"), path, number)
        return
    yield LoadedObject(_check_object(doc, where), path, number)


def _read(path: str, stdin_cache: dict[str, str]) -> str:
    if path == STDIN:
        # stdin can be read once; a reload sees what was read the first time.
        if STDIN not in stdin_cache:
            stdin_cache[STDIN] = sys.stdin.read()
        return stdin_cache[STDIN]
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ObjectsFileError(f"{path}: {e}") from e


def load_documents(paths: Sequence[str], _stdin_cache: dict[str, str] | None = None) -> list[LoadedObject]:
    """Every object of every file, with where it came from; ObjectsFileError on bad input."""
    stdin_cache = _stdin_cache if _stdin_cache is not None else {}
    out: list[LoadedObject] = []
    for path in paths:
        for number, doc in parse_documents(_read(path, stdin_cache), path):
            if doc is None:
                continue
            out.extend(_expand(doc, path, number))
    return out


def load_objects(paths: Sequence[str]) -> list[Obj]:
    """The Kubernetes objects in the files, in file and document order, lists flattened.

    Objects are returned as written (no defaulting); ObjectsFileError names the file and the
    document (and the line, for YAML syntax errors) of the first problem found.
    """
    return [loaded.obj for loaded in load_documents(paths)]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def prepare_object(obj: Obj, resource: Resource) -> Obj:
    """What the API server would have stored for a create: namespace and upstream defaults.

    Mutates and returns obj. Synthetic uid/resourceVersion/creationTimestamp are added by the
    FileSource because they depend on its state (reloads)."""
    meta = obj["metadata"]
    if resource.namespaced:
        if not meta.get("namespace"):
            meta["namespace"] = DEFAULT_NAMESPACE
    else:
        meta.pop("namespace", None)
    apply_defaults(obj)
    if not meta.get("uid"):
        identity = f"{resource.api_version}/{resource.kind}/{meta.get('namespace', '')}/{meta['name']}"
        meta["uid"] = str(uuid.uuid5(_UID_NAMESPACE, identity))
    return obj


def _without_version(obj: Obj) -> Obj:
    """obj with the fields the file source assigns blanked, to compare contents across reloads."""
    meta = dict(obj["metadata"])
    meta.pop("resourceVersion", None)
    meta.pop("creationTimestamp", None)
    return {**obj, "metadata": meta}


class FileSource:
    """ObjectSource over objects read from files (see client/source.py for the interface)."""

    def __init__(self, paths: Sequence[str] = (), *, objects: Sequence[Obj] | None = None) -> None:
        """Serve the objects of ``paths``; or, with ``objects``, those objects (copied), which is
        handy in tests. Files are read by start()."""
        self.paths = list(paths)
        self._given = [copy.deepcopy(o) for o in objects] if objects is not None else None
        self._stdin_cache: dict[str, str] = {}
        self._caches: dict[Resource, ObjectCache] = {}
        self._handlers: dict[Resource, HandlerSet] = {}
        self._lock = asyncio.Lock()
        self._synced = asyncio.Event()
        self._revision = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_objects(cls, objects: Sequence[Obj]) -> FileSource:
        return cls(objects=objects)

    # -- ObjectSource ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the files, fill the stores, run on_add handlers. ObjectsFileError on bad input."""
        await self._load_and_apply()
        self._synced.set()

    async def wait_synced(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def stop(self) -> None:
        # Pending work is only replays for late handlers: finite, so let it finish.
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def store(self, resource: ResourceRef) -> ObjectCache:
        return self._cache(resolve_resource(resource))

    def add_handler(
        self,
        resource: ResourceRef,
        on_add: AddHandler | None = None,
        on_update: UpdateHandler | None = None,
        on_delete: DeleteHandler | None = None,
    ) -> None:
        r = resolve_resource(resource)
        handler = self._handlers.setdefault(r, HandlerSet()).add(on_add, on_update, on_delete)
        if self._synced.is_set():
            task = asyncio.get_running_loop().create_task(replay_adds(handler, self._cache(r), self._lock))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def add_indexer(self, resource: ResourceRef, name: str, fn: IndexFunc) -> None:
        self._cache(resolve_resource(resource)).add_indexer(name, fn)

    async def __aenter__(self) -> FileSource:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- reloading -------------------------------------------------------------------------------

    async def reload(self) -> tuple[int, int, int]:
        """Re-read the files and deliver the difference as add/update/delete events.

        Returns (added, updated, deleted). On a malformed file ObjectsFileError is raised and
        the stores keep their previous content."""
        return await self._load_and_apply()

    # -- internals -------------------------------------------------------------------------------

    def _cache(self, resource: Resource) -> ObjectCache:
        cache = self._caches.get(resource)
        if cache is None:
            cache = self._caches[resource] = ObjectCache()
        return cache

    def _read_all(self) -> dict[Resource, dict[str, Obj]]:
        if self._given is not None:
            loaded = [LoadedObject(copy.deepcopy(o), "<objects>", i + 1) for i, o in enumerate(self._given)]
            for item in loaded:
                _check_object(item.obj, f"<objects>: object {item.document}")
        else:
            loaded = load_documents(self.paths, self._stdin_cache)
        grouped: dict[Resource, dict[str, Obj]] = {}
        for item in loaded:
            obj = item.obj
            resource = by_kind(obj["apiVersion"], obj["kind"])
            where = f"{_display(item.path)}: document {item.document}"
            if resource is None:
                log.warning("%s: ignoring %s %s %s: not a kind svcnet serves", where,
                            obj["apiVersion"], obj["kind"], obj["metadata"]["name"])
                continue
            try:
                prepare_object(obj, resource)
            except Exception as e:  # defaulting a wrongly-shaped object (ports: "80", ...)
                raise ObjectsFileError(f"{where}: {obj['kind']} {obj['metadata']['name']}: {e}") from e
            bucket = grouped.setdefault(resource, {})
            key = object_key(obj)
            if key in bucket:
                log.warning("%s: %s %s appears more than once; the last one wins", where, obj["kind"], key)
            bucket[key] = obj
        return grouped

    async def _load_and_apply(self) -> tuple[int, int, int]:
        grouped = await asyncio.to_thread(self._read_all)
        added = updated = deleted = 0
        async with self._lock:
            now = _now()
            for resource in set(grouped) | set(self._caches):
                cache = self._cache(resource)
                handlers = self._handlers.get(resource, HandlerSet())
                new_items = grouped.get(resource, {})
                for key, obj in new_items.items():
                    old = cache.get_by_key(key)
                    meta = obj["metadata"]
                    if old is not None and _without_version(old) == _without_version(obj):
                        continue
                    if old is not None:
                        meta.setdefault("creationTimestamp", old["metadata"].get("creationTimestamp"))
                    else:
                        meta.setdefault("creationTimestamp", now)
                    self._revision += 1
                    meta["resourceVersion"] = str(self._revision)
                    cache.upsert(obj)
                    if old is None:
                        added += 1
                        await handlers.added(obj)
                    else:
                        updated += 1
                        await handlers.updated(old, obj)
                for key in [k for k in cache if k not in new_items]:
                    gone = cache.get_by_key(key)
                    assert gone is not None
                    cache.remove(gone)
                    deleted += 1
                    await handlers.deleted(gone)
        return added, updated, deleted
