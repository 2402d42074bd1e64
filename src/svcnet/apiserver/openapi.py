"""OpenAPI v3: the /openapi/v3 index and one document per group version.

Generated from the official client's models (through api/schema.py's field tables), shaped the
way kube-apiserver publishes its own v3 documents, because kubectl reads them in three places:
- `kubectl create/apply/edit` look for a PATCH operation carrying the object's
  ``x-kubernetes-group-version-kind`` and a ``fieldValidation`` query parameter; when found they
  leave validation to the server (``?fieldValidation=Strict``) instead of falling back to the
  protobuf OpenAPI v2 document, which svcnet does not serve;
- client-side apply builds its three-way strategic merge patch from ``components.schemas``
  (``x-kubernetes-patch-strategy`` / ``x-kubernetes-patch-merge-key``), found through the
  ``x-kubernetes-group-version-kind`` of the kind's schema;
- `kubectl explain` renders the schemas, following ``$ref`` (wrapped in ``allOf`` as upstream
  does, so a reference can carry its own description) to name types like ``<[]ServicePort>``.

Type names follow the Go packages (``io.k8s.api.core.v1.Service``,
``io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta``). Enums and Quantity are not modelled by
the client, so those fields are plain strings here.
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Any

import orjson

from svcnet.api import patch as patchlib
from svcnet.api import resources, schema
from svcnet.api.apply import LIST_MAP_KEYS  # server-side apply's table: explain and SSA agree
from svcnet.api.resources import Resource

REF_PREFIX = "#/components/schemas/"
META_PACKAGE = "io.k8s.apimachinery.pkg.apis.meta.v1"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
# Structs of k8s.io/apimachinery/pkg/apis/meta/v1 the served kinds reach.
_META_STRUCTS = frozenset(
    {
        "ObjectMeta",
        "ListMeta",
        "LabelSelector",
        "LabelSelectorRequirement",
        "OwnerReference",
        "ManagedFieldsEntry",
        "Condition",
        "Status",
        "StatusDetails",
        "StatusCause",
        "DeleteOptions",
        "Preconditions",
    }
)
_CLASS_RE = re.compile(r"^(?:[A-Z][a-z]+)?V(\d+(?:alpha\d+|beta\d+)?)(\w+)$")
SCALE_GVK = {"group": "autoscaling", "version": "v1", "kind": "Scale"}

_QUERY_DESCRIPTIONS = {
    "dryRun": "When present, indicates that modifications should not be persisted. An invalid or "
    "unrecognized dryRun directive will result in an error response and no further processing of "
    "the request. Valid values are: - All: all dry run stages will be processed",
    "fieldManager": "fieldManager is a name associated with the actor or entity that is making these "
    "changes. The value must be less than or 128 characters long, and only contain printable "
    "characters, as defined by https://golang.org/pkg/unicode/#IsPrint.",
    "fieldValidation": "fieldValidation instructs the server on how to handle objects in the request "
    "(POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will "
    "ignore any unknown fields that are silently dropped from the object, and will ignore all but the "
    "last duplicate field that the decoder encounters. - Warn: This will send a warning via the "
    "standard warning response header for each unknown field that is dropped from the object, and for "
    "each duplicate field that is encountered. The request will still succeed if there are no other "
    "errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - "
    "Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped "
    "from the object, or if any duplicate fields are present. The error returned from the server will "
    "contain all unknown and duplicate fields encountered.",
    "force": 'Force is going to "force" Apply requests. It means user will re-acquire conflicting '
    "fields owned by other people. Force flag must be unset for non-apply patch requests.",
}


def go_struct_name(model: type) -> str:
    """V1ServiceSpec -> ServiceSpec, DiscoveryV1EndpointPort -> EndpointPort."""
    match = _CLASS_RE.match(model.__name__)
    return match.group(2) if match else model.__name__


def _group_package(group: str) -> str:
    return f"io.k8s.api.{group.split('.')[0] if group else 'core'}.v1"


def _model_children(model: type) -> list[type]:
    out = []
    for _, typ in schema._fields(model).values():
        while typ.kind in ("list", "map"):
            typ = typ.elem
        if typ.kind == "model":
            out.append(typ.model)
    return out


def _reachable(roots: list[type]) -> list[type]:
    seen: dict[type, None] = {}
    stack = list(roots)
    while stack:
        model = stack.pop()
        if model in seen:
            continue
        seen[model] = None
        stack.extend(_model_children(model))
    return list(seen)


@functools.cache
def _core_models() -> frozenset[type]:
    roots = [schema.model_class(r.api_version, r.kind) for r in resources.RESOURCES if r.group == ""]
    extra = [schema.model_class("v1", kind) for kind in ("PersistentVolumeClaim", "PodTemplate")]
    return frozenset(_reachable([m for m in [*roots, *extra] if m is not None]))


def type_name(model: type, group: str) -> str:
    """The OpenAPI component name of a model reached from a kind of ``group``."""
    struct = go_struct_name(model)
    if struct in _META_STRUCTS:
        return f"{META_PACKAGE}.{struct}"
    if model in _core_models():
        return f"io.k8s.api.core.v1.{struct}"
    return f"{_group_package(group)}.{struct}"


@functools.cache
def _patch_tags() -> dict[str, dict[str, patchlib.PatchMeta]]:
    """Go struct name -> field -> SMP tags, from api/patch.py's tables for every served kind."""
    out: dict[str, dict[str, patchlib.PatchMeta]] = {}

    def walk(meta: patchlib.TypeMeta, depth: int) -> None:
        if depth > 12 or not meta.name:
            return
        fields = out.setdefault(meta.name, {})
        for name, field in meta.fields.items():
            if field.strategies:
                fields[name] = field
            if field.schema is not None:
                walk(field.schema, depth + 1)

    for r in resources.RESOURCES:
        tree = patchlib.patch_meta_for(r.api_version, r.kind)
        if tree is not None:
            walk(tree, 0)
    return out


