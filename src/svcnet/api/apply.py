"""Server-side apply and ``metadata.managedFields``: a pragmatic field-set implementation.

kube-apiserver tracks, per field manager and operation, the set of fields it owns
(structured-merge-diff). This module keeps the same record with the same wire format
(``fieldsType: FieldsV1``, keys ``f:<field>``, ``k:{<list map keys>}``, ``v:<set value>``,
``.`` for a node that is itself owned) and the same rules where users notice them:

- apply (``application/apply-patch+yaml``) merges the applied configuration into the live
  object: maps and structs field by field, list-maps by their keys, sets by value, atomic lists
  and scalars replaced; fields the manager applied before and no longer applies are removed
  unless another manager owns them;
- applying a value different from the live one to a field another manager owns is a conflict
  (409 with upstream's message) unless ``force=true``, which moves the field to the applier;
  applying the same value shares ownership;
- create, update and non-apply patches give the acting manager (operation ``Update``) every
  field it set or changed, and take those fields from other managers;
- an operation that changes neither the object nor anyone's field set keeps the entries as they
  were (timestamps included), so re-applying an unchanged manifest writes nothing.

Simplifications (documented in docs/kubectl.md): list semantics come from the patch tags in
api/patch.py plus a small table of multi-key list maps (openapi.LIST_MAP_KEYS is the same
table); Update operations own leaves and list items but not intermediate map nodes; there is
no version conversion (every served kind has one version).
"""

from __future__ import annotations

import datetime
import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from svcnet.api import errors, schema
from svcnet.api.errors import StatusError
from svcnet.api.patch import PatchMeta, TypeMeta, patch_meta_for
from svcnet.api.resources import RESOURCES

Path = tuple[str, ...]
_PRESENT = object()  # a list item or non-leaf node: owned, but has no value of its own

# Lists identified by more than their merge key (upstream +listMapKey markers).
LIST_MAP_KEYS: dict[tuple[str, str], tuple[str, ...]] = {
    ("ServiceSpec", "ports"): ("port", "protocol"),
    ("Container", "ports"): ("containerPort", "protocol"),
    ("EphemeralContainer", "ports"): ("containerPort", "protocol"),
}
# Defaults of list-map keys, applied to keys an applied configuration leaves out (as the
# schema defaults do upstream), so ``- port: 80`` and the live ``protocol: TCP`` item match.
_KEY_DEFAULTS = {"protocol": "TCP"}
# Maps and structs upstream marks atomic: owned and replaced as a whole.
ATOMIC_MAPS = frozenset({("ServiceSpec", "selector"), ("ReplicationControllerSpec", "selector")})
ATOMIC_STRUCTS = frozenset({"LabelSelector"})
# Metadata the server owns: never part of anyone's field set.
_SERVER_METADATA = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    }
)


def _struct_name(model: type) -> str:
    """The Go struct a client model class stands for: V1ServiceSpec -> ServiceSpec."""
    return schema._go_struct_name(model)[1]


def _list_semantics(struct: str, name: str) -> tuple[str, tuple[str, ...]]:
    """The SMP tags double as list semantics: merged by key = list-map, merged primitives =
    set, anything else atomic (upstream's defaults for lists without +listType)."""
    tags = _patch_tags().get((struct, name))
    if tags is None or "merge" not in tags.strategies:
        return "atomic", ()
    if not tags.merge_key:
        return "set", ()
    return "map", LIST_MAP_KEYS.get((struct, name), (tags.merge_key,))


