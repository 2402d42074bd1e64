"""EndpointSlice controller benchmark (issue #4), against a real `svcnet server` child process
running its controllers in-process (the default), load from this process over loopback:

(a) readiness flip -> EndpointSlice change seen on a watch: p50/p99 over --flips flips spread
    over --services Services of one pod each. Reference, same run: a direct write of a slice
    through the API -> its watch event (what the path costs without the controller).
(b) build the slices of one Service selecting --pods Ready pods: time from the Service's
    create to the last endpoint visible on a watch. Reference, same run: the controller's pure
    computation (desired state + reconcile plan) on the same objects in this process.

    .venv/bin/python bench/endpoints.py [--services 1000] [--flips 1000] [--pods 10000]
Targets (issue #4): (a) p99 <= 100 ms; (b) <= 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from svcnet.apiserver.launcher import start_api_server
from svcnet.client.api import ApiClient
from svcnet.controllers.endpointslice.desired import desired_state
from svcnet.controllers.endpointslice.reconciler import reconcile

NODE = "bench-node"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def service(name: str, app: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def pod(name: str, app: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "echo",
                                                       "ports": [{"name": "http", "containerPort": 8080}]}]}}


def status(ip: str, ready: bool) -> dict:
    return {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def ip_of(i: int) -> str:
    return f"10.{100 + i // 65536}.{(i // 256) % 256}.{i % 256}"


async def bounded(coros, limit: int = 32) -> None:
    sem = asyncio.Semaphore(limit)

    async def run(c):
        async with sem:
            await c

    await asyncio.gather(*(run(c) for c in coros))


async def make_ready_pods(api: ApiClient, ns: str, names_apps: list[tuple[str, str]], offset: int) -> None:
    async def one(i: int, name: str, app: str) -> None:
        await api.create("pods", pod(name, app), ns)
        await api.patch("pods", name, status(ip_of(offset + i), True), ns, subresource="status")

    await bounded(one(i, n, a) for i, (n, a) in enumerate(names_apps))


async def flips(api: ApiClient, ns: str, services: int, count: int) -> tuple[list[float], list[float]]:
    await bounded(api.create("services", service(f"s{i}", f"a{i}"), ns) for i in range(services))
    await make_ready_pods(api, ns, [(f"p{i}", f"a{i}") for i in range(services)], 0)
    # Wait until every Service has its one-endpoint slice.
    while True:
        items = (await api.list_all("endpointslices", ns))["items"]
        if sum(len(s.get("endpoints") or []) for s in items) >= services:
            break
        await asyncio.sleep(0.2)
    slice_of = {s["metadata"]["labels"]["kubernetes.io/service-name"]: s for s in items if s.get("endpoints")}
    rv = (await api.list("endpointslices", ns, limit=1))["metadata"]["resourceVersion"]
    waiting: dict[str, tuple[asyncio.Future, bool | str]] = {}

    async def follow() -> None:
        async for kind, obj in api.watch("endpointslices", ns, resource_version=rv):
            if kind != "MODIFIED":
                continue
            svc = obj["metadata"]["labels"].get("kubernetes.io/service-name")
            entry = waiting.get(svc)
            if entry is None:
                continue
            fut, want = entry
            eps = obj.get("endpoints") or []
            got = eps[0]["conditions"]["ready"] if eps else None
            marker = (obj["metadata"].get("annotations") or {}).get("bench")
            matched = (isinstance(want, bool) and got == want) or (isinstance(want, str) and marker == want)
            if matched and not fut.done():
                fut.set_result(time.perf_counter())

    watcher = asyncio.create_task(follow())
    await asyncio.sleep(0.3)
    loop = asyncio.get_running_loop()
    controller_ms, direct_ms = [], []
    ready = dict.fromkeys(range(services), True)
    try:
        for n in range(count):
            i = (n * 7919) % services  # spread over the services
            ready[i] = not ready[i]
            fut = loop.create_future()
            waiting[f"s{i}"] = (fut, ready[i])
            start = time.perf_counter()
            await api.patch("pods", f"p{i}", status(ip_of(i), ready[i]), ns, subresource="status")
            done = await asyncio.wait_for(fut, 10)
            controller_ms.append((done - start) * 1000)
            del waiting[f"s{i}"]
        # Reference: the same watch path for a slice written directly (no controller).
        for n in range(min(count, 300)):
            i = (n * 7919) % services
            fut = loop.create_future()
            waiting[f"s{i}"] = (fut, f"m{n}")
            name = slice_of[f"s{i}"]["metadata"]["name"]
            start = time.perf_counter()
            await api.patch("endpointslices", name, {"metadata": {"annotations": {"bench": f"m{n}"}}}, ns)
            done = await asyncio.wait_for(fut, 10)
            direct_ms.append((done - start) * 1000)
            del waiting[f"s{i}"]
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    return controller_ms, direct_ms


async def build_big(api: ApiClient, ns: str, pods: int) -> tuple[float, float, int]:
    await make_ready_pods(api, ns, [(f"b{i}", "big") for i in range(pods)], 200_000)
    node = await api.get("nodes", NODE)
    pod_objs = (await api.list_all("pods", ns, label_selector="app=big"))["items"]
    rv = (await api.list("endpointslices", ns, limit=1))["metadata"]["resourceVersion"]
    seen: dict[str, int] = {}
    finished = asyncio.get_running_loop().create_future()

    async def follow() -> None:
        async for kind, obj in api.watch("endpointslices", ns, resource_version=rv,
                                         label_selector="kubernetes.io/service-name=big"):
            if kind in ("ADDED", "MODIFIED"):
                seen[obj["metadata"]["name"]] = len(obj.get("endpoints") or [])
                if sum(seen.values()) >= pods and not finished.done():
                    finished.set_result(time.perf_counter())

    watcher = asyncio.create_task(follow())
    await asyncio.sleep(0.3)
    start = time.perf_counter()
    created = await api.create("services", service("big", "big"), ns)
    try:
        end = await asyncio.wait_for(finished, 60)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    # Reference: the controller's own computation for the same objects, in this process.
    t0 = time.perf_counter()
    plan = reconcile(created, desired_state(created, pod_objs, {NODE: node}), [], 100)
    compute = time.perf_counter() - t0
    # Reference 2: the same slices written straight through the API (no controller), for a
    # Service name nobody selects, as concurrently as the controller writes them.
    for slice_ in plan.create:
        slice_["metadata"]["labels"]["kubernetes.io/service-name"] = "direct"
        slice_["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] = "bench"
    t0 = time.perf_counter()
    await asyncio.gather(*(api.create("endpointslices", s, ns) for s in plan.create))
    direct = time.perf_counter() - t0
    return end - start, compute, direct, len(plan.create)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="svcnet-bench-eps-") as tmp:
        server = start_api_server(Path(tmp) / "data", extra_args=["--log-level", "warning"])
        try:
            async with ApiClient.from_kubeconfig(str(server.kubeconfig_path), timeout=60) as api:
                await api.create("nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
                for ns in ("flips", "big"):
                    await api.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                    "metadata": {"name": ns}})
                t0 = time.perf_counter()
                controller_ms, direct_ms = await flips(api, "flips", args.services, args.flips)
                print(f"(a) readiness flip -> slice on a watch, {args.flips} flips over {args.services} "
                      f"services ({time.perf_counter() - t0:.0f}s incl. setup)")
                print(f"    controller path: p50 {pct(controller_ms, 50):.1f} ms  "
                      f"p99 {pct(controller_ms, 99):.1f} ms  mean {statistics.mean(controller_ms):.1f} ms"
                      "   (target p99 <= 100 ms)")
                print(f"    reference, direct slice write -> watch: p50 {pct(direct_ms, 50):.1f} ms  "
                      f"p99 {pct(direct_ms, 99):.1f} ms")
                print(f"    ratio p50 controller/direct: {pct(controller_ms, 50) / pct(direct_ms, 50):.2f}x")
                t0 = time.perf_counter()
                build, compute, direct, slices = await build_big(api, "big", args.pods)
                print(f"(b) one Service over {args.pods} Ready pods -> {slices} slices complete on a watch: "
                      f"{build * 1000:.0f} ms (target <= 1000 ms; pods set up in "
                      f"{time.perf_counter() - t0 - build:.0f}s)")
                print(f"    reference, desired state + reconcile plan alone: {compute * 1000:.0f} ms; "
                      f"ratio {build / compute:.1f}x")
                print(f"    reference, the same {slices} slices created directly through the API: "
                      f"{direct * 1000:.0f} ms; ratio {build / direct:.2f}x")
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--flips", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=10_000)
    asyncio.run(main(parser.parse_args()))
