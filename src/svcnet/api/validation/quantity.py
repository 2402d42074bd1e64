"""Kubernetes resource quantities (apimachinery pkg/api/resource): parsing, comparison and
the canonical string form that error messages print ("0.5" is "500m", "1024Mi" is "1Gi")."""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation, localcontext
from typing import Any

QUANTITY_FORMAT_ERROR = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)

_QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_ORDER = ("E", "P", "T", "G", "M", "k", "", "m", "u", "n")
_BINARY_ORDER = ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki")


class Quantity:
    """A parsed quantity: its exact value (rounded up to nano units, as upstream stores it)
    and the format family of its suffix (DecimalSI, BinarySI or DecimalExponent)."""

    __slots__ = ("fmt", "value")

    def __init__(self, value: Decimal, fmt: str) -> None:
        self.value = value
        self.fmt = fmt

    def __str__(self) -> str:
        return canonical(self)

    def __repr__(self) -> str:
        return f"Quantity({canonical(self)!r})"


def parse_quantity(text: Any) -> Quantity | None:
    """The quantity in a JSON value (string or number), or None when it is not one."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int | float):
        text = repr(text) if isinstance(text, float) else str(text)
    if not isinstance(text, str):
        return None
    match = _QUANTITY_RE.match(text)
    if not match:
        return None
    number, suffix = match.groups()
    try:
        mantissa = Decimal(number)
    except InvalidOperation:
        return None
    with localcontext() as ctx:
        ctx.prec = 80
        if suffix in _DECIMAL_SUFFIXES:
            value, fmt = mantissa.scaleb(_DECIMAL_SUFFIXES[suffix]), "DecimalSI"
        elif suffix in _BINARY_SUFFIXES:
            value, fmt = mantissa * (Decimal(2) ** _BINARY_SUFFIXES[suffix]), "BinarySI"
        elif suffix[:1] in ("e", "E"):
            try:
                exponent = int(suffix[1:])
            except ValueError:
                return None
            value, fmt = mantissa.scaleb(exponent), "DecimalExponent"
        else:
            return None
        # Upstream keeps nano precision and rounds up anything finer.
        value = value.quantize(Decimal("1e-9"), rounding=ROUND_CEILING)
    return Quantity(value, fmt)


def _is_whole(value: Decimal) -> bool:
    return value == value.to_integral_value()


def canonical(quantity: Quantity) -> str:
    """Quantity.String(): the largest suffix of the format family that keeps an integer."""
    value = quantity.value
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    if quantity.fmt == "BinarySI" and _is_whole(magnitude) and magnitude >= 1024:
        for suffix in _BINARY_ORDER:
            unit = Decimal(2) ** _BINARY_SUFFIXES[suffix]
            if _is_whole(magnitude / unit):
                return f"{sign}{int(magnitude / unit)}{suffix}"
    if quantity.fmt == "BinarySI" and _is_whole(magnitude):
        return f"{sign}{int(magnitude)}"
    if quantity.fmt == "DecimalExponent":
        exponent = 0
        while _is_whole(magnitude / Decimal(10) ** (exponent + 3)) and magnitude >= Decimal(10) ** (
            exponent + 3
        ):
            exponent += 3
        while not _is_whole(magnitude / Decimal(10) ** exponent):
            exponent -= 3
        scaled = int(magnitude / Decimal(10) ** exponent)
        return f"{sign}{scaled}" + (f"e{exponent}" if exponent else "")
    for suffix in _DECIMAL_ORDER:
        unit = Decimal(10) ** _DECIMAL_SUFFIXES[suffix]
        if magnitude >= unit and _is_whole(magnitude / unit):
            return f"{sign}{int(magnitude / unit)}{suffix}"
    return f"{sign}{int(magnitude / Decimal('1e-9'))}n"