@functools.cache
def _patch_tags() -> dict[tuple[str, str], PatchMeta]:
    """(Go struct, field) -> its SMP tags, for every struct the served kinds contain."""
    out: dict[tuple[str, str], PatchMeta] = {}

    def walk(meta: TypeMeta, depth: int) -> None:
        if depth > 12 or not meta.name:
            return
        for fname, fmeta in meta.fields.items():
            if fmeta.strategies:
                out[(meta.name, fname)] = fmeta
            if fmeta.schema is not None:
                walk(fmeta.schema, depth + 1)

    for r in RESOURCES:
        tree = patch_meta_for(r.api_version, r.kind)
        if tree is not None:
            walk(tree, 0)
    return out


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _item_key(item: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    item = item if isinstance(item, dict) else {}
    out = {}
    for k in keys:
        if k in item:
            out[k] = item[k]
        elif k in _KEY_DEFAULTS:
            out[k] = _KEY_DEFAULTS[k]
    return out


# ---- flattening: object -> {path: value} ------------------------------------------------------


def flatten(
    obj: dict[str, Any],
    api_version: str,
    kind: str,
    subresource: str | None = None,
    containers: bool = False,
) -> dict[Path, Any]:
    """Every owned path of ``obj`` with its value (``_PRESENT`` for list items; with
    ``containers`` also for non-empty maps and list-maps, which Update operations own as
    upstream's object comparison does). Server-owned
    metadata is left out; so is ``status`` for the main resource and everything but ``status``
    for the status subresource."""
    model = schema.model_class(api_version, kind)
    out: dict[Path, Any] = {}
    if model is None or not isinstance(obj, dict):
        return out
    fields = schema._fields(model)
    for key, value in obj.items():
        if key in ("apiVersion", "kind") or key not in fields:
            continue
        if subresource == "status" and key != "status":
            continue
        if subresource is None and key == "status":
            continue
        path = (f"f:{key}",)
        if key == "metadata" and isinstance(value, dict):
            trimmed = {k: v for k, v in value.items() if k not in _SERVER_METADATA}
            if not trimmed:
                continue
            _walk(trimmed, fields[key][1], _struct_name(model), key, path, out, containers)
            continue
        _walk(value, fields[key][1], _struct_name(model), key, path, out, containers)
    return out


def _walk(
    value: Any, typ: Any, parent: str, name: str, path: Path, out: dict[Path, Any], containers: bool = False
) -> None:
    if typ.kind == "model" and isinstance(value, dict):
        struct = _struct_name(typ.model)
        if not value or struct in ATOMIC_STRUCTS:
            out[path] = value
            return
        fields = schema._fields(typ.model)
        for key, child in value.items():
            if key in fields:
                _walk(child, fields[key][1], struct, key, (*path, f"f:{key}"), out, containers)
        return
    if typ.kind == "map" and isinstance(value, dict):
        if not value or (parent, name) in ATOMIC_MAPS:
            out[path] = value
            return
        if containers:
            out[path] = _PRESENT
        for key, child in value.items():
            _walk(child, typ.elem, parent, name, (*path, f"f:{key}"), out, containers)
        return
    if typ.kind == "list" and isinstance(value, list):
        list_type, keys = _list_semantics(parent, name)
        if list_type == "atomic" or not value:
            out[path] = value
            return
        if containers:
            out[path] = _PRESENT
        if list_type == "set":
            for item in value:
                out[(*path, f"v:{_dumps(item)}")] = item
            return
        for item in value:
            item_path = (*path, f"k:{_dumps(_item_key(item, keys))}")
            out[item_path] = _PRESENT
            if typ.elem.kind == "model" and isinstance(item, dict):
                fields = schema._fields(typ.elem.model)
                struct = _struct_name(typ.elem.model)
                for key, child in item.items():
                    if key in fields:
                        _walk(child, fields[key][1], struct, key, (*item_path, f"f:{key}"), out, containers)
        return
    out[path] = value


# ---- FieldsV1 encoding ------------------------------------------------------------------------


def to_fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    owned: list[Path] = list(paths)
    for path in owned:
        node = root
        for element in path:
            node = node.setdefault(element, {})
    for path in owned:
        node = root
        for element in path:
            node = node[element]
        if node and "." not in node:
            node["."] = {}
    return _sorted(root)


def _sorted(node: dict[str, Any]) -> dict[str, Any]:
    return {k: _sorted(node[k]) for k in sorted(node, key=lambda k: (k != ".", k))}


def from_fields_v1(tree: Any, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    if not isinstance(tree, dict):
        return out
    for key, child in tree.items():
        if key == ".":
            if prefix:
                out.add(prefix)
            continue
        path = (*prefix, key)
        if isinstance(child, dict) and child:
            out |= from_fields_v1(child, path)
        else:
            out.add(path)
    return out


def path_string(path: Path) -> str:
    """fieldpath.Path.String(): ``.spec.ports[port=80,protocol="TCP"].targetPort``."""
    parts = []
    for element in path:
        kind, _, rest = element.partition(":")
        if kind == "f":
            parts.append(f".{rest}")
        elif kind == "k":
            key = json.loads(rest)
            parts.append("[" + ",".join(f"{k}={json.dumps(v)}" for k, v in key.items()) + "]")
        elif kind == "v":
            parts.append(f"[={rest}]")
        else:
            parts.append(f"[{rest}]")
    return "".join(parts)


# ---- managed field entries --------------------------------------------------------------------


@dataclass
class Entry:
    manager: str
    operation: str  # "Apply" | "Update"
    api_version: str
    time: str
    subresource: str = ""
    fields: set[Path] = field(default_factory=set)

    def ident(self) -> tuple[str, str, str, str]:
        # The API version is part of an Update manager's identity, not of an Apply one's.
        version = self.api_version if self.operation == "Update" else ""
        return (self.manager, self.operation, version, self.subresource)

    def describe(self) -> str:
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text

    def encode(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(self.fields),
        }
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def decode_entries(obj: dict[str, Any]) -> list[Entry]:
    raw = (obj.get("metadata") or {}).get("managedFields")
    entries = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("manager", ""), str):
            continue
        entries.append(
            Entry(
                manager=item.get("manager", ""),
                operation=item.get("operation", "Update"),
                api_version=item.get("apiVersion", ""),
                time=item.get("time", ""),
                subresource=item.get("subresource", ""),
                fields=from_fields_v1(item.get("fieldsV1")),
            )
        )
    return entries


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _finish(old_raw: Any, entries: list[Entry], previous: list[Entry]) -> list[dict[str, Any]]:
    """Entries as stored: empty ones dropped; unchanged ones keep their old timestamps."""
    kept = [e for e in entries if e.fields]
    before = {e.ident(): e for e in previous}
    for entry in kept:
        old = before.get(entry.ident())
        if old is not None and old.fields == entry.fields:
            entry.time = old.time
    if isinstance(old_raw, list) and [_comparable(e) for e in kept] == [_comparable(e) for e in previous]:
        return old_raw
    return [e.encode() for e in kept]


def _comparable(entry: Entry) -> tuple[Any, ...]:
    return (*entry.ident(), entry.api_version, frozenset(entry.fields), entry.time)


def default_manager(user_agent: str) -> str:
    """Upstream's fallback when no fieldManager is given: the User-Agent up to its first '/'."""
    name = user_agent.split("/", 1)[0].strip()
    return name[:128] if name else "unknown"


def record_update(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    new_defaulted: dict[str, Any],
    manager: str,
    api_version: str,
    kind: str,
    subresource: str | None = None,
) -> None:
    """Set ``new``'s managedFields for a create/update/patch by ``manager`` (operation Update).

    ``new_defaulted`` is ``new`` after defaulting (what upstream compares); ``old`` is the
    stored object (None on create). A client that sends ``managedFields: []`` resets them."""
    md = new.setdefault("metadata", {})
    sent = md.get("managedFields")
    if isinstance(sent, list) and not sent and old is not None:
        md.pop("managedFields", None)
        return
    base_obj = new if isinstance(sent, list) and sent else (old or {})
    previous = decode_entries(base_obj)
    entries = [
        Entry(e.manager, e.operation, e.api_version, e.time, e.subresource, set(e.fields)) for e in previous
    ]
    new_flat = flatten(new_defaulted, api_version, kind, subresource, containers=True)
    old_flat = flatten(old, api_version, kind, subresource, containers=True) if old is not None else {}
    changed = {p for p, v in new_flat.items() if p not in old_flat or not _same(old_flat[p], v)}
    removed = set(old_flat) - set(new_flat)
    for entry in entries:
        entry.fields -= removed
        entry.fields -= changed
    if changed:
        me = Entry(manager, "Update", api_version, _now(), subresource or "")
        for entry in entries:
            if entry.ident() == me.ident():
                me = entry
                break
        else:
            entries.append(me)
        me.fields |= changed
        me.time = _now()
    md["managedFields"] = _finish(
        old.get("metadata", {}).get("managedFields") if old else None, entries, previous
    )
    if not md["managedFields"]:
        md.pop("managedFields")


def _same(a: Any, b: Any) -> bool:
    if a is _PRESENT or b is _PRESENT:
        return a is b
    return _dumps(a) == _dumps(b)


# ---- apply ------------------------------------------------------------------------------------


def conflict_error(conflicts: list[tuple[Entry, Path]], resource: str, name: str, group: str) -> StatusError:
    causes = [
        {"type": "FieldManagerConflict", "message": f"conflict with {e.describe()}", "field": path_string(p)}
        for e, p in conflicts
    ]
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {entry.describe()}: {path_string(path)}"
    else:
        by_manager: dict[str, list[str]] = {}
        for entry, path in conflicts:
            by_manager.setdefault(entry.describe(), []).append(path_string(path))
        lines = []
        for who in sorted(by_manager):
            lines.append(f"conflicts with {who}:")
            lines.extend(f"- {p}" for p in by_manager[who])
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    details: dict[str, Any] = {"name": name, "kind": resource, "causes": causes}
    if group:
        details["group"] = group
    return StatusError(409, "Conflict", message, details)


def apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    manager: str,
    api_version: str,
    kind: str,
    *,
    force: bool,
    resource: str = "",
    group: str = "",
    subresource: str | None = None,
) -> dict[str, Any]:
    """The object after ``manager`` applies ``applied`` to ``live`` (None: create). Raises a
    409 StatusError on conflicts without ``force``."""
    if (applied.get("metadata") or {}).get("managedFields") is not None:
        raise errors.bad_request("metadata.managedFields must be nil")
    result: dict[str, Any] = json.loads(json.dumps(live)) if live is not None else {}
    previous = decode_entries(live) if live is not None else []
    entries = [
        Entry(e.manager, e.operation, e.api_version, e.time, e.subresource, set(e.fields)) for e in previous
    ]
    me_ident = ("Apply", subresource or "")
    mine = next(
        (e for e in entries if e.manager == manager and (e.operation, e.subresource) == me_ident), None
    )
    applied_flat = flatten(applied, api_version, kind, subresource)
    live_flat = flatten(live, api_version, kind, subresource) if live is not None else {}
    others = [e for e in entries if e is not mine]

    conflicts: list[tuple[Entry, Path]] = []
    for path, value in applied_flat.items():
        if path in live_flat and not _same(live_flat[path], value):
            conflicts.extend((e, path) for e in others if path in e.fields)
    if conflicts and not force:
        name = (applied.get("metadata") or {}).get("name", "")
        raise conflict_error(conflicts, resource, name, group)
    taken = {p for _, p in conflicts}
    for entry in others:
        entry.fields -= taken

    # Fields this manager applied before and no longer does, that nobody else owns, go away.
    dropped = (mine.fields if mine else set()) - set(applied_flat)
    owned_by_others = set().union(*(e.fields for e in others)) if others else set()
    # Shorter paths first: a dropped list item goes as a whole, before its fields would be
    # removed one by one (which would leave the item without its key and unfindable).
    for path in sorted(dropped, key=len):
        if path in owned_by_others or any(p[: len(path)] == path for p in owned_by_others):
            continue
        _delete(result, path)

    _merge_into(result, applied, api_version, kind, subresource)
    if mine is None:
        mine = Entry(manager, "Apply", api_version, _now(), subresource or "")
        entries.append(mine)
    mine.fields = set(applied_flat)
    mine.api_version = api_version
    if not (previous and _same_sets(previous, entries)):
        mine.time = _now()
    md = result.setdefault("metadata", {})
    stored = _finish((live or {}).get("metadata", {}).get("managedFields"), entries, previous)
    md["managedFields"] = stored
    return result


