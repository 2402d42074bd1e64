"""API server benchmark (issue #2): creates/s with 32 concurrent clients, list latency at
10,000 Services, watch delivery latency with 100 watchers and the server's peak RSS, each
next to a reference measured in the same run: raw SQLite inserts of the same JSON, or with
``--datastore etcd`` (issue #11) raw etcd puts of the same JSON from 32 concurrent clients to
a one-member etcd this script starts (data directory on the same disk).

    .venv/bin/python bench/api.py [--services 10000] [--creates 5000] [--watchers 100]
    .venv/bin/python bench/api.py --datastore etcd

The server runs as a child process (`svcnet server`, HTTPS + token, as users run it); the load
comes from this process over loopback, so both share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from svcnet.apiserver.launcher import ApiServerProcess, start_api_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

NS_URL = "/api/v1/namespaces/default/services"


def service(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "api"}},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def per_second(names: list[str], concurrency: int, one: Callable[[str], Awaitable[None]]) -> float:
    """`one(name)` for every name, from `concurrency` clients that each take the next name
    when done; names per second."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for n in names:
        queue.put_nowait(n)

    async def client() -> None:
        while True:
            try:
                name = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await one(name)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return len(names) / (time.perf_counter() - started)


async def create_many(server: ApiServerProcess, names: list[str], concurrency: int) -> float:
    ctx = ssl.create_default_context(cafile=str(server.ca_path))
    headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}
    failures: list[str] = []
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=ctx)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:

        async def create(name: str) -> None:
            async with session.post(server.url + NS_URL, data=json.dumps(service(name))) as resp:
                await resp.read()
                if resp.status != 201:
                    failures.append(f"{name}: {resp.status}")

        rate = await per_second(names, concurrency, create)
    if failures:
        raise SystemExit(f"{len(failures)} creates failed, e.g. {failures[:3]}")
    return rate


async def list_latency(server: ApiServerProcess, rounds: int) -> tuple[list[float], int]:
    ctx = ssl.create_default_context(cafile=str(server.ca_path))
    headers = {"Authorization": f"Bearer {server.token}"}
    times: list[float] = []
    count = 0
    async with aiohttp.ClientSession(headers=headers) as session:
        for _ in range(rounds):
            started = time.perf_counter()
            async with session.get(server.url + NS_URL, ssl=ctx) as resp:
                body = await resp.read()
            times.append(time.perf_counter() - started)
            count = len(json.loads(body)["items"])
    return times, count


async def watch_latency(server: ApiServerProcess, watchers: int, updates: int) -> list[float]:
    """Each update's latency is the time from sending the PATCH to each watcher reading the
    MODIFIED event for it."""
    ctx = ssl.create_default_context(cafile=str(server.ca_path))
    headers = {"Authorization": f"Bearer {server.token}"}
    sent: dict[str, float] = {}
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=watchers + 4, ssl=ctx)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        async with session.get(server.url + NS_URL + "?limit=1") as resp:
            rv = (await resp.json())["metadata"]["resourceVersion"]
        ready = 0
        all_ready = asyncio.Event()

        async def watcher() -> None:
            nonlocal ready
            url = f"{server.url}{NS_URL}?watch=true&resourceVersion={rv}&labelSelector=watch%3Dbench"
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as resp:
                ready += 1
                if ready == watchers:
                    all_ready.set()
                seen = 0
                async for line in resp.content:
                    event = json.loads(line)
                    if event["type"] != "MODIFIED":
                        continue
                    key = event["object"]["metadata"]["annotations"]["bench/seq"]
                    latencies.append(time.perf_counter() - sent[key])
                    seen += 1
                    if seen == updates:
                        return

        tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
        await asyncio.wait_for(all_ready.wait(), 30)
        async with session.post(server.url + NS_URL, json={**service("watched"), "metadata": {
                "name": "watched", "labels": {"watch": "bench"}}}) as resp:
            assert resp.status == 201, await resp.text()
        await asyncio.sleep(0.5)
        for seq in range(updates):
            key = str(seq)
            sent[key] = time.perf_counter()
            patch = {"metadata": {"annotations": {"bench/seq": key}}}
            async with session.patch(server.url + NS_URL + "/watched", data=json.dumps(patch),
                                     headers={"Content-Type": "application/merge-patch+json"}) as resp:
                assert resp.status == 200, await resp.text()
            await asyncio.sleep(0.02)  # a steady stream, not one burst
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return latencies