def list_semantics(struct: str, field: str) -> tuple[str, tuple[str, ...]]:
    """(x-kubernetes-list-type, map keys) of a list field: "map" for merge-keyed lists, "set"
    for merged primitive lists, "atomic" otherwise (upstream's defaults for untagged lists)."""
    tags = _patch_tags().get(struct, {}).get(field)
    if tags is None or "merge" not in tags.strategies:
        return "atomic", ()
    if not tags.merge_key:
        return "set", ()
    return "map", LIST_MAP_KEYS.get((struct, field), (tags.merge_key,))


def _ref(name: str, description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"allOf": [{"$ref": REF_PREFIX + name}]}
    if description:
        out["description"] = description
    return out


class _Builder:
    """Collects the component schemas of one group version."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.schemas: dict[str, dict[str, Any]] = {}

    def type_schema(self, typ: Any) -> dict[str, Any]:
        if typ.kind == "model":
            return _ref(self.model(typ.model), "")
        if typ.kind == "list":
            return {"type": "array", "items": self.type_schema(typ.elem)}
        if typ.kind == "map":
            return {"type": "object", "additionalProperties": self.type_schema(typ.elem)}
        if typ.kind == "intorstr":
            self.schemas.setdefault(
                INT_OR_STRING,
                {
                    "description": "IntOrString is a type that can hold an int32 or a string.  When used in "
                    "JSON or YAML marshalling and unmarshalling, it produces or consumes the inner type.  "
                    "This allows you to have, for example, a JSON field that can accept a name or number.",
                    "format": "int-or-string",
                    "type": "string",
                },
            )
            return _ref(INT_OR_STRING)
        if typ.kind == "scalar":
            return {
                "str": {"type": "string"},
                "int": {"type": "integer", "format": "int32"},
                "bool": {"type": "boolean"},
                "float": {"type": "number", "format": "double"},
                "datetime": {"type": "string", "format": "date-time"},
                "date": {"type": "string", "format": "date"},
            }.get(typ.scalar, {"type": "string", "format": "byte"}).copy()
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}

    def model(self, model: type) -> str:
        name = type_name(model, self.group)
        if name in self.schemas:
            return name
        struct = go_struct_name(model)
        out: dict[str, Any] = {"type": "object"}
        self.schemas[name] = out  # placed first: recursive types end at the reference
        description = schema._model_description(model)
        if description:
            out["description"] = description
        pyd = getattr(model, "model_fields", {})
        properties: dict[str, Any] = {}
        required: list[str] = []
        for json_name, (attr, typ) in schema._fields(model).items():
            prop = self.type_schema(typ)
            field = pyd.get(attr)
            text = getattr(field, "description", None)
            if text:
                prop["description"] = text
            if field is not None and field.is_required():
                required.append(json_name)
            if typ.kind == "model":
                prop["default"] = {}
            if typ.kind == "list":
                list_type, keys = list_semantics(struct, json_name)
                if list_type != "atomic" or typ.elem.kind != "model":
                    prop["x-kubernetes-list-type"] = list_type
                if keys:
                    prop["x-kubernetes-list-map-keys"] = list(keys)
            tags = _patch_tags().get(struct, {}).get(json_name)
            if tags is not None:
                if tags.merge_key:
                    prop["x-kubernetes-patch-merge-key"] = tags.merge_key
                prop["x-kubernetes-patch-strategy"] = ",".join(tags.strategies)
            properties[json_name] = prop
        out["properties"] = properties
        if required:
            out["required"] = sorted(required)
        return name


def _gvk(r: Resource) -> dict[str, str]:
    return {"group": r.group, "version": r.version, "kind": r.kind}


def _query(name: str, type_: str = "string") -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "schema": {"type": type_, "uniqueItems": True}}
    if name in _QUERY_DESCRIPTIONS:
        param["description"] = _QUERY_DESCRIPTIONS[name]
    return param


def _path_param(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": f"{name} of the resource"
        if name == "name"
        else "object name and auth scope, such as for teams and projects",
        "schema": {"type": "string", "uniqueItems": True},
    }


def _content(ref: str) -> dict[str, Any]:
    body = {"schema": {"$ref": REF_PREFIX + ref}}
    return {"application/json": body, "application/yaml": body}


_PATCH_CONTENT = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)


def _operations(r: Resource, kind_ref: str, list_ref: str, scale_ref: str | None) -> dict[str, Any]:
    prefix = f"/api/{r.version}" if not r.group else f"/apis/{r.group}/{r.version}"
    scope = "Namespaced" if r.namespaced else ""
    ns = "/namespaces/{namespace}" if r.namespaced else ""
    gvk = _gvk(r)
    tag = (r.group.split(".")[0] if r.group else "core") + r.version.capitalize()
    ns_params = [_path_param("namespace")] if r.namespaced else []
    write_params = [_query("dryRun"), _query("fieldManager"), _query("fieldValidation")]

    def op(
        action: str,
        verb: str,
        kind: str,
        ref: str,
        params: list[dict[str, Any]],
        body: bool = False,
        patch: bool = False,
        g: dict[str, str] = gvk,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tags": [tag],
            "operationId": f"{verb}{tag[0].upper()}{tag[1:]}{scope}{kind}",
            "parameters": params,
            "responses": {"200": {"description": "OK", "content": _content(ref)}},
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": g,
        }
        if body:
            out["requestBody"] = {"content": _content(ref), "required": True}
        if patch:
            schema_ = {"schema": {"$ref": REF_PREFIX + f"{META_PACKAGE}.Patch"}}
            out["requestBody"] = {"content": dict.fromkeys(_PATCH_CONTENT, schema_), "required": True}
        return out

    item_ops = {
        "get": op("get", "read", r.kind, kind_ref, []),
        "put": op("put", "replace", r.kind, kind_ref, list(write_params), body=True),
        "patch": op(
            "patch", "patch", r.kind, kind_ref, [*write_params, _query("force", "boolean")], patch=True
        ),
        "delete": op("delete", "delete", r.kind, f"{META_PACKAGE}.Status", [_query("dryRun")]),
        "parameters": [_path_param("name"), *ns_params],
    }
    list_ops = {
        "get": op("list", "list", r.kind, list_ref, [_query("labelSelector"), _query("fieldSelector")]),
        "post": op("post", "create", r.kind, kind_ref, list(write_params), body=True),
        "delete": op("deletecollection", "deleteCollection", r.kind, f"{META_PACKAGE}.Status", []),
        "parameters": ns_params,
    }
    paths = {f"{prefix}{ns}/{r.plural}": list_ops, f"{prefix}{ns}/{r.plural}/{{name}}": item_ops}
    for sub in r.subresources:
        if sub not in ("status", "scale"):
            continue
        ref, g = (scale_ref, SCALE_GVK) if sub == "scale" else (kind_ref, gvk)
        assert ref is not None
        suffix = "Scale" if sub == "scale" else "Status"
        paths[f"{prefix}{ns}/{r.plural}/{{name}}/{sub}"] = {
            "get": op("get", "read", r.kind + suffix, ref, [], g=g),
            "put": op("put", "replace", r.kind + suffix, ref, list(write_params), body=True, g=g),
            "patch": op(
                "patch",
                "patch",
                r.kind + suffix,
                ref,
                [*write_params, _query("force", "boolean")],
                patch=True,
                g=g,
            ),
            "parameters": [_path_param("name"), *ns_params],
        }
    return paths


def _doc_key(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


@functools.cache
def _document_bytes(group: str, version: str) -> bytes | None:
    members = [r for r in resources.RESOURCES if r.group == group and r.version == version]
    if not members:
        return None
    builder = _Builder(group)
    paths: dict[str, Any] = {}
    for r in members:
        model = schema.model_class(r.api_version, r.kind)
        list_model = schema.model_class(r.api_version, r.list_kind)
        if model is None or list_model is None:
            continue
        kind_ref = builder.model(model)
        list_ref = builder.model(list_model)
        builder.schemas[kind_ref]["x-kubernetes-group-version-kind"] = [_gvk(r)]
        builder.schemas[list_ref]["x-kubernetes-group-version-kind"] = [
            {"group": r.group, "version": r.version, "kind": r.list_kind}
        ]
        scale_ref = None
        if "scale" in r.subresources:
            scale_model = schema.model_class("autoscaling/v1", "Scale")
            if scale_model is not None:
                builder.group = "autoscaling"  # Scale and its parts live in autoscaling/v1
                scale_ref = builder.model(scale_model)
                builder.group = group
                builder.schemas[scale_ref]["x-kubernetes-group-version-kind"] = [SCALE_GVK]
        paths.update(_operations(r, kind_ref, list_ref, scale_ref))
    builder.schemas[f"{META_PACKAGE}.Patch"] = {
        "type": "object",
        "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH "
        "request body.",
    }
    status_model = schema.model_class("v1", "Status")
    if status_model is not None:
        builder.model(status_model)
    doc = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {
            "schemas": dict(sorted(builder.schemas.items())),
            "securitySchemes": {
                "BearerToken": {
                    "type": "apiKey",
                    "description": "Bearer Token authentication",
                    "name": "authorization",
                    "in": "header",
                }
            },
        },
    }
    return orjson.dumps(doc)


def document(group: str, version: str) -> bytes | None:
    """The OpenAPI v3 document of one group version as JSON bytes, or None."""
    return _document_bytes(group, version)


def document_hash(group: str, version: str) -> str:
    data = _document_bytes(group, version) or b""
    return hashlib.sha512(data).hexdigest().upper()


@functools.cache
def index() -> dict[str, Any]:
    """/openapi/v3: where each group version's document is, with the content hash in the URL
    (kubectl caches documents by that URL)."""
    paths = {}
    for group, versions in resources.groups().items():
        for version in versions:
            key = _doc_key(group, version)
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={document_hash(group, version)}"}
    return {"paths": paths}


def parse_doc_path(tail: str) -> tuple[str, str] | None:
    """ "api/v1" -> ("", "v1"); "apis/apps/v1" -> ("apps", "v1"); else None."""
    parts = tail.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "api":
        return "", parts[1]
    if len(parts) == 3 and parts[0] == "apis":
        return parts[1], parts[2]
    return None


# ---- OpenAPI v2: an empty document -------------------------------------------------------------
#
# kubectl falls back to v2 when the v3 documents have no PATCH operation for a kind, which is
# always the case for a `kind: List` manifest. Against kube-apiserver the v2 document has no
# operation for List either, so kubectl validates the List's items client-side against the
# v2 definitions, skipping kinds it finds none for, and the server still validates strictly
# (`fieldValidation=Strict`). An empty v2 document gives exactly that outcome; without one the
# download fails and so does the command. The real schemas are in the v3 documents.

V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
# The reply's type has no "@" (which Go's mime parser rejects), as kube-openapi replies.
V2_PROTOBUF_REPLY = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
V2_INFO = {"title": "Kubernetes", "version": "v1.32.0"}


def _proto_string(field: int, text: str) -> bytes:
    data = text.encode()
    assert len(data) < 128  # one-byte length is enough for these fields
    return bytes([(field << 3) | 2, len(data)]) + data


def v2_protobuf() -> bytes:
    """gnostic openapi_v2.Document{swagger: "2.0", info: {title, version}}."""
    info = _proto_string(1, V2_INFO["title"]) + _proto_string(2, V2_INFO["version"])
    return _proto_string(1, "2.0") + bytes([(2 << 3) | 2, len(info)]) + info


def v2_json() -> dict[str, Any]:
    return {"swagger": "2.0", "info": V2_INFO, "paths": {}, "definitions": {}}
