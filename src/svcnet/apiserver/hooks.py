"""The per-kind API logic the registry calls (api/defaults, api/strategy, api/validation,
api/schema), looked up by their contract names. A module that is not in the tree yet acts
as a no-op, so the REST machinery works while the pieces land."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from svcnet.api.errors import FieldError

log = logging.getLogger("svcnet.apiserver.hooks")


def _lookup(module: str, name: str) -> Callable[..., Any] | None:
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        if exc.name and module.endswith(exc.name.rsplit(".", 1)[-1]):
            log.warning("%s is not available yet; %s is skipped", module, name)
            return None
        raise
    return getattr(mod, name, None)


_apply_defaults = _lookup("svcnet.api.defaults", "apply_defaults")
_prepare_for_create = _lookup("svcnet.api.strategy", "prepare_for_create")
_prepare_for_update = _lookup("svcnet.api.strategy", "prepare_for_update")
_prepare_for_status_update = _lookup("svcnet.api.strategy", "prepare_for_status_update")
_validate_create = _lookup("svcnet.api.validation", "validate_create")
_validate_update = _lookup("svcnet.api.validation", "validate_update")
_validate_status_update = _lookup("svcnet.api.validation", "validate_status_update")
_unknown_fields = _lookup("svcnet.api.schema", "unknown_fields")
_strict_decoding_errors = _lookup("svcnet.api.schema", "strict_decoding_errors")
_drop_unknown_fields = _lookup("svcnet.api.schema", "drop_unknown_fields")


def apply_defaults(obj: dict[str, Any]) -> None:
    if _apply_defaults is not None:
        _apply_defaults(obj)


def prepare_for_create(obj: dict[str, Any]) -> None:
    if _prepare_for_create is not None:
        _prepare_for_create(obj)


def prepare_for_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    if _prepare_for_update is not None:
        _prepare_for_update(new, old)


def prepare_for_status_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    if _prepare_for_status_update is not None:
        _prepare_for_status_update(new, old)


def validate_create(obj: dict[str, Any]) -> list[FieldError]:
    return list(_validate_create(obj)) if _validate_create is not None else []


def validate_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    return list(_validate_update(new, old)) if _validate_update is not None else []


def validate_status_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    return list(_validate_status_update(new, old)) if _validate_status_update is not None else []


def unknown_fields(api_version: str, kind: str, obj: dict[str, Any]) -> list[str]:
    return list(_unknown_fields(api_version, kind, obj)) if _unknown_fields is not None else []


def strict_decoding_errors(raw: bytes, api_version: str, kind: str) -> list[str] | None:
    """Unknown and duplicate field messages of a raw JSON body in document order, or None
    when the schema module cannot tell."""
    if _strict_decoding_errors is None:
        return None
    return list(_strict_decoding_errors(raw, api_version, kind))


def drop_unknown_fields(api_version: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """What decoding into the Go type keeps: fields the kind does not have are dropped."""
    if _drop_unknown_fields is None:
        return obj
    return _drop_unknown_fields(api_version, kind, obj)