def raw_sqlite_inserts(directory: Path, names: list[str]) -> float:
    """The reference: the same JSON inserted into SQLite (WAL, one commit per row, the same
    durability an acknowledged API create gets) from this process, with no HTTP or logic."""
    from store_raw import raw_inserts  # bench/ is on sys.path when a bench runs as a script

    values = [json.dumps(service(name)).encode() for name in names]
    return raw_inserts(str(directory / "raw.db"), values, per_txn=1)


async def raw_etcd_puts(endpoint: str, names: list[str], concurrency: int) -> float:
    """The etcd reference: plain puts of the same JSON through etcd's JSON gateway (the
    protocol EtcdStore speaks), ``concurrency`` at a time, from this process."""
    import base64

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def put(name: str) -> None:
            key = base64.b64encode(f"/raw/services/specs/default/{name}".encode()).decode()
            value = base64.b64encode(json.dumps(service(name)).encode()).decode()
            url = f"http://{endpoint}/v3/kv/put"
            async with session.post(url, json={"key": key, "value": value}) as resp:
                body = await resp.read()
                if resp.status != 200 or b'"error"' in body:
                    raise SystemExit(f"raw etcd put failed: {resp.status} {body[:200]!r}")

        return await per_second(names, concurrency, put)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=10000, help="Services stored before listing")
    parser.add_argument("--creates", type=int, default=5000, help="creates in the timed create run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--datastore", choices=["sqlite", "etcd"], default="sqlite",
                        help="etcd: start a one-member etcd and run the server on it")
    parser.add_argument("--with-controllers", action="store_true",
                        help="keep the in-process controllers on (off by default: kube-apiserver is "
                             "measured without controller-manager, whose slices would double the writes)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="svcnet-bench-") as tmp:
        tmpdir = Path(tmp)
        etcd = None
        extra: list[str] = []
        if args.datastore == "etcd":
            from etcd_fixture import EtcdCluster

            etcd = EtcdCluster.start(1, root=tmpdir / "etcd")
            extra = ["--datastore", etcd.url]
        if not args.with_controllers:
            extra.append("--no-controllers")
        server = start_api_server(tmpdir / "data", extra_args=extra)
        try:
            names = [f"svc-{i:05d}" for i in range(max(args.services, args.creates))]
            create_rate = asyncio.run(create_many(server, names[: args.creates], args.concurrency))
            if args.services > args.creates:
                asyncio.run(create_many(server, names[args.creates:], args.concurrency))
            times, count = asyncio.run(list_latency(server, 10))
            latencies = asyncio.run(watch_latency(server, args.watchers, args.updates))
            rss = peak_rss_mb(server.pid)
        finally:
            server.stop()
        try:
            if etcd is not None:
                raw_names = [f"raw-{i}" for i in range(args.creates)]
                raw_rate = asyncio.run(raw_etcd_puts(etcd.endpoints[0], raw_names, args.concurrency))
            else:
                raw_rate = raw_sqlite_inserts(tmpdir, [f"raw-{i}" for i in range(args.creates)])
        finally:
            if etcd is not None:
                etcd.stop()

    print(f"machine: {os.cpu_count()} cores; server and load generator share them")
    target = "1,000" if etcd is not None else "2,000"
    print(f"datastore: {args.datastore}; controllers {'on' if args.with_controllers else 'off'}")
    print(f"creates/s ({args.concurrency} clients, {args.creates} Services): {create_rate:,.0f}   "
          f"[target >= {target}]")
    if etcd is not None:
        print(f"raw etcd puts/s (same JSON, JSON gateway, {args.concurrency} clients): {raw_rate:,.0f}   "
              f"ratio API/raw = {create_rate / raw_rate:.2f}")
    else:
        print(f"raw SQLite inserts/s (same JSON, one commit each): {raw_rate:,.0f}   "
              f"ratio API/raw = {create_rate / raw_rate:.2f}")
    print(f"list of {count:,} Services: median {statistics.median(times) * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms   [target <= 300 ms]")
    print(f"watch delivery ({args.watchers} watchers x {args.updates} updates = {len(latencies):,} "
          f"events): p50 {pct(latencies, 50) * 1000:.1f} ms, p99 {pct(latencies, 99) * 1000:.1f} ms   "
          "[target p99 <= 50 ms]")
    print(f"server peak RSS with {count:,} Services: {rss:.0f} MB   [target <= 300 MB]")


if __name__ == "__main__":
    main()
