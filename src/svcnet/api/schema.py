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

from svcnet.api.selectors import go_quote

__all__ = [
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
    kind: str  # "model", "list", "map", "any", "scalar"
    model: type | None = None
    elem: _Type | None = None
    scalar: str = ""  # the client's name: str, int, bool, float, datetime, date, bytes


_ANY = _Type("any")
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
    return {
        model.attribute_map[attr]: (attr, _parse_type(type_text))
        for attr, type_text in model.openapi_types.items()
    }


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

    if typ is not None and typ.kind in ("any", "scalar"):
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
    return {"x-kubernetes-preserve-unknown-fields": True}


def _model_schema(model: type, stack: tuple[type, ...]) -> dict[str, Any]:
    if model in stack:  # recursive types (JSONSchemaProps) end in an open object
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    stack = (*stack, model)
    properties: dict[str, Any] = {}
    model_fields = getattr(model, "model_fields", {})
    for json_name, (attr, typ) in _fields(model).items():
        if typ.kind == "any" and _is_int_or_string(model, attr):
            prop: dict[str, Any] = {"x-kubernetes-int-or-string": True}
        else:
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
