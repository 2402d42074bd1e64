"""Copy every live key of one datastore into another (``svcnet datastore migrate``).

What "resourceVersions intact" means here. A resourceVersion is the mod_revision of the
object's key, and no datastore lets a client choose the revision of a write: etcd assigns the
next one. So the copy replays the live keys in the source's revision order, keys that shared a
revision in one transaction again, and before each group it advances the target's counter with
writes to a scratch key until the next write lands exactly on the source revision. On an empty
target (revision below the source's oldest live object) every object therefore keeps its
resourceVersion exactly, and the target ends at the source's current revision; the scratch key
is deleted at the end (one more revision). The one exception is the very start: a fresh etcd is
at revision 1 and its first write gets 2, while SQLite's first write is 1, so keys whose source
revision is at or below the target's first free revision (the bootstrap namespaces) are written
together at that revision; the report counts them as moved. What cannot be kept: history (superseded versions
and deletions: the target's watch window starts at the migration, so a client resuming an older
watch gets 410 and relists, as after any compaction) and create_revision (not part of the API).

When the target is not empty (``force``) or already past the source's revisions, exact
revisions are impossible; the copy then keeps the order only (old revision -> new revision,
strictly increasing) and the report carries that mapping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import groupby

from svcnet.store.interface import KeyValue, Put, Store

SCRATCH_KEY = "/registry/svcnet/migration/revision-filler"
_MAX_TXN_OPS = 100  # below etcd's default --max-txn-ops (128)
_FILL_CONCURRENCY = 64


class MigrationError(Exception):
    """The migration was refused or failed; the message says why."""


@dataclass
class MigrationReport:
    keys: int = 0
    revisions: int = 0  # distinct source revisions among the live keys
    source_revision: int = 0
    target_revision: int = 0
    exact: bool = True  # every key kept its mod_revision (resourceVersion)
    kept: int = 0  # keys whose mod_revision (resourceVersion) is the source's
    overwritten: int = 0  # keys the target held already (with --force)
    mapping: dict[int, int] = field(default_factory=dict)  # source revision -> target revision


async def migrate(
    source: Store,
    target: Store,
    *,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> MigrationReport:
    """Both stores must be started. ``progress(done, total)`` is called after each group."""
    snapshot = await source.range("")
    existing = await target.count("")
    if existing and not force:
        raise MigrationError(
            f"the target datastore already holds {existing} keys; refusing to mix clusters "
            "(use --force to write over it anyway)"
        )
    kvs = [kv for kv in snapshot.kvs if kv.key != SCRATCH_KEY]
    report = MigrationReport(keys=len(kvs), source_revision=snapshot.revision)
    if existing:
        report.overwritten = sum([await target.get(kv.key) is not None for kv in kvs])
    groups = [list(group) for _, group in groupby(sorted(kvs, key=_order), key=lambda kv: kv.mod_revision)]
    report.revisions = len({kv.mod_revision for kv in kvs})
    current = await target.current_revision()
    preserve = not existing
    # Source revisions the target cannot reach any more go together at its first free one.
    while preserve and len(groups) > 1 and groups[1][0].mod_revision <= current + 1:
        groups[0:2] = [groups[0] + groups[1]]
    for done, group in enumerate(groups, 1):
        wanted = group[-1].mod_revision
        if preserve:
            current = await _advance(target, current, wanted - 1)
        revision = current
        for start in range(0, len(group), _MAX_TXN_OPS):
            revision = await target.txn([Put(kv.key, kv.value) for kv in group[start : start + _MAX_TXN_OPS]])
        for kv in group:
            report.mapping[kv.mod_revision] = revision
            report.kept += kv.mod_revision == revision
        current = revision
        if progress is not None:
            progress(done, len(groups))
    report.exact = report.kept == report.keys
    if preserve:
        current = await _advance(target, current, snapshot.revision)
    if await target.get(SCRATCH_KEY) is not None:
        current = (await target.delete(SCRATCH_KEY)).mod_revision
    report.target_revision = max(current, await target.current_revision())
    return report


def _order(kv: KeyValue) -> tuple[int, str]:
    return kv.mod_revision, kv.key


async def _advance(target: Store, current: int, until: int) -> int:
    """Write the scratch key until the target's revision is ``until`` (each write is one
    revision; order does not matter, so they go in parallel)."""
    missing = until - current
    if missing <= 0:
        return current
    semaphore = asyncio.Semaphore(_FILL_CONCURRENCY)

    async def fill() -> int:
        async with semaphore:
            return await target.txn([Put(SCRATCH_KEY, b"")])

    revisions = await asyncio.gather(*(fill() for _ in range(missing)))
    return max(revisions)
