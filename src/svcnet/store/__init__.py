"""The revisioned key-value store (etcd v3 model): the interface and its backends.

``open_store(url)`` picks a backend from a datastore URL, so callers (the API server, tests,
migration) never name a backend class themselves.
"""

from __future__ import annotations

from svcnet.store.interface import (
    CompactedError,
    CompareFailedError,
    Delete,
    Event,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    Op,
    Put,
    RangeResult,
    Store,
    StoreError,
    UnavailableError,
    WatchOverflowError,
)

__all__ = [
    "CompactedError",
    "CompareFailedError",
    "Delete",
    "Event",
    "FutureRevisionError",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyValue",
    "Op",
    "Put",
    "RangeResult",
    "Store",
    "StoreError",
    "UnavailableError",
    "WatchOverflowError",
    "open_store",
]


def open_store(url: str, **options: object) -> Store:
    """A store for ``url``: ``sqlite:///path/to/state.db`` (or a plain file path) for the
    embedded backend. Call ``await store.start()`` before use."""
    if url.startswith("sqlite://"):
        path = url[len("sqlite://") :]
    elif "://" in url:
        scheme = url.split("://", 1)[0]
        raise ValueError(f"unsupported datastore {scheme!r}: expected sqlite://PATH")
    else:
        path = url
    if not path:
        raise ValueError("sqlite datastore needs a file path, e.g. sqlite:///var/lib/svcnet/state.db")
    from svcnet.store.sqlite import SqliteStore

    return SqliteStore(path, **options)  # type: ignore[arg-type]
