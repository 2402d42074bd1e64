"""Datastore URLs as `svcnet server --datastore` and `svcnet datastore migrate` read them."""

from __future__ import annotations

from pathlib import Path

import pytest

from svcnet.store import open_store, parse_datastore_url
from svcnet.store.etcd import EtcdStore
from svcnet.store.sqlite import SqliteStore
from svcnet.store.url import etcd_tls


def test_sqlite_urls_name_a_directory_or_a_db_file(tmp_path: Path) -> None:
    assert parse_datastore_url(f"sqlite://{tmp_path}").path == str(tmp_path / "state.db")
    assert parse_datastore_url(f"sqlite://{tmp_path}/x.db").path == f"{tmp_path}/x.db"
    assert parse_datastore_url(str(tmp_path)).path == str(tmp_path / "state.db")
    assert isinstance(open_store(f"sqlite://{tmp_path}"), SqliteStore)


def test_etcd_urls_list_endpoints() -> None:
    parsed = parse_datastore_url("etcd://127.0.0.1:2379,10.0.0.2:2379")
    assert (parsed.kind, parsed.endpoints, parsed.tls) == ("etcd", ["127.0.0.1:2379", "10.0.0.2:2379"], False)
    assert parse_datastore_url("etcds://[::1]:2379").tls
    store = open_store("etcd://127.0.0.1:2379,127.0.0.2:2379")
    assert isinstance(store, EtcdStore)
    assert store.endpoints == ["http://127.0.0.1:2379", "http://127.0.0.2:2379"]
    assert open_store("etcds://h:1").endpoints == ["https://h:1"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty datastore URL"),
        ("mysql://x", "unsupported datastore 'mysql'"),
        ("sqlite://", "needs a directory"),
        ("etcd://", "at least one HOST:PORT"),
        ("etcd://host", "bad etcd endpoint 'host'"),
        ("etcd://host:0", "bad etcd endpoint"),
        ("etcd://host:2379/prefix", "only HOST:PORT"),
    ],
)
def test_bad_urls_say_what_is_expected(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_datastore_url(url)


def test_tls_files_turn_on_https_and_a_key_needs_a_certificate() -> None:
    plain = parse_datastore_url("etcd://h:1")
    assert etcd_tls(plain) is None
    assert etcd_tls(plain, cafile="/ca.pem") is not None
    with pytest.raises(ValueError, match="--etcd-keyfile needs --etcd-certfile"):
        etcd_tls(plain, keyfile="/k.pem")
