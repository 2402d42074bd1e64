"""store/migrate.py between the two backends, in both directions (the CLI test in
tests/integration/test_etcd_migrate.py goes through a real API server)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from svcnet.store import Delete, Put
from svcnet.store.etcd import EtcdStore
from svcnet.store.migrate import SCRATCH_KEY, MigrationError, migrate
from svcnet.store.sqlite import SqliteStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etcd_fixture import etcd_missing_reason, shared_etcd

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def etcd_endpoints() -> list[str]:
    if reason := etcd_missing_reason():
        pytest.skip(reason)
    return shared_etcd().endpoints


async def _history(store: SqliteStore | EtcdStore) -> dict[str, int]:
    """Creates, updates, deletes and a multi-key transaction; returns key -> mod_revision."""
    for i in range(10):
        await store.create(f"/registry/things/{i}", f"v{i}".encode())
    await store.update("/registry/things/3", b"changed", None)
    await store.delete("/registry/things/4")
    await store.txn(
        [Put("/registry/things/5", b"t"), Put("/registry/svcnet/ip/1", b"o"), Delete("/registry/things/6")]
    )
    return {kv.key: kv.mod_revision for kv in (await store.range("")).kvs}


async def test_etcd_to_sqlite_keeps_every_revision(etcd_endpoints: list[str], tmp_path: Path) -> None:
    source = EtcdStore(etcd_endpoints, prefix=f"/svt-mig-{tmp_path.name}", compact_interval=0)
    target = SqliteStore(str(tmp_path / "state.db"), compact_interval=0)
    await source.start()
    await target.start()
    try:
        before = await _history(source)
        report = await migrate(source, target)
        after = {kv.key: kv.mod_revision for kv in (await target.range("")).kvs}
        assert after == before and report.exact and report.kept == len(before)
        # Keys of one source transaction share a revision again.
        assert after["/registry/things/5"] == after["/registry/svcnet/ip/1"]
        assert await target.get(SCRATCH_KEY) is None
        assert await target.current_revision() > await source.current_revision()
        assert (await target.get("/registry/things/3")).value == b"changed"
    finally:
        await source.close()
        await target.close()


async def test_sqlite_to_etcd_refuses_a_non_empty_target_then_renumbers_in_order(
    etcd_endpoints: list[str], tmp_path: Path
) -> None:
    source = SqliteStore(str(tmp_path / "state.db"), compact_interval=0)
    target = EtcdStore(etcd_endpoints, prefix=f"/svt-mig-{tmp_path.name}", compact_interval=0)
    await source.start()
    await target.start()
    try:
        before = await _history(source)
        await target.create("/registry/things/0", b"already here")
        with pytest.raises(MigrationError, match="already holds 1 keys"):
            await migrate(source, target)
        report = await migrate(source, target, force=True)
        assert report.overwritten == 1 and not report.exact
        after = {kv.key: kv.mod_revision for kv in (await target.range("")).kvs}
        assert set(after) == set(before)
        # Renumbered, but in the source's order.
        assert sorted(after, key=lambda k: (after[k], k)) == sorted(before, key=lambda k: (before[k], k))
        assert (await target.get("/registry/things/0")).value == b"v0"
    finally:
        await source.close()
        await target.close()
