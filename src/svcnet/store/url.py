"""Datastore URLs: ``sqlite://DIR`` (or ``sqlite://FILE.db``) and
``etcd://HOST:PORT[,HOST:PORT...]`` (``etcds://`` or any TLS file for https to the members).

One parser for every caller (``svcnet server --datastore``, ``svcnet datastore migrate``,
tests and benchmarks), so a URL means the same thing everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from svcnet.store.etcd_client import EtcdTLS

SQLITE_FILE = "state.db"  # the file name under a sqlite://DIR datastore


@dataclass(frozen=True)
class DatastoreURL:
    kind: str  # "sqlite" or "etcd"
    path: str = ""  # sqlite: the database file
    endpoints: list[str] = field(default_factory=list)  # etcd: HOST:PORT each
    tls: bool = False  # etcd: https to the members

    def describe(self) -> str:
        if self.kind == "sqlite":
            return f"sqlite://{self.path}"
        return f"{'etcds' if self.tls else 'etcd'}://{','.join(self.endpoints)}"


def parse_datastore_url(url: str) -> DatastoreURL:
    """Raises ValueError with a message fit for a CLI user."""
    if "://" not in url:
        if not url:
            raise ValueError("empty datastore URL: expected sqlite://DIR or etcd://HOST:PORT[,HOST:PORT...]")
        return DatastoreURL("sqlite", path=_sqlite_file(url))
    scheme, rest = url.split("://", 1)
    if scheme == "sqlite":
        if not rest:
            raise ValueError("sqlite datastore needs a directory, e.g. sqlite:///var/lib/svcnet")
        return DatastoreURL("sqlite", path=_sqlite_file(rest))
    if scheme in ("etcd", "etcds"):
        if "/" in rest.rstrip("/") or "?" in rest:
            raise ValueError(f"etcd URL takes only HOST:PORT[,HOST:PORT...], got {url!r}")
        endpoints = [part.strip() for part in rest.rstrip("/").split(",") if part.strip()]
        if not endpoints:
            raise ValueError("etcd datastore needs at least one HOST:PORT, e.g. etcd://127.0.0.1:2379")
        for endpoint in endpoints:
            host, sep, port = endpoint.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"bad etcd endpoint {endpoint!r}: expected HOST:PORT")
        return DatastoreURL("etcd", endpoints=endpoints, tls=scheme == "etcds")
    raise ValueError(f"unsupported datastore {scheme!r}: expected sqlite://DIR or etcd://HOST:PORT[,...]")


def _sqlite_file(path: str) -> str:
    """A directory holds the database as state.db; a path ending in .db is the file itself."""
    if path.endswith(".db") and not os.path.isdir(path):
        return path
    return os.path.join(path, SQLITE_FILE)


def etcd_tls(
    parsed: DatastoreURL, cafile: str | None = None, certfile: str | None = None, keyfile: str | None = None
) -> EtcdTLS | None:
    if keyfile and not certfile:
        raise ValueError("--etcd-keyfile needs --etcd-certfile")
    if parsed.tls or cafile or certfile:
        return EtcdTLS(cafile=cafile, certfile=certfile, keyfile=keyfile or None)
    return None
