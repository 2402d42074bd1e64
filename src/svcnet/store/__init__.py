"""The revisioned key-value store (etcd v3 model): the interface and its backends.

``open_store(url)`` picks a backend from a datastore URL, so callers (the API server, tests,
migration) never name a backend class themselves.
"""

from __future__ import annotations

from typing import Any

from svcnet.store.etcd_client import EtcdTLS
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
from svcnet.store.url import parse_datastore_url

__all__ = [
    "CompactedError",
    "CompareFailedError",
    "Delete",
    "EtcdTLS",
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
    "parse_datastore_url",
]


def open_store(url: str, *, tls: EtcdTLS | None = None, **options: Any) -> Store:
    """A store for a datastore URL (store/url.py): ``sqlite://DIR`` (the database is DIR/state.db;
    a path ending in .db, or a plain path, names the file) or ``etcd://HOST:PORT[,...]``.
    ``options`` go to the backend's constructor. Call ``await store.start()`` before use."""
    parsed = parse_datastore_url(url)
    if parsed.kind == "etcd":
        from svcnet.store.etcd import EtcdStore

        if tls is None and parsed.tls:
            tls = EtcdTLS()
        return EtcdStore(parsed.endpoints, tls=tls, **options)
    from svcnet.store.sqlite import SqliteStore

    return SqliteStore(parsed.path, **options)
