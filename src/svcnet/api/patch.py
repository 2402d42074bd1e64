"""The three PATCH bodies kube-apiserver accepts besides apply: JSON patch, merge patch, SMP.

Behaviour follows the code kube-apiserver runs rather than the RFCs where they differ:
- JSON patch (RFC 6902) is applied as evanphx/json-patch v4 applies it (negative array
  indexes count from the end, ``replace`` of a missing object key adds it, ``test`` of a
  missing path against ``null`` passes). Any failure to apply answers 422 Invalid with the
  generic message upstream sends ("the server rejected our request due to an error in our
  request"); the precise reason is chained as ``__cause__`` for logs.
- Merge patch (RFC 7386) as evanphx/json-patch's ``MergePatch``.
- Strategic merge patch as apimachinery's ``strategicpatch.StrategicMergeMapPatch`` with the
  ``patchStrategy``/``patchMergeKey`` tags of the Go types of the kinds svcnet serves, and its
  error mapping (``interpretStrategicMergePatchError``): malformed directives are 400, list of
  lists 422, anything else 500 with the merge error as message.
Inputs are never modified; each function returns a new document.

Two strategic-merge cases have no single upstream answer, and here follow the patch text:
a list and its ``$deleteFromPrimitiveList/`` twin in one patch are applied in the order they
appear (Go iterates the map at random), and the order of server-only items when a
``$setElementOrder`` list meets ``$patch: delete`` items ignores Go's slice aliasing (which
depends on the capacity of the live list's backing array).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from svcnet.api.errors import StatusError, bad_request

__all__ = ["json_patch", "merge_patch", "patch_meta_for", "strategic_merge_patch"]

MAX_JSON_PATCH_OPERATIONS = 10000


def _go_type(value: Any) -> str:
    """Go's name for the type a JSON value decodes to (used in upstream's messages)."""
    if value is None:
        return "%!s(<nil>)"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    return "map[string]interface {}"


def _json_kind(value: Any) -> str:
    """encoding/json's word for a JSON value in "cannot unmarshal X into ..." errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _go_fmt(value: Any) -> str:
    """Go's %v of a decoded JSON value: maps as map[k:v ...] with sorted keys."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_fmt(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_fmt(v) for v in value) + "]"
    return str(value)


def _same(a: Any, b: Any) -> bool:
    """Go interface equality of decoded JSON: same dynamic type and value (1 != 1.0 != true)."""
    return type(a) is type(b) and a == b


# ---------------------------------------------------------------------------------------------
# JSON patch (RFC 6902)
# ---------------------------------------------------------------------------------------------


class _PatchFailed(Exception):
    pass


def _decode_pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise _PatchFailed(f"path must be a string, not {_json_kind(path)}")
    if path == "":
        raise _PatchFailed("the root of the document cannot be patched")
    if not path.startswith("/"):
        raise _PatchFailed(f"JSON pointer must start with '/': {path!r}")
    return [re.sub("~[01]", lambda m: "/" if m.group() == "~1" else "~", p) for p in path[1:].split("/")]


def _array_index(key: str, length: int, for_add: bool = False) -> int:
    """Index in a list the way json-patch v4 reads it (strconv.Atoi, negatives from the end)."""
    if not re.fullmatch(r"[+-]?[0-9]+", key):
        raise _PatchFailed(f"value was not a proper array index: '{key}'")
    idx = int(key)
    size = length + 1 if for_add else length
    if idx >= size or idx < -size:
        raise _PatchFailed(f"Unable to access invalid index: {idx}")
    return idx + size if idx < 0 else idx


def _container(doc: Any, parts: list[str]) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict):
            if node.get(part) is None:
                raise _PatchFailed(f"doc is missing path: {part!r}")
            node = node[part]
        elif isinstance(node, list):
            node = node[_array_index(part, len(node))]
        else:
            raise _PatchFailed(f"cannot traverse into a {_json_kind(node)} at {part!r}")
        if not isinstance(node, dict | list):
            raise _PatchFailed(f"cannot traverse into a {_json_kind(node)} at {part!r}")
    return node, parts[-1]


_MISSING = object()


def _get(node: Any, key: str) -> Any:
    if isinstance(node, dict):
        return node.get(key, _MISSING)
    return node[_array_index(key, len(node))]


def _add(node: Any, key: str, value: Any) -> None:
    if isinstance(node, dict):
        node[key] = value
    elif key == "-":
        node.append(value)
    else:
        node.insert(_array_index(key, len(node), for_add=True), value)


def _remove(node: Any, key: str) -> Any:
    if isinstance(node, dict):
        if key not in node:
            raise _PatchFailed(f"Unable to remove nonexistent key: {key}")
        return node.pop(key)
    return node.pop(_array_index(key, len(node)))


def _value(op: dict[str, Any]) -> Any:
    # json-patch v4 treats a missing "value" as null rather than rejecting the operation.
    return copy.deepcopy(op.get("value"))


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _apply_op(doc: Any, op: dict[str, Any]) -> None:
    kind = op.get("op")
    node, key = _container(doc, _decode_pointer(op.get("path")))
    if kind == "add":
        _add(node, key, _value(op))
    elif kind == "remove":
        _remove(node, key)
    elif kind == "replace":
        if isinstance(node, list):
            node[_array_index(key, len(node))] = _value(op)
        else:
            node[key] = _value(op)  # json-patch v4 adds a missing object key
    elif kind in ("move", "copy"):
        src_node, src_key = _container(doc, _decode_pointer(op.get("from")))
        if kind == "move":
            moved = _remove(src_node, src_key)
            node, key = _container(doc, _decode_pointer(op.get("path")))
        else:
            moved = _get(src_node, src_key)
            # json-patch v4 copies a missing object member as null.
            moved = None if moved is _MISSING else copy.deepcopy(moved)
        _add(node, key, moved)
    elif kind == "test":
        current = _get(node, key)
        expected = op.get("value")
        if current is _MISSING or current is None:
            if expected is not None:
                raise _PatchFailed(f"testing value {op.get('path')} failed")
        elif not _json_equal(current, expected):
            raise _PatchFailed(f"testing value {op.get('path')} failed")
    else:
        raise _PatchFailed(f"Unexpected kind: {kind}")


def _unprocessable(cause: Exception) -> StatusError:
    err = StatusError(422, "Invalid", "the server rejected our request due to an error in our request", {})
    err.__cause__ = cause
    return err


def json_patch(doc: Any, ops: Any) -> Any:
    """Apply an RFC 6902 operation list (already decoded from JSON) to a copy of ``doc``."""
    if not isinstance(ops, list):
        raise bad_request(f"json: cannot unmarshal {_json_kind(ops)} into Go value of type jsonpatch.Patch")
    for op in ops:
        if not isinstance(op, dict):
            raise bad_request(
                f"json: cannot unmarshal {_json_kind(op)} into Go value of type jsonpatch.Operation"
            )
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise StatusError(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: The allowed maximum operations in a JSON patch is "
            f"{MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}",
        )
    result = copy.deepcopy(doc)
    for op in ops:
        try:
            _apply_op(result, op)
        except _PatchFailed as e:
            raise _unprocessable(e) from e
        except (IndexError, KeyError, TypeError) as e:  # defensive: never a crash on odd input
            raise _unprocessable(e) from e
        except RecursionError:
            raise bad_request("patch nests too deeply") from None
    return result


# ---------------------------------------------------------------------------------------------
# Merge patch (RFC 7386)
# ---------------------------------------------------------------------------------------------


def _prune_nulls(value: Any) -> Any:
    """Nulls inside objects are dropped; a list keeps its null items (as evanphx does).
    Returns fresh containers throughout, so the result never shares state with ``value``."""
    if isinstance(value, dict):
        return {k: _prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_nulls(v) for v in value]
    return value


def _merge_docs(doc: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            doc.pop(key, None)
            continue
        current = doc.get(key)
        if not isinstance(current, dict):  # absent, null or not an object: take the patch value
            doc[key] = _prune_nulls(value)
        elif not isinstance(value, dict):
            doc[key] = value
        else:
            _merge_docs(current, value)


def merge_patch(doc: Any, patch: Any) -> Any:
    """RFC 7386 merge patch: objects merge, ``null`` deletes, anything else replaces."""
    if isinstance(patch, dict):
        if not isinstance(doc, dict):
            return _prune_nulls(patch)
        result = copy.deepcopy(doc)
        _merge_docs(result, copy.deepcopy(patch))
        return result
    if isinstance(patch, list):
        return _prune_nulls(patch)
    raise bad_request("Invalid JSON Patch")


# ---------------------------------------------------------------------------------------------
# Strategic merge patch: patch metadata of the Go types
# ---------------------------------------------------------------------------------------------


@dataclass
class PatchMeta:
    """What the Go struct tags say about one field, and the type of its value (or items)."""

    strategies: tuple[str, ...] = ()  # e.g. ("merge",), ("merge", "retainKeys")
    merge_key: str = ""
    schema: TypeMeta | None = None


@dataclass
class TypeMeta:
    name: str  # Go type name, shown in upstream's "cannot merge lists without merge key" error
    fields: dict[str, PatchMeta] = field(default_factory=dict)

    def lookup(self, key: str) -> tuple[TypeMeta, PatchMeta]:
        # Fields without tags or unknown to this table behave as plain structs/atomic lists.
        meta = self.fields.get(key) or PatchMeta()
        return meta.schema or _UNTAGGED, meta


_UNTAGGED = TypeMeta("")


def _merge_by(key: str, item: TypeMeta | None = None, retain: bool = False) -> PatchMeta:
    strategies = ("merge", "retainKeys") if retain else ("merge",)
    return PatchMeta(strategies, key, item or TypeMeta(""))


def _struct(name: str, **fields: PatchMeta) -> TypeMeta:
    return TypeMeta(name, dict(fields))


def _nested(schema: TypeMeta) -> PatchMeta:
    return PatchMeta(schema=schema)


def _build_schemas() -> dict[tuple[str, str], TypeMeta]:
    object_meta = _struct(
        "ObjectMeta",
        finalizers=PatchMeta(("merge",), "", TypeMeta("string")),
        ownerReferences=_merge_by("uid", TypeMeta("OwnerReference")),
    )
    container = _struct(
        "Container",
        ports=_merge_by("containerPort", TypeMeta("ContainerPort")),
        env=_merge_by("name", TypeMeta("EnvVar")),
        volumeMounts=_merge_by("mountPath", TypeMeta("VolumeMount")),
        volumeDevices=_merge_by("devicePath", TypeMeta("VolumeDevice")),
    )
    ephemeral = TypeMeta("EphemeralContainer", container.fields)
    pod_spec = _struct(
        "PodSpec",
        volumes=_merge_by("name", TypeMeta("Volume"), retain=True),
        initContainers=_merge_by("name", container),
        containers=_merge_by("name", container),
        ephemeralContainers=_merge_by("name", ephemeral),
        imagePullSecrets=_merge_by("name", TypeMeta("LocalObjectReference")),
        hostAliases=_merge_by("ip", TypeMeta("HostAlias")),
        topologySpreadConstraints=_merge_by("topologyKey", TypeMeta("TopologySpreadConstraint")),
        resourceClaims=_merge_by("name", TypeMeta("PodResourceClaim"), retain=True),
        schedulingGates=_merge_by("name", TypeMeta("PodSchedulingGate")),
    )
    conditions = _merge_by("type")
    pod_status = _struct(
        "PodStatus",
        conditions=_merge_by("type", TypeMeta("PodCondition")),
        podIPs=_merge_by("ip", TypeMeta("PodIP")),
        hostIPs=_merge_by("ip", TypeMeta("HostIP")),
        resourceClaimStatuses=_merge_by("name", TypeMeta("PodResourceClaimStatus"), retain=True),
    )
    template = _struct("PodTemplateSpec", metadata=_nested(object_meta), spec=_nested(pod_spec))
    pvc = _struct("PersistentVolumeClaim", metadata=_nested(object_meta))

    def kind(name: str, **fields: PatchMeta) -> TypeMeta:
        return _struct(name, metadata=_nested(object_meta), **fields)

    return {
        ("v1", "Namespace"): kind(
            "Namespace", status=_nested(_struct("NamespaceStatus", conditions=conditions))
        ),
        ("v1", "Node"): kind(
            "Node",
            spec=_nested(_struct("NodeSpec", podCIDRs=PatchMeta(("merge",), "", TypeMeta("string")))),
            status=_nested(
                _struct(
                    "NodeStatus",
                    conditions=_merge_by("type", TypeMeta("NodeCondition")),
                    addresses=_merge_by("type", TypeMeta("NodeAddress")),
                )
            ),
        ),
        ("v1", "Service"): kind(
            "Service",
            spec=_nested(_struct("ServiceSpec", ports=_merge_by("port", TypeMeta("ServicePort")))),
            status=_nested(_struct("ServiceStatus", conditions=_merge_by("type", TypeMeta("Condition")))),
        ),
        ("v1", "Pod"): kind("Pod", spec=_nested(pod_spec), status=_nested(pod_status)),
        ("v1", "Endpoints"): kind("Endpoints"),
        ("v1", "Event"): kind("Event"),
        ("discovery.k8s.io/v1", "EndpointSlice"): kind("EndpointSlice"),
        ("apps/v1", "Deployment"): kind(
            "Deployment",
            spec=_nested(
                _struct(
                    "DeploymentSpec",
                    template=_nested(template),
                    strategy=PatchMeta(("retainKeys",), "", TypeMeta("DeploymentStrategy")),
                )
            ),
            status=_nested(
                _struct("DeploymentStatus", conditions=_merge_by("type", TypeMeta("DeploymentCondition")))
            ),
        ),
        ("apps/v1", "StatefulSet"): kind(
            "StatefulSet",
            spec=_nested(
                _struct(
                    "StatefulSetSpec",
                    template=_nested(template),
                    volumeClaimTemplates=PatchMeta(schema=pvc),
                )
            ),
            status=_nested(
                _struct("StatefulSetStatus", conditions=_merge_by("type", TypeMeta("StatefulSetCondition")))
            ),
        ),
        ("coordination.k8s.io/v1", "Lease"): kind("Lease"),
        ("autoscaling/v1", "Scale"): kind("Scale"),
    }


_SCHEMAS = _build_schemas()


def patch_meta_for(api_version: str, kind: str) -> TypeMeta | None:
    """The SMP metadata of a kind, or None when SMP is not supported for it (e.g. CRDs)."""
    return _SCHEMAS.get((api_version, kind))


# ---------------------------------------------------------------------------------------------
# Strategic merge patch: the merge (apimachinery strategicpatch, server-side options)
# ---------------------------------------------------------------------------------------------

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"
SET_ELEMENT_ORDER = "$setElementOrder"


class _SmpError(Exception):
    """A merge failure; ``code`` is the HTTP status interpretStrategicMergePatchError gives it."""

    def __init__(self, message: str, code: int = 500) -> None:
        super().__init__(message)
        self.code = code


def _bad_format(message: str) -> _SmpError:
    return _SmpError(message, 400)


ERR_PRIMITIVE_LIST = "invalid patch format of primitive list"
ERR_RETAIN_KEYS = "invalid patch format of retainKeys"
ERR_SET_ELEMENT_ORDER = "invalid patch format of setElementOrder list"
ERR_LIST_OF_LISTS = "lists of lists are not supported"


def _bad_arg_type(expected: str, actual: Any) -> _SmpError:
    return _SmpError(f"expected a {expected}, but received a {_go_type(actual)}")


def _no_merge_key(item: dict[str, Any], key: str) -> _SmpError:
    return _SmpError(f"map: {_go_fmt(item)} does not contain declared merge key: {key}")


def _directive_text(value: Any) -> str:
    return value if isinstance(value, str) else f"%!s({_go_type(value)}={_go_fmt(value)})"


def _extract_key(key: str, prefix: str) -> str:
    head, sep, rest = key.partition("/")
    if not sep or head != prefix:
        is_delete_list = prefix == DELETE_FROM_PRIMITIVE_LIST
        raise _bad_format(ERR_PRIMITIVE_LIST if is_delete_list else ERR_SET_ELEMENT_ORDER)
    return rest


def _strategy(meta: PatchMeta) -> str:
    """extractRetainKeysPatchStrategy: the strategy other than retainKeys."""
    strategies = meta.strategies
    if len(strategies) == 1:
        return "" if strategies[0] == "retainKeys" else strategies[0]
    if len(strategies) == 2:
        if "retainKeys" in strategies:
            return strategies[1] if strategies[0] == "retainKeys" else strategies[0]
        raise _SmpError(f"unexpected patch strategy: {list(strategies)}")
    if strategies:
        raise _SmpError(f"unexpected patch strategy: {list(strategies)}")
    return ""


def _merge_key_value(item: Any, merge_key: str) -> Any:
    return item.get(merge_key) if isinstance(item, dict) else None


class _Order:
    """index() of upstream: position of an item (by merge key value, or itself) in a list."""

    def __init__(self, items: list[Any], merge_key: str, is_map: bool) -> None:
        self.items = items
        self.value: Callable[[Any], Any] = (
            (lambda item: _merge_key_value(item, merge_key)) if is_map else (lambda item: item)
        )
        self.positions: dict[tuple[type, Any], int] = {}
        self.unhashable: list[tuple[int, Any]] = []
        for i, item in enumerate(items):
            value = self.value(item)
            try:
                self.positions.setdefault((type(value), value), i)
            except TypeError:
                self.unhashable.append((i, value))

    def index(self, item: Any) -> int:
        value = self.value(item)
        try:
            found = self.positions.get((type(value), value))
        except TypeError:
            found = None
        candidates = [i for i, v in self.unhashable if _same(v, value)]
        if found is not None:
            candidates.append(found)
        return min(candidates) if candidates else -1


def _validate_merge_keys(merge_key: str, *lists: list[Any]) -> None:
    for items in lists:
        for item in items:
            if not isinstance(item, dict):
                raise _bad_arg_type("map[string]interface {}", item)
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)


def _normalize_slice_order(to_sort: list[Any], order: list[Any], merge_key: str, is_map: bool) -> list[Any]:
    to_delete: list[Any] = []
    if is_map:
        _validate_merge_keys(merge_key, to_sort, order)
        kept = []
        for item in to_sort:
            (to_delete if item.get(DIRECTIVE) == "delete" else kept).append(item)
        to_sort = kept
    positions = _Order(order, merge_key, is_map)
    indexes = [positions.index(item) for item in to_sort]
    if all(i >= 0 for i in indexes):
        ordered = [item for _, item in sorted(zip(indexes, to_sort, strict=True), key=lambda p: p[0])]
    else:
        ordered = _insertion_sort(to_sort, indexes)
    return ordered + to_delete


def _insertion_sort(items: list[Any], indexes: list[int]) -> list[Any]:
    """Go's sort.SliceStable with upstream's comparator, which calls an unknown item "less"."""
    pairs = list(zip(indexes, items, strict=True))

    def less(a: tuple[int, Any], b: tuple[int, Any]) -> bool:
        return a[0] < b[0] if a[0] >= 0 and b[0] >= 0 else True

    for i in range(1, len(pairs)):
        j = i
        while j > 0 and less(pairs[j], pairs[j - 1]):
            pairs[j], pairs[j - 1] = pairs[j - 1], pairs[j]
            j -= 1
    return [item for _, item in pairs]


def _merge_sorted(
    left: list[Any], right: list[Any], server_order: list[Any], merge_key: str, is_map: bool
) -> list[Any]:
    """mergeSortedSlice: interleave server-only items (left) into patch items (right)."""
    positions = _Order(server_order, merge_key, is_map)
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li, ri = positions.index(left[i]), positions.index(right[j])
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def _normalize_element_order(
    patch: list[Any],
    server_only: list[Any],
    patch_order: list[Any],
    server_order: list[Any],
    merge_key: str,
    is_map: bool,
) -> list[Any]:
    patch = _normalize_slice_order(patch, patch_order, merge_key, is_map)
    server_only = _normalize_slice_order(server_only, server_order, merge_key, is_map)
    return _merge_sorted(server_only, patch, server_order, merge_key, is_map)


def _partition_primitives(items: list[Any], by: list[Any]) -> tuple[list[Any], list[Any]]:
    in_patch, server_only = [], []
    for item in items:
        (in_patch if any(_same(item, b) for b in by) else server_only).append(item)
    return in_patch, server_only


def _find_by_key(items: list[Any], key: str, value: Any) -> int:
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _SmpError(f"value for key {i} is not a map")
        if key in item and _same(item[key], value):
            return i
    return -1


def _partition_maps(items: list[Any], by: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    in_patch, server_only = [], []
    for item in items:
        if not isinstance(item, dict):
            raise _bad_arg_type("map[string]interface {}", item)
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        (in_patch if _find_by_key(by, merge_key, item[merge_key]) >= 0 else server_only).append(item)
    return in_patch, server_only


def _element_type(*lists: list[Any]) -> type:
    found: type | None = None
    for items in lists:
        for item in items:
            if found is None:
                found = type(item)
                if found is list:
                    raise _SmpError(ERR_LIST_OF_LISTS, 422)
            elif type(item) is not found:
                raise _SmpError(
                    "list element types are not identical: " + "[" + " ".join(_go_fmt(x) for x in lists) + "]"
                )
    if found is None:
        raise _SmpError("no elements in any of the given slices")
    return found


def _deduplicate(items: list[Any]) -> list[Any]:
    """deduplicateScalars, with its swap-with-last order (normalized afterwards anyway)."""
    s = list(items)
    length = len(s) - 1
    i = 0
    while i < length:
        j = i + 1
        while j <= length:
            if _same(s[i], s[j]):
                s[j] = s[length]
                s = s[:length]
                length -= 1
                j -= 1
            j += 1
        i += 1
    return s


def _remove_directives(value: Any) -> tuple[Any, bool]:
    if isinstance(value, dict):
        if DIRECTIVE in value:
            return None, False
        for k in list(value):
            kept, keep = _remove_directives(value[k])
            if keep:
                value[k] = kept
            else:
                del value[k]
        return value, True
    if isinstance(value, list):
        out = []
        for item in value:
            kept, keep = _remove_directives(item)
            if keep:
                out.append(kept)
        return out, True
    return value, True


def _discard_nulls(value: Any) -> None:
    if isinstance(value, dict):
        for k in list(value):
            if value[k] is None:
                del value[k]
            else:
                _discard_nulls(value[k])
    elif isinstance(value, list):
        for item in value:
            _discard_nulls(item)


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    if RETAIN_KEYS not in patch:
        return
    retain = patch.pop(RETAIN_KEYS)
    if not isinstance(retain, list):
        raise _bad_format(ERR_RETAIN_KEYS)
    keep = {k for k in retain if isinstance(k, str)}
    for k, v in patch.items():
        if v is None or k.startswith((DELETE_FROM_PRIMITIVE_LIST, SET_ELEMENT_ORDER)):
            continue
        if k not in keep:
            raise _bad_format(ERR_RETAIN_KEYS)
    for k in list(original):
        if k not in keep:
            del original[k]


def _validate_set_order(patch_list: list[Any], order: list[Any], merge_key: str) -> None:
    if not order or not patch_list:
        return
    items = patch_list
    if merge_key:
        for item in patch_list:
            if not isinstance(item, dict):
                raise _bad_arg_type("map[string]interface {}", item)
        items = [item for item in patch_list if item.get(DIRECTIVE) != "delete"]
    p = o = 0
    while p < len(items) and o < len(order):
        if isinstance(items[p], dict) and DIRECTIVE in items[p]:
            p += 1
            continue
        if _merge_key_equal(items[p], order[o], merge_key):
            p += 1
        o += 1
    if p < len(items) and o >= len(order):
        raise _SmpError(
            f"The order in patch list:\n{_go_fmt(patch_list)}\n doesn't match "
            f"{SET_ELEMENT_ORDER} list:\n{_go_fmt(order)}\n"
        )


def _merge_key_equal(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return _same(left, right)
    for item in (left, right):
        if not isinstance(item, dict):
            raise _bad_arg_type("map[string]interface {}", item)
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
    return _same(left[merge_key], right[merge_key])


def _merge_set_element_order(original: dict[str, Any], patch: dict[str, Any], schema: TypeMeta) -> None:
    """mergePatchIntoOriginal: lists that carry a $setElementOrder directive."""
    for key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise _bad_arg_type("[]interface {}", order)
        list_key = _extract_key(key, SET_ELEMENT_ORDER)
        found_original, found_patch = list_key in original, list_key in patch
        original_list: list[Any] = []
        patch_list: list[Any] = []
        if found_original:
            if not isinstance(original[list_key], list):
                raise _bad_arg_type("[]interface {}", original[list_key])
            original_list = original[list_key]
        if found_patch:
            if not isinstance(patch[list_key], list):
                raise _bad_arg_type("[]interface {}", patch[list_key])
            patch_list = patch[list_key]
        subschema, meta = schema.lookup(list_key)
        strategy = _strategy(meta)
        _validate_set_order(patch_list, order, meta.merge_key)
        if found_original and not found_patch:
            merged = original_list
        elif found_patch and not found_original:
            merged, _ = _remove_directives(patch_list)
        elif found_original and found_patch:
            merged = _merge_list_field(original_list, patch_list, subschema, strategy, meta.merge_key, False)
        else:
            continue
        if meta.merge_key:
            in_order, server_only = _partition_maps(merged, order, meta.merge_key)
        else:
            in_order, server_only = _partition_primitives(merged, order)
        is_map = _element_type(original_list, patch_list) is dict
        original[list_key] = _normalize_element_order(
            in_order, server_only, order, original_list, meta.merge_key, is_map
        )
        patch.pop(list_key, None)


def _merge_map(original: dict[str, Any] | None, patch: dict[str, Any], schema: TypeMeta) -> dict[str, Any]:
    if DIRECTIVE in patch:
        directive = patch[DIRECTIVE]
        if directive == "replace":
            del patch[DIRECTIVE]
            return patch
        if directive == "delete":
            return {}
        raise _SmpError(f"unknown patch type: {_directive_text(directive)} in map: {_go_fmt(patch)}")
    if original is None:
        original = {}
    _apply_retain_keys(original, patch)
    _merge_set_element_order(original, patch, schema)

    for key, patch_value in list(patch.items()):
        is_delete_list = False
        if key.startswith(DELETE_FROM_PRIMITIVE_LIST):
            key = _extract_key(key, DELETE_FROM_PRIMITIVE_LIST)
            is_delete_list = True
        if patch_value is None:
            original.pop(key, None)
            continue
        if key not in original or type(original[key]) is not type(patch_value):
            if not is_delete_list:
                _discard_nulls(patch_value)
                value, keep = _remove_directives(patch_value)
                if keep:
                    original[key] = value
                else:
                    original.pop(key, None)
            continue
        current = original[key]
        if isinstance(current, dict):
            subschema, meta = schema.lookup(key)
            if _strategy(meta) == "replace":
                original[key] = patch_value
            else:
                original[key] = _merge_map(current, patch_value, subschema)
        elif isinstance(current, list):
            subschema, meta = schema.lookup(key)
            original[key] = _merge_list_field(
                current, patch_value, subschema, _strategy(meta), meta.merge_key, is_delete_list
            )
        else:
            value, keep = _remove_directives(patch_value)
            if keep:
                original[key] = value
            else:
                del original[key]
    return original


def _merge_list_field(
    original: list[Any],
    patch: list[Any],
    schema: TypeMeta,
    strategy: str,
    merge_key: str,
    is_delete_list: bool,
) -> list[Any]:
    """mergeSliceHandler: only lists tagged patchStrategy=merge (or delete lists) merge."""
    if strategy == "merge" or is_delete_list:
        return _merge_list(original, patch, schema, merge_key, is_delete_list)
    return patch


def _merge_list(
    original: list[Any], patch: list[Any], schema: TypeMeta, merge_key: str, is_delete_list: bool
) -> list[Any]:
    if not original and not patch:
        return original
    is_map = _element_type(original, patch) is dict
    if not is_map:
        if is_delete_list:
            return [item for item in original if not any(_same(item, d) for d in patch)]
        merged = _deduplicate(original + patch)
    else:
        if not merge_key:
            raise _SmpError(f"cannot merge lists without merge key for {schema.name}")
        original, patch = _apply_list_directives(original, patch, merge_key)
        merged = _merge_items(list(original), patch, merge_key, schema)
    if not merge_key:
        in_patch, server_only = _partition_primitives(merged, patch)
    else:
        in_patch, server_only = _partition_maps(merged, patch, merge_key)
    return _normalize_element_order(in_patch, server_only, patch, original, merge_key, is_map)


def _apply_list_directives(
    original: list[Any], patch: list[Any], merge_key: str
) -> tuple[list[Any], list[Any]]:
    """mergeSliceWithSpecialElements: ``$patch: delete`` items and ``$patch: replace``."""
    plain: list[Any] = []
    replace = False
    for item in patch:
        if DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            original = [o for o in original if not (merge_key in o and _same(o[merge_key], item[merge_key]))]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise _SmpError("merging lists cannot yet be specified in the patch")
        else:
            raise _SmpError(f"unknown patch type: {_directive_text(directive)} in map: {_go_fmt(item)}")
    if replace:
        return plain, []
    return original, plain


def _merge_items(original: list[Any], patch: list[Any], merge_key: str, schema: TypeMeta) -> list[Any]:
    for item in patch:
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        i = _find_by_key(original, merge_key, item[merge_key])
        if i >= 0:
            original[i] = _merge_map(original[i], item, schema)
        else:
            original.append(item)
    return original


def strategic_merge_patch(doc: dict[str, Any], patch: Any, api_version: str, kind: str) -> dict[str, Any]:
    """Apply a strategic merge patch as kube-apiserver does for a built-in kind."""
    schema = patch_meta_for(api_version, kind)
    if schema is None:
        raise bad_request("strategic merge patch format is not supported")
    if patch is None:  # a JSON null decodes to a nil map: nothing to merge
        return copy.deepcopy(doc)
    if not isinstance(patch, dict):
        raise bad_request(
            f"json: cannot unmarshal {_json_kind(patch)} into Go value of type map[string]interface {{}}"
        )
    try:
        return _merge_map(copy.deepcopy(doc), copy.deepcopy(patch), schema)
    except _SmpError as e:
        if e.code == 400:
            raise bad_request(str(e)) from None
        if e.code == 422:
            raise _unprocessable(e) from e
        # Upstream passes other merge errors through untyped: a 500 whose reason is empty.
        raise StatusError(500, "", str(e)) from None
    except RecursionError:
        raise bad_request("patch nests too deeply") from None
