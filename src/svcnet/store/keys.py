"""Key-space helpers shared by the store backends."""

from __future__ import annotations

from collections.abc import Sequence

from svcnet.store.interface import Delete, Op, Put

_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (etcd's
    "range end" for a prefix), or None when there is none (empty prefix: the whole key space).

    Python orders strings by code point and SQLite's BINARY collation orders UTF-8 bytes; the
    two orders agree, so the same bound works for both."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last == _MAX_CODE_POINT:
            continue
        nxt = last + 1
        if nxt in _SURROGATES:  # surrogates cannot be encoded as UTF-8: skip past them
            nxt = _SURROGATES.stop
        return "".join(chars) + chr(nxt)
    return None


def check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"store keys are str, got {type(key).__name__}")
    if not key:
        raise ValueError("store key must not be empty")
    return key


def check_value(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"store values are bytes, got {type(value).__name__}")
    return value


def check_ops(ops: Sequence[Op]) -> list[Op]:
    """A transaction's ops, checked as every backend checks them: Put or Delete with a valid key
    (and value), no key twice (as etcd: one revision cannot hold two versions of a key)."""
    checked: list[Op] = []
    seen: set[str] = set()
    for op in ops:
        if isinstance(op, Put):
            check_key(op.key)
            check_value(op.value)
        elif isinstance(op, Delete):
            check_key(op.key)
        else:
            raise TypeError(f"txn ops are Put or Delete, got {type(op).__name__}")
        if op.key in seen:
            raise ValueError(f"duplicate key in txn: {op.key}")
        seen.add(op.key)
        checked.append(op)
    return checked
