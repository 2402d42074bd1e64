"""Object schemas taken from the official ``kubernetes`` Python client's generated models.

The client's model classes mirror the Go API types field for field (``openapi_types`` gives each
attribute's type, ``attribute_map`` its JSON name), so they tell which fields a strict decoder
knows. This module uses them to:
- report unknown fields with the paths kube-apiserver's strict decoder (sigs.k8s.io/json) prints:
  ``spec.foo``, ``spec.ports[0].bar``, ``metadata.labelz``; map values add ``.key``;
- report duplicate fields the same way (``duplicate field "spec.type"``), from the raw JSON;
- drop unknown fields, as decoding into the Go type does when validation is not strict;
- give a JSON-schema-like tree per kind (type/properties/items/additionalProperties) from which
  an OpenAPI v3 document can be generated.

Fields typed ``object`` in the client (IntOrString, RawExtension, FieldsV1) have their own
decoders upstream, so anything is accepted inside them and nothing inside is checked.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kubernetes.client import models as client_models

from svcnet.api.errors import go_quote

__all__ = [
    "decode_error",
    "drop_unknown_fields",
    "duplicate_fields",
    "model_class",
    "schema_for",
    "strict_decoding_errors",
    "strict_decoding_message",
    "unknown_fields",
]

# The strict decoder keeps at most this many errors (sigs.k8s.io/json saveStrictError).
MAX_STRICT_ERRORS = 100


@dataclass(frozen=True)
class _Type:
    kind: str  # "model", "list", "map", "any", "intorstr", "scalar"
    model: type | None = None
    elem: _Type | None = None
    scalar: str = ""  # the client's name: str, int, bool, float, datetime, date, bytes


_ANY = _Type("any")
_INT_OR_STRING = _Type("intorstr")
_LIST_RE = re.compile(r"^(?:List|list)\[(.*)\]$")
_MAP_RE = re.compile(r"^(?:Dict\[str,\s*(.*)\]|dict\(str,\s*(.*)\))$")
_SCALARS = frozenset({"str", "int", "bool", "float", "datetime", "date", "bytes", "bytearray"})


def _parse_type(text: str) -> _Type:
    text = text.strip()
    if text == "object":
        return _ANY
    if text in _SCALARS:
        return _Type("scalar", scalar=text)
    match = _LIST_RE.match(text)
    if match:
        return _Type("list", elem=_parse_type(match.group(1)))
    match = _MAP_RE.match(text)
    if match:
        return _Type("map", elem=_parse_type(match.group(1) or match.group(2)))
    model = getattr(client_models, text, None)
    if model is None or not hasattr(model, "openapi_types"):
        return _ANY  # a type this client does not know: accept anything rather than guess
    return _Type("model", model=model)


@functools.cache
def _fields(model: type) -> dict[str, tuple[str, _Type]]:
    """JSON field name -> (Python attribute, type) of one model class, computed once."""
    out = {}
    for attr, type_text in model.openapi_types.items():
        typ = _parse_type(type_text)
        if typ.kind == "any" and _is_int_or_string(model, attr):
            typ = _INT_OR_STRING
        out[model.attribute_map[attr]] = (attr, typ)
    return out


# apiVersion/kind pairs whose client class is not "V1" + kind (several groups share a kind name).
_CLASS_OVERRIDES = {
    ("v1", "Event"): "CoreV1Event",
    ("events.k8s.io/v1", "Event"): "EventsV1Event",
}


@functools.cache
def model_class(api_version: str, kind: str) -> type | None:
    """The client's model class of a kind (e.g. v1 Service -> V1Service), or None."""
    name = _CLASS_OVERRIDES.get((api_version, kind))
    group, _, version = api_version.rpartition("/")
    version_part = version[:1].upper() + version[1:]
    candidates = [name] if name else []
    if group:
        candidates.append(group.split(".")[0].capitalize() + version_part + kind)
    else:
        candidates.append("Core" + version_part + kind)
    candidates.append(version_part + kind)
    for candidate in candidates:
        model = getattr(client_models, candidate, None)
        if model is not None and hasattr(model, "openapi_types"):
            return model
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _walk_unknown(value: Any, typ: _Type, path: str, out: list[str]) -> None:
    if len(out) >= MAX_STRICT_ERRORS:
        return
    if typ.kind == "model" and isinstance(value, dict):
        fields = _fields(typ.model)  # type: ignore[arg-type]
        for key, child in value.items():
            if key in fields:
                _walk_unknown(child, fields[key][1], _join(path, key), out)
            else:
                out.append(_join(path, key))
                if len(out) >= MAX_STRICT_ERRORS:
                    return
    elif typ.kind == "list" and isinstance(value, list):
        for i, item in enumerate(value):
            _walk_unknown(item, typ.elem, f"{path}[{i}]", out)  # type: ignore[arg-type]
    elif typ.kind == "map" and isinstance(value, dict):
        for key, child in value.items():
            _walk_unknown(child, typ.elem, _join(path, key), out)  # type: ignore[arg-type]


