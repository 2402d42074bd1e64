"""Small helpers on object JSON: timestamps, copies, the storage encoding, type checks."""

from __future__ import annotations

import datetime
from typing import Any

import orjson

from svcnet.api import errors
from svcnet.api.resources import Resource


def now_rfc3339(offset_seconds: int = 0) -> str:
    """metav1.Time as the API serialises it: RFC 3339, second precision, UTC."""
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=offset_seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def deep_copy(obj: Any) -> Any:
    return orjson.loads(orjson.dumps(obj))


def encode_for_store(obj: dict[str, Any]) -> bytes:
    """The stored form: the object without metadata.resourceVersion (the revision is the RV)."""
    metadata = obj["metadata"]
    rv = metadata.pop("resourceVersion", None)
    try:
        return orjson.dumps(obj)
    finally:
        if rv is not None:
            metadata["resourceVersion"] = rv


def without_rv(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = {k: v for k, v in obj.get("metadata", {}).items() if k != "resourceVersion"}
    return {**obj, "metadata": metadata}


def metadata_of(obj: dict[str, Any], resource: Resource) -> dict[str, Any]:
    """obj["metadata"], created when absent; a non-object is a decoding error as in Go."""
    metadata = obj.get("metadata")
    if metadata is None:
        metadata = obj["metadata"] = {}
    if not isinstance(metadata, dict):
        raise cannot_handle(
            resource,
            obj,
            f"json: cannot unmarshal {json_kind(metadata)} into Go struct "
            f"field {resource.kind}.metadata of type v1.ObjectMeta",
        )
    for name in ("name", "generateName", "namespace", "resourceVersion", "uid"):
        value = metadata.get(name)
        if value is not None and not isinstance(value, str):
            raise cannot_handle(
                resource,
                obj,
                f"json: cannot unmarshal {json_kind(value)} into Go struct "
                f"field ObjectMeta.metadata.{name} of type string",
            )
    for name in ("labels", "annotations"):
        value = metadata.get(name)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise cannot_handle(
                resource,
                obj,
                f"json: cannot unmarshal {json_kind(value)} into Go struct "
                f"field ObjectMeta.metadata.{name} of type map[string]string",
            )
    finalizers = metadata.get("finalizers")
    if finalizers is not None and (
        not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers)
    ):
        raise cannot_handle(
            resource,
            obj,
            "json: cannot unmarshal into Go struct field ObjectMeta.metadata.finalizers of type []string",
        )
    return metadata


def json_kind(value: Any) -> str:
    """encoding/json's word for a decoded value in "json: cannot unmarshal X into ..." errors."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "null"


def cannot_handle(resource: Resource, obj: Any, detail: str) -> errors.StatusError:
    """400 for a body that parsed as JSON but does not fit the kind (transformDecodeError)."""
    kind = obj.get("kind") if isinstance(obj, dict) and isinstance(obj.get("kind"), str) else resource.kind
    version = resource.version
    return errors.bad_request(
        f'{kind} in version "{version}" cannot be handled as a {resource.kind}: {detail}'
    )
