"""The per-kind API logic the registry and handlers call, in one place: defaulting
(api/defaults), registry strategy (api/strategy), validation (api/validation) and the field
schema (api/schema). Keeping the calls behind these names lets the REST code stay generic over
kinds; every function here is the real thing, none is optional."""

from __future__ import annotations

from typing import Any

from svcnet.api import defaults, schema, strategy, validation
from svcnet.api.errors import FieldError

Obj = dict[str, Any]


def apply_defaults(obj: Obj) -> None:
    defaults.apply_defaults(obj)


def prepare_for_create(obj: Obj) -> None:
    strategy.prepare_for_create(obj)


def prepare_for_update(new: Obj, old: Obj) -> None:
    strategy.prepare_for_update(new, old)


def prepare_for_status_update(new: Obj, old: Obj) -> None:
    strategy.prepare_for_status_update(new, old)


def validate_create(obj: Obj) -> list[FieldError]:
    return list(validation.validate_create(obj))


def validate_update(new: Obj, old: Obj) -> list[FieldError]:
    return list(validation.validate_update(new, old))


def validate_status_update(new: Obj, old: Obj) -> list[FieldError]:
    return list(validation.validate_status_update(new, old))


def unknown_fields(api_version: str, kind: str, obj: Obj) -> list[str]:
    return list(schema.unknown_fields(api_version, kind, obj))


def strict_decoding_errors(raw: bytes, api_version: str, kind: str) -> list[str]:
    """Unknown and duplicate field messages of a raw JSON body, in document order."""
    return list(schema.strict_decoding_errors(raw, api_version, kind))


def drop_unknown_fields(api_version: str, kind: str, obj: Obj) -> Obj:
    """What decoding into the Go type keeps: fields the kind does not have are dropped."""
    return schema.drop_unknown_fields(api_version, kind, obj)