def _same_sets(before: list[Entry], after: list[Entry]) -> bool:
    return {e.ident(): e.fields for e in before} == {e.ident(): e.fields for e in after if e.fields}


def _delete(obj: Any, path: Path) -> None:
    node = obj
    for i, element in enumerate(path):
        last = i == len(path) - 1
        kind, _, rest = element.partition(":")
        if kind == "f":
            if not isinstance(node, dict) or rest not in node:
                return
            if last:
                node.pop(rest)
                return
            node = node[rest]
        elif kind in ("k", "v"):
            if not isinstance(node, list):
                return
            want = json.loads(rest)
            for idx, item in enumerate(node):
                if kind == "v":
                    match = _dumps(item) == _dumps(want)
                else:
                    match = _dumps(_item_key(item, tuple(want))) == _dumps(want)
                if match:
                    if last:
                        node.pop(idx)
                        return
                    node = item
                    break
            else:
                return
        else:
            return


def _merge_into(
    target: dict[str, Any], applied: dict[str, Any], api_version: str, kind: str, subresource: str | None
) -> None:
    model = schema.model_class(api_version, kind)
    if model is None:
        return
    fields = schema._fields(model)
    for key, value in applied.items():
        if key in ("apiVersion", "kind"):
            target[key] = value
            continue
        if key not in fields:
            continue
        if (subresource == "status") != (key == "status") and key != "metadata":
            continue
        target[key] = _merge_value(target.get(key), value, fields[key][1], _struct_name(model), key)