def unknown_fields(api_version: str, kind: str, obj: Any) -> list[str]:
    """Paths of the fields the strict decoder would call unknown, in document order.

    Returns [] for kinds the client has no model for (nothing can be said about them). At
    most 100 paths, as upstream keeps at most 100 strict errors.
    """
    model = model_class(api_version, kind)
    if model is None:
        return []
    out: list[str] = []
    _walk_unknown(obj, _Type("model", model=model), "", out)
    return out


def _drop(value: Any, typ: _Type) -> Any:
    if typ.kind == "model" and isinstance(value, dict):
        fields = _fields(typ.model)  # type: ignore[arg-type]
        return {k: _drop(v, fields[k][1]) for k, v in value.items() if k in fields}
    if typ.kind == "list" and isinstance(value, list):
        return [_drop(item, typ.elem) for item in value]  # type: ignore[arg-type]
    if typ.kind == "map" and isinstance(value, dict):
        return {k: _drop(v, typ.elem) for k, v in value.items()}  # type: ignore[arg-type]
    return copy.deepcopy(value)


def drop_unknown_fields(api_version: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` without the fields its Go type lacks (what a non-strict decode keeps)."""
    model = model_class(api_version, kind)
    if model is None:
        return copy.deepcopy(obj)
    return _drop(obj, _Type("model", model=model))


# ---------------------------------------------------------------------------------------------
# Type errors: what encoding/json says when a value has the wrong JSON type for its Go field.
# ---------------------------------------------------------------------------------------------

# The client says only "int"; these fields are int64 in the Go types, every other int is int32.
_INT64_FIELDS = frozenset(
    {
        "generation",
        "observedGeneration",
        "deletionGracePeriodSeconds",
        "terminationGracePeriodSeconds",
        "activeDeadlineSeconds",
        "tolerationSeconds",
        "runAsUser",
        "runAsGroup",
        "fsGroup",
        "supplementalGroups",
        "expirationSeconds",
        "seconds",
    }
)
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_CLASS_NAME_RE = re.compile(r"^(?:[A-Z][a-z]+)?(V\d+(?:alpha\d+|beta\d+)?)(\w+)$")


def _go_struct_name(model: type) -> tuple[str, str]:
    """(package-qualified type, bare struct name): V1ServiceSpec -> ("v1.ServiceSpec", "ServiceSpec")."""
    match = _CLASS_NAME_RE.match(model.__name__)
    if not match:
        return model.__name__, model.__name__
    return f"{match.group(1).lower()}.{match.group(2)}", match.group(2)


def _go_type_name(typ: _Type, field: str) -> str:
    if typ.kind == "model":
        return _go_struct_name(typ.model)[0]  # type: ignore[arg-type]
    if typ.kind == "list":
        return "[]" + _go_type_name(typ.elem, field)  # type: ignore[arg-type]
    if typ.kind == "map":
        return "map[string]" + _go_type_name(typ.elem, field)  # type: ignore[arg-type]
    if typ.scalar == "int":
        return "int64" if field in _INT64_FIELDS else "int32"
    return {"str": "string", "bool": "bool", "float": "float64"}.get(typ.scalar, "string")


def _json_value_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return f"number {value}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _custom_decoder_error(value: Any, typ: _Type) -> str | None:
    """Errors of types with their own UnmarshalJSON (IntOrString, metav1.Time). They decode
    with the standard library, whose errors the API server's decoder passes on without the
    field context."""
    if value is None:
        return None
    is_int32 = isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31
    if typ.kind == "intorstr" and not isinstance(value, str) and not is_int32:
        return f"json: cannot unmarshal {_json_value_kind(value)} into Go value of type int32"
    if typ.scalar in ("datetime", "date") and not isinstance(value, str):
        kind = "number" if _json_value_kind(value).startswith("number") else _json_value_kind(value)
        return f"json: cannot unmarshal {kind} into Go value of type string"
    return None


def _type_mismatch(value: Any, typ: _Type, field: str) -> bool:
    if (
        value is None
        or typ.kind in ("any", "intorstr")
        or typ.scalar in ("datetime", "date", "bytes", "bytearray")
    ):
        return False  # null decodes into anything; these types have their own decoders
    if typ.kind == "model" or typ.kind == "map":
        return not isinstance(value, dict)
    if typ.kind == "list":
        return not isinstance(value, list)
    if typ.scalar == "str":
        return not isinstance(value, str)
    if typ.scalar == "bool":
        return not isinstance(value, bool)
    if typ.scalar == "float":
        return isinstance(value, bool) or not isinstance(value, int | float)
    if typ.scalar == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return True
        low, high = _INT_RANGES[_go_type_name(typ, field)]
        return not low <= value <= high
    return False


def _first_type_error(value: Any, typ: _Type, struct: str, stack: list[str]) -> str | None:
    field = stack[-1] if stack else ""
    custom = _custom_decoder_error(value, typ)
    if custom:
        return custom
    if _type_mismatch(value, typ, field):
        kind = _json_value_kind(value)
        if typ.scalar == "int" and isinstance(value, int) and not isinstance(value, bool):
            kind = f"number {value}"
        elif not (typ.kind == "scalar" and typ.scalar in ("int", "float")) and kind.startswith("number"):
            kind = "number"
        type_name = _go_type_name(typ, field)
        if stack:
            return (
                f"json: cannot unmarshal {kind} into Go struct field {struct}.{'.'.join(stack)} "
                f"of type {type_name}"
            )
        return f"json: cannot unmarshal {kind} into Go value of type {type_name}"
    if typ.kind == "model" and isinstance(value, dict):
        fields = _fields(typ.model)  # type: ignore[arg-type]
        name = _go_struct_name(typ.model)[1]  # type: ignore[arg-type]
        for key, child in value.items():
            if key in fields:
                found = _first_type_error(child, fields[key][1], name, [*stack, key])
                if found:
                    return found
    elif typ.kind == "list" and isinstance(value, list):
        for item in value:  # Go's error context has no index for list items
            found = _first_type_error(item, typ.elem, struct, stack)  # type: ignore[arg-type]
            if found:
                return found
    elif typ.kind == "map" and isinstance(value, dict):
        for child in value.values():  # nor a key for map values
            found = _first_type_error(child, typ.elem, struct, stack)  # type: ignore[arg-type]
            if found:
                return found
    return None


def decode_error(api_version: str, kind: str, obj: Any) -> str | None:
    """The first wrong-JSON-type error Go's decoder would report for ``obj``, or None.

    E.g. ``json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of
    type int32``; kube-apiserver answers 400 with ``<Kind> in version "<v>" cannot be handled as
    a <Kind>: `` before it. Values with their own decoders (IntOrString, Time, Quantity as
    strings, RawExtension) are not checked; int32 versus int64 comes from a table of names.
    """
    model = model_class(api_version, kind)
    if model is None:
        return None
    return _first_type_error(obj, _Type("model", model=model), "", [])


# ---------------------------------------------------------------------------------------------
# Duplicate fields: need the raw JSON, since a dict keeps only the last of repeated keys.
# ---------------------------------------------------------------------------------------------


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object as its (key, value) pairs in document order, duplicates included."""


def _parse_pairs(raw: bytes | str) -> Any:
    return json.loads(raw, object_pairs_hook=_Pairs)


def _walk_strict(value: Any, typ: _Type | None, path: str, out: list[str], seen: set[str]) -> None:
    """Unknown and duplicate fields in document order. ``typ`` None: no schema, check all maps."""

    def save(message: str) -> None:
        if len(out) < MAX_STRICT_ERRORS and message not in seen:
            seen.add(message)
            out.append(message)

    if typ is not None and typ.kind in ("any", "intorstr", "scalar"):
        return  # custom decoders (IntOrString, RawExtension, Time): nothing inside is checked
    if isinstance(value, _Pairs):
        if typ is not None and typ.kind == "list":
            return
        fields = _fields(typ.model) if typ is not None and typ.kind == "model" else None  # type: ignore[arg-type]
        keys: set[str] = set()
        for key, child in value:
            child_path = _join(path, key)
            if fields is not None and key not in fields:
                save(f"unknown field {go_quote(child_path)}")
                continue  # the decoder skips an unknown field's value unread
            if key in keys:
                save(f"duplicate field {go_quote(child_path)}")
            keys.add(key)
            if fields is not None:
                child_type: _Type | None = fields[key][1]
            elif typ is not None and typ.kind == "map":
                child_type = typ.elem
            else:
                child_type = None
            _walk_strict(child, child_type, child_path, out, seen)
    elif isinstance(value, list):
        if typ is not None and typ.kind != "list":
            return
        elem = typ.elem if typ is not None else None
        for i, item in enumerate(value):
            _walk_strict(item, elem, f"{path}[{i}]", out, seen)


def strict_decoding_errors(
    raw: bytes | str, api_version: str | None = None, kind: str | None = None
) -> list[str]:
    """``unknown field "p"`` / ``duplicate field "p"`` messages for a raw JSON body, in order.

    With no (known) kind only duplicates are reported, anywhere in the document. Raises
    ``ValueError`` when ``raw`` is not JSON.
    """
    model = model_class(api_version, kind) if api_version and kind else None
    out: list[str] = []
    _walk_strict(_parse_pairs(raw), _Type("model", model=model) if model else None, "", out, set())
    return out


def duplicate_fields(raw: bytes | str, api_version: str | None = None, kind: str | None = None) -> list[str]:
    """Paths of keys that appear twice in one JSON object (``duplicate field "x"`` upstream).

    Given a kind, only the parts the Go type decodes are checked, as upstream does (nothing
    inside unknown fields or IntOrString/RawExtension values).
    """
    prefix = "duplicate field "
    return [
        json.loads(m[len(prefix) :])
        for m in strict_decoding_errors(raw, api_version, kind)
        if m.startswith(prefix)
    ]


def strict_decoding_message(paths: Iterable[str], duplicates: Iterable[str] = ()) -> str:
    """``strict decoding error: unknown field "spec.foo", duplicate field "x"`` (runtime/error.go)."""
    messages = [f"unknown field {go_quote(p)}" for p in paths]
    messages += [f"duplicate field {go_quote(p)}" for p in duplicates]
    return join_strict_errors(messages)


def join_strict_errors(messages: Iterable[str]) -> str:
    return "strict decoding error: " + ", ".join(messages)


# ---------------------------------------------------------------------------------------------
# JSON-schema-like trees for OpenAPI
# ---------------------------------------------------------------------------------------------

_SCALAR_SCHEMAS: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},  # the client does not say int32 or int64
    "bool": {"type": "boolean"},
    "float": {"type": "number"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "bytes": {"type": "string", "format": "byte"},
    "bytearray": {"type": "string", "format": "byte"},
}


def _is_int_or_string(model: type, attr: str) -> bool:
    field = getattr(model, "model_fields", {}).get(attr)
    text = str(getattr(field, "annotation", ""))
    return "int" in text and "str" in text


def _type_schema(typ: _Type, stack: tuple[type, ...]) -> dict[str, Any]:
    if typ.kind == "scalar":
        return dict(_SCALAR_SCHEMAS.get(typ.scalar, {"type": "string"}))
    if typ.kind == "list":
        return {"type": "array", "items": _type_schema(typ.elem, stack)}  # type: ignore[arg-type]
    if typ.kind == "map":
        return {"type": "object", "additionalProperties": _type_schema(typ.elem, stack)}  # type: ignore[arg-type]
    if typ.kind == "model":
        return _model_schema(typ.model, stack)  # type: ignore[arg-type]
    if typ.kind == "intorstr":
        return {"x-kubernetes-int-or-string": True}
    return {"x-kubernetes-preserve-unknown-fields": True}


def _model_schema(model: type, stack: tuple[type, ...]) -> dict[str, Any]:
    if model in stack:  # recursive types (JSONSchemaProps) end in an open object
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    stack = (*stack, model)
    properties: dict[str, Any] = {}
    model_fields = getattr(model, "model_fields", {})
    for json_name, (attr, typ) in _fields(model).items():
        prop = _type_schema(typ, stack)
        description = getattr(model_fields.get(attr), "description", None)
        if description:
            prop["description"] = description
        properties[json_name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    description = _model_description(model)
    if description:
        schema["description"] = description
    return schema


def _model_description(model: type) -> str:
    # The generated docstring is the type's description followed by a fixed "Attributes:" block.
    text = (model.__doc__ or "").split("\n    Attributes:")[0].strip()
    return "" if text.startswith(model.__name__ + "(") else text


@functools.cache
def _cached_schema(model: type) -> str:
    return json.dumps(_model_schema(model, ()))


def schema_for(api_version: str, kind: str) -> dict[str, Any] | None:
    """The kind's schema as nested ``type``/``properties``/``items``/``additionalProperties``.

    Field descriptions come from the client models. None for kinds the client lacks.
    """
    model = model_class(api_version, kind)
    if model is None:
        return None
    return json.loads(_cached_schema(model))
