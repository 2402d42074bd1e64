"""Request bodies in, JSON out: reading with a size cap, JSON/YAML decoding with duplicate
field detection, query parameter parsing as Go's strconv does, and Status/JSON replies."""

from __future__ import annotations

import datetime
import json
from typing import Any

import orjson
import yaml
from aiohttp import web

from svcnet.api import errors
from svcnet.api.errors import StatusError
from svcnet.apiserver.objectmeta import json_kind

JSON_TYPES = ("application/json",)
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")
# YAML aliases can make a small document expand exponentially; Go's yaml decoder caps this
# too. A JSON-shaped copy with a node budget keeps expansion bounded.
_YAML_NODE_BUDGET = 1_000_000


def media_type(request: web.Request) -> str:
    raw = request.headers.get("Content-Type", "")
    return raw.split(";", 1)[0].strip().lower()


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, or 413 when it is (or claims to be) larger than ``limit``."""
    length = request.content_length
    if length is not None and length > limit:
        raise errors.request_entity_too_large(limit)
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise errors.request_entity_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


class _Pairs(list):
    """A JSON object kept as its key/value pairs, so duplicate keys can be reported by path."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def _has_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateSeen
    return obj


class _DuplicateSeen(Exception):
    pass


def _duplicate_paths(node: Any, path: str, out: list[str]) -> None:
    if isinstance(node, _Pairs):
        seen: set[str] = set()
        for key, value in node:
            child = f"{path}.{key}" if path else key
            if key in seen and child not in out:
                out.append(child)
            seen.add(key)
            _duplicate_paths(value, child, out)
    elif isinstance(node, list):
        for item in node:
            _duplicate_paths(item, path, out)


def _pairs_to_dict(node: Any) -> Any:
    if isinstance(node, _Pairs):
        return {k: _pairs_to_dict(v) for k, v in node}
    if isinstance(node, list):
        return [_pairs_to_dict(v) for v in node]
    return node


def decode_json(body: bytes) -> tuple[Any, list[str]]:
    """(value, duplicate field paths). Raises ValueError/RecursionError on bad JSON."""
    text = body.decode("utf-8")
    try:
        return json.loads(text, object_pairs_hook=_has_duplicates, parse_constant=_reject_constant), []
    except _DuplicateSeen:
        tree = json.loads(text, object_pairs_hook=_Pairs, parse_constant=_reject_constant)
        dups: list[str] = []
        _duplicate_paths(tree, "", dups)
        return _pairs_to_dict(tree), dups


def _jsonable(node: Any, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError("document too large after expanding YAML aliases")
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if not isinstance(key, str):
                if isinstance(key, bool | int | float):
                    key = json.dumps(key)
                else:
                    raise ValueError(f"unsupported map key of type {type(key).__name__}")
            out[key] = _jsonable(value, budget)
        return out
    if isinstance(node, list | tuple):
        return [_jsonable(v, budget) for v in node]
    if isinstance(node, datetime.datetime):
        if node.tzinfo is None:
            node = node.replace(tzinfo=datetime.UTC)
        return node.isoformat().replace("+00:00", "Z")
    if isinstance(node, datetime.date):
        return node.isoformat()
    if node is None or isinstance(node, str | bool | int | float):
        if isinstance(node, float) and (node != node or node in (float("inf"), float("-inf"))):
            raise ValueError("NaN and Inf are not valid JSON numbers")
        return node
    raise ValueError(f"unsupported YAML value of type {type(node).__name__}")


class _YamlLoader(yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader):  # type: ignore[misc]
    pass


def _yaml_duplicates(node: yaml.Node, path: str, out: list[str], budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError("document too large after expanding YAML aliases")
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            child = f"{path}.{key}" if path else key
            if key in seen and child not in out:
                out.append(child)
            seen.add(key)
            _yaml_duplicates(value_node, child, out, budget)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _yaml_duplicates(item, path, out, budget)


def decode_yaml(body: bytes) -> tuple[Any, list[str]]:
    nodes = [n for n in yaml.compose_all(body, Loader=_YamlLoader) if n is not None]
    if len(nodes) != 1:
        raise ValueError("expected exactly one YAML document" if nodes else "empty YAML document")
    dups: list[str] = []
    _yaml_duplicates(nodes[0], "", dups, [_YAML_NODE_BUDGET])
    docs = [d for d in yaml.load_all(body, Loader=_YamlLoader) if d is not None]
    return _jsonable(docs[0], [_YAML_NODE_BUDGET]), dups


def _summary(body: bytes, limit: int = 30) -> str:
    text = body[:limit].decode("utf-8", "replace")
    return text + ("..." if len(body) > limit else "")


def decode_object(body: bytes, content_type: str, kind: str) -> tuple[dict[str, Any], list[str]]:
    """Decode a create/update body into a JSON object, as the apiserver's decoder does.

    Returns (object, duplicate-field paths). Errors are 400s shaped like upstream's
    transformDecodeError; ``kind`` is the Kind the URL expects."""
    if content_type == "application/vnd.kubernetes.protobuf":
        from svcnet.apiserver import protobuf  # kubectl's typed generators send protobuf

        return protobuf.decode(body, kind), []
    if content_type in YAML_TYPES:
        decoder = decode_yaml
    elif content_type in JSON_TYPES or content_type == "":
        decoder = decode_json
    else:
        raise StatusError(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json, application/yaml, application/vnd.kubernetes.protobuf, "
            "application/cbor",
        )
    if not body.strip():
        raise errors.bad_request(
            f"the object provided is unrecognized (must be of type {kind}): "
            f"couldn't get version/kind; json parse error: unexpected end of JSON input ()"
        )
    try:
        value, dups = decoder(body)
    except (ValueError, RecursionError, UnicodeDecodeError, yaml.YAMLError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, RecursionError):
            detail = "exceeded max depth"
        raise errors.bad_request(
            f"the object provided is unrecognized (must be of type {kind}): "
            f"couldn't get version/kind; json parse error: {detail} ({_summary(body)})"
        ) from None
    if not isinstance(value, dict):
        raise errors.bad_request(
            f"the object provided is unrecognized (must be of type {kind}): couldn't get "
            f"version/kind; json parse error: json: cannot unmarshal {json_kind(value)} into Go "
            f'value of type struct {{ APIVersion string "json:\\"apiVersion,omitempty\\""; '
            f'Kind string "json:\\"kind,omitempty\\"" }} ({_summary(body)})'
        )
    return value, dups


# ---- query parameters, parsed as Go's strconv parses them ------------------------------

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def query_bool(query: Any, name: str, default: bool = False) -> bool:
    raw = query.get(name)
    if raw is None:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE or raw == "":
        return False
    raise errors.bad_request(f'strconv.ParseBool: parsing "{raw}": invalid syntax')


def parse_int64(raw: str) -> int:
    text = raw.strip()
    body = text[1:] if text[:1] in "+-" else text
    if not body or not body.isascii() or not body.isdigit():
        raise errors.bad_request(f'strconv.ParseInt: parsing "{raw}": invalid syntax')
    value = int(text)
    if not -(2**63) <= value < 2**63:
        raise errors.bad_request(f'strconv.ParseInt: parsing "{raw}": value out of range')
    return value


def query_int(query: Any, name: str) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    return parse_int64(raw)


# ---- replies ----------------------------------------------------------------------------


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return web.Response(body=data, status=status, content_type="application/json", headers=headers)


def status_response(err: StatusError) -> web.Response:
    return json_response(err.status(), status=err.code, headers=err.headers or None)


def success_status(details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details is not None:
        body["details"] = details
    return body