def _merge_value(live: Any, value: Any, typ: Any, parent: str, name: str) -> Any:
    if typ.kind == "model" and isinstance(value, dict) and isinstance(live, dict):
        struct = _struct_name(typ.model)
        if struct in ATOMIC_STRUCTS:
            return value
        fields = schema._fields(typ.model)
        out = dict(live)
        for key, child in value.items():
            if key in fields:
                out[key] = _merge_value(live.get(key), child, fields[key][1], struct, key)
            else:
                out[key] = child
        return out
    if typ.kind == "map" and isinstance(value, dict) and isinstance(live, dict):
        if (parent, name) in ATOMIC_MAPS:
            return value
        out = dict(live)
        for key, child in value.items():
            out[key] = _merge_value(live.get(key), child, typ.elem, parent, name)
        return out
    if typ.kind == "list" and isinstance(value, list) and isinstance(live, list):
        list_type, keys = _list_semantics(parent, name)
        if list_type == "set":
            merged = list(live)
            seen = {_dumps(v) for v in live}
            merged.extend(v for v in value if _dumps(v) not in seen)
            return merged
        if list_type == "map":
            merged = list(live)
            index = {_dumps(_item_key(item, keys)): i for i, item in enumerate(merged)}
            for item in value:
                key = _dumps(_item_key(item, keys))
                if key in index:
                    merged[index[key]] = _merge_value(merged[index[key]], item, typ.elem, parent, name)
                else:
                    merged.append(item)
            return merged
    return value
