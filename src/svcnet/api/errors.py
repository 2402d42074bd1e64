"""Kubernetes ``Status`` errors and field errors, shaped as apimachinery shapes them.

Every failure the API returns is a ``StatusError``; ``.status()`` is the ``kind: Status`` body.
Validation produces ``FieldError`` lists; ``invalid()`` turns them into the 422 reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# field.ErrorType -> (cause reason, message prefix), from apimachinery's field/errors.go.
_FIELD_ERROR_TYPES = {
    "NotFound": ("FieldValueNotFound", "Not found"),
    "Required": ("FieldValueRequired", "Required value"),
    "Duplicate": ("FieldValueDuplicate", "Duplicate value"),
    "Invalid": ("FieldValueInvalid", "Invalid value"),
    "NotSupported": ("FieldValueNotSupported", "Unsupported value"),
    "Forbidden": ("FieldValueForbidden", "Forbidden"),
    "TooLong": ("FieldValueTooLong", "Too long"),
    "TooMany": ("FieldValueTooMany", "Too many"),
    "Internal": ("InternalError", "Internal error"),
    "TypeInvalid": ("FieldValueTypeInvalid", "Invalid value"),
}

_NO_VALUE = object()


_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}


def go_quote(value: Any) -> str:
    """``value`` as Go's ``%q`` (strconv.Quote) prints it, the quoting of every upstream message:
    printable characters as they are (non-ASCII too), the rest escaped."""
    text = value if isinstance(value, str) else str(value)
    out = ['"']
    for ch in text:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def _render_value(value: Any) -> str:
    """Values are printed as apimachinery prints them: strings %q, numbers bare, slices %#v."""
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        # apimachinery prints slices with Go's %#v: []string{"a", "b"}, []int{1, 2}
        if all(isinstance(v, str) for v in value):
            return "[]string{" + ", ".join(go_quote(v) for v in value) + "}"
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return "[]int32{" + ", ".join(str(v) for v in value) + "}"
        return "[]interface {}{" + ", ".join(_render_value(v) for v in value) + "}"
    return str(value)


@dataclass
class FieldError:
    type: str  # a key of _FIELD_ERROR_TYPES
    field: str  # e.g. "spec.ports[0].nodePort"
    value: Any = _NO_VALUE
    detail: str = ""
    supported: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        return _FIELD_ERROR_TYPES[self.type][0]

    def body(self) -> str:
        """The text after the field path, e.g. ``Invalid value: 80: provided port is ...``."""
        prefix = _FIELD_ERROR_TYPES[self.type][1]
        if self.type in ("Required", "Forbidden", "TooLong", "Internal") or self.value is _NO_VALUE:
            return f"{prefix}: {self.detail}" if self.detail else prefix
        if self.type == "NotSupported":
            text = f"{prefix}: {_render_value(self.value)}"
            if self.supported:
                text += ": supported values: " + ", ".join(go_quote(s) for s in self.supported)
            return text
        text = f"{prefix}: {_render_value(self.value)}"
        return f"{text}: {self.detail}" if self.detail else text

    def message(self) -> str:
        return f"{self.field}: {self.body()}"

    def cause(self) -> dict[str, Any]:
        return {"reason": self.reason, "message": self.body(), "field": self.field}


def required(field: str, detail: str = "") -> FieldError:
    return FieldError("Required", field, detail=detail)


def invalid_value(field: str, value: Any, detail: str) -> FieldError:
    return FieldError("Invalid", field, value, detail)


def not_supported(field: str, value: Any, supported: tuple[str, ...]) -> FieldError:
    return FieldError("NotSupported", field, value, supported=supported)


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError("Forbidden", field, detail=detail)


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError("Duplicate", field, value)


def too_many(field: str, actual: int, limit: int) -> FieldError:
    return FieldError("TooMany", field, actual, f"must have at most {limit} items")


def too_long(field: str, limit: int) -> FieldError:
    return FieldError("TooLong", field, detail=f"may not be more than {limit} bytes")


class StatusError(Exception):
    """An API failure with its HTTP code; ``status()`` is the JSON body to send."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(name: str, group: str, kind: str) -> dict[str, Any]:
    details: dict[str, Any] = {"kind": kind}
    if name:
        details = {"name": name, "group": group, "kind": kind} if group else {"name": name, "kind": kind}
    elif group:
        details["group"] = group
    return details


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(
        404, "NotFound", f'{_qualified(resource, group)} "{name}" not found', _details(name, group, resource)
    )


def already_exists(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(
        409,
        "AlreadyExists",
        f'{_qualified(resource, group)} "{name}" already exists',
        _details(name, group, resource),
    )


def conflict(resource: str, name: str, group: str = "", detail: str | None = None) -> StatusError:
    detail = detail or (
        "the object has been modified; please apply your changes to the latest version and try again"
    )
    return StatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {detail}',
        _details(name, group, resource),
    )


def invalid(kind: str, name: str, errors: list[FieldError], group: str = "") -> StatusError:
    """422 with one cause per field error; the message joins them as apimachinery does."""
    messages = [e.message() for e in errors]
    joined = messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"
    details = _details(name, group, kind)
    details["causes"] = [e.cause() for e in errors]
    return StatusError(422, "Invalid", f'{kind} "{name}" is invalid: {joined}', details)


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def expired(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def gone(message: str) -> StatusError:
    return StatusError(410, "Gone", message)


def method_not_allowed(message: str) -> StatusError:
    return StatusError(405, "MethodNotAllowed", message)


def request_entity_too_large(limit: int) -> StatusError:
    return StatusError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def internal_error(message: str) -> StatusError:
    return StatusError(
        500, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]}
    )


def service_unavailable(message: str) -> StatusError:
    return StatusError(503, "ServiceUnavailable", message)


def timeout(message: str) -> StatusError:
    return StatusError(504, "Timeout", message)
