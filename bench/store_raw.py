"""SqliteStore throughput against raw SQLite, measured in the same run.

    .venv/bin/python bench/store_raw.py [--objects 10000] [--clients 32] [--uvloop]

Prints creates/s with N concurrent create() calls, the time of range() over every object
(latest and at an old revision, whole and in pages of 500), and, as the reference, raw
sqlite3 INSERTs of the same values (one thread, one transaction per `clients` rows, WAL,
synchronous=NORMAL), with the ratio store / raw.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sqlite3
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

import orjson

from svcnet.store.sqlite import SqliteStore


def service_json(i: int) -> bytes:
    """About the size of a stored Service (~900 bytes)."""
    return orjson.dumps(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": f"svc-{i:06d}",
                "namespace": "default",
                "uid": f"6f0c6a4e-{i:04x}-4a51-9a1c-8d2b1b3f{i:04x}",
                "creationTimestamp": "2026-11-29T12:00:00Z",
                "labels": {"app": f"app-{i % 50}", "tier": "backend"},
                "annotations": {"owner": "bench", "note": "x" * 200},
            },
            "spec": {
                "type": "ClusterIP",
                "selector": {"app": f"app-{i % 50}"},
                "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                "clusterIP": f"10.96.{i // 256 % 256}.{i % 256}",
                "clusterIPs": [f"10.96.{i // 256 % 256}.{i % 256}"],
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "sessionAffinity": "None",
                "internalTrafficPolicy": "Cluster",
            },
            "status": {"loadBalancer": {}},
        }
    )


def key(i: int) -> str:
    return f"/registry/services/specs/default/svc-{i:06d}"


def raw_inserts(path: str, values: list[bytes], per_txn: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE raw (name TEXT PRIMARY KEY, value BLOB NOT NULL)")
    start = time.perf_counter()
    for base in range(0, len(values), per_txn):
        conn.execute("BEGIN IMMEDIATE")
        for i in range(base, min(base + per_txn, len(values))):
            conn.execute("INSERT INTO raw (name, value) VALUES (?, ?)", (key(i), values[i]))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(values) / elapsed


async def timed(coro_factory, repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await coro_factory()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


async def store_run(path: str, values: list[bytes], clients: int) -> dict[str, float]:
    store = SqliteStore(path, compact_interval=0)
    await store.start()
    try:
        counter = iter(range(len(values)))

        async def client() -> None:
            for i in counter:
                await store.create(key(i), values[i])

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        creates_per_s = len(values) / (time.perf_counter() - start)
        old_revision = await store.current_revision()

        # Updates after the snapshot, so a read at old_revision has history to skip.
        for i in range(0, len(values), 10):
            await store.update(key(i), values[i], None)

        async def list_all(revision: int | None = None) -> None:
            result = await store.range("/registry/services/specs/", revision=revision)
            assert len(result.kvs) == len(values)

        async def list_paged() -> None:
            after, got = None, 0
            rev = await store.current_revision()
            while True:
                page = await store.range("/registry/services/specs/", rev, start_after=after, limit=500)
                got += len(page.kvs)
                if not page.more:
                    break
                after = page.kvs[-1].key
            assert got == len(values)

        async def gets() -> None:
            for i in range(1000):
                await store.get(key(i))

        return {
            "creates_per_s": creates_per_s,
            "range_latest_s": await timed(list_all),
            "range_old_s": await timed(lambda: list_all(old_revision)),
            "range_paged_s": await timed(list_paged),
            "get_per_s": 1000 / await timed(gets, repeat=3),
        }
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    values = [service_json(i) for i in range(args.objects)]
    with tempfile.TemporaryDirectory() as tmp:
        raw = raw_inserts(os.path.join(tmp, "raw.db"), values, args.clients)
        if args.uvloop:
            import uvloop

            uvloop.install()
        result = asyncio.run(store_run(os.path.join(tmp, "store.db"), values, args.clients))
    print(f"objects: {args.objects}, value size: {len(values[0])} bytes, clients: {args.clients}")
    print(f"raw sqlite inserts ({args.clients}/txn): {raw:10.0f} /s")
    print(f"store creates ({args.clients} concurrent): {result['creates_per_s']:8.0f} /s")
    print(f"ratio store/raw:            {result['creates_per_s'] / raw:10.2f}")
    print(f"range all, latest:          {result['range_latest_s'] * 1000:10.1f} ms")
    print(f"range all, old revision:    {result['range_old_s'] * 1000:10.1f} ms")
    print(f"range all, pages of 500:    {result['range_paged_s'] * 1000:10.1f} ms")
    print(f"sequential gets:            {result['get_per_s']:10.0f} /s")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS (whole process):   {peak_mb:10.0f} MB")


if __name__ == "__main__":
    main()
