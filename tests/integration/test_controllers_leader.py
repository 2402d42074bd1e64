"""Two `svcnet controllers` processes against one server: a Lease elects one; only it acts,
so slices never conflict; when it is killed the other takes over."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_controllers import eventually, make_pods, service, set_status, slices_of

from svcnet.apiserver.launcher import SRC, start_api_server
from svcnet.client.api import ApiClient

LEASE = ("kube-system", "svcnet-controller-manager")


def start_controllers(kubeconfig: Path, identity: str, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "svcnet",
                "controllers",
                "--kubeconfig",
                str(kubeconfig),
                "--identity",
                identity,
                "--log-level",
                "info",
                "--leader-elect-lease-duration",
                "2",
                "--leader-elect-renew-deadline",
                "1.5",
                "--leader-elect-retry-period",
                "0.2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )


class SliceWatch:
    """Follows every slice event of a namespace and checks, after each one, that no pod is
    published by two slices at once (what two uncoordinated writers would produce)."""

    def __init__(self) -> None:
        self.slices: dict[str, list[str]] = {}
        self.events = 0
        self.violations: list[str] = []

    def apply(self, kind: str, obj: dict) -> None:
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            self.slices.pop(name, None)
        elif kind in ("ADDED", "MODIFIED"):
            self.slices[name] = [ep["targetRef"]["name"] for ep in obj.get("endpoints") or []]
        else:
            return
        self.events += 1
        seen: dict[str, str] = {}
        for slice_name, pods in self.slices.items():
            for pod in pods:
                if pod in seen:
                    self.violations.append(f"{pod} in {seen[pod]} and {slice_name}")
                seen[pod] = slice_name

    def pods(self) -> set[str]:
        return {p for pods in self.slices.values() for p in pods}


async def test_two_controller_processes_elect_one_leader_and_fail_over(tmp_path) -> None:
    server = start_api_server(tmp_path / "data", extra_args=["--no-controllers"])
    procs: dict[str, subprocess.Popen] = {}
    logs = {name: tmp_path / f"{name}.log" for name in ("ctl-a", "ctl-b")}
    try:
        for name, log in logs.items():
            procs[name] = start_controllers(server.kubeconfig_path, name, log)
        async with ApiClient.from_kubeconfig(str(server.kubeconfig_path)) as api:

            async def holder():
                try:
                    lease = await api.get("leases", LEASE[1], LEASE[0])
                except Exception:
                    return None
                return lease["spec"].get("holderIdentity") or None

            leader = await eventually(holder, 20)
            follower = "ctl-b" if leader == "ctl-a" else "ctl-a"
            await api.create("nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
            await api.create("services", service("web", {"app": "web"}), "default")
            watch = SliceWatch()
            rv = (await api.list("endpointslices", "default"))["metadata"]["resourceVersion"]

            async def follow() -> None:
                async for kind, obj in api.watch(
                    "endpointslices",
                    "default",
                    resource_version=rv,
                    label_selector="kubernetes.io/service-name=web",
                ):
                    watch.apply(kind, obj)

            follower_task = asyncio.create_task(follow())
            try:
                await make_pods(api, "default", 120, {"app": "web"}, "n1")
                await asyncio.gather(
                    *(
                        set_status(api, "default", f"p{i}", f"10.244.0.{i + 1}", ready=False)
                        for i in range(0, 120, 7)
                    )
                )
                await eventually(lambda: asyncio.sleep(0, result=len(watch.pods()) == 120), 15)
                # Only the leader ever started its controllers.
                assert "controllers running" in logs[leader].read_text()
                assert "controllers running" not in logs[follower].read_text()

                procs[leader].send_signal(signal.SIGKILL)
                procs[leader].wait(10)
                killed_at = time.monotonic()
                await eventually(lambda: _holder_is(api, follower), 15)
                takeover = time.monotonic() - killed_at
                assert takeover < 6, f"takeover took {takeover:.1f}s with a 2 s lease"
                await make_pods(api, "default", 30, {"app": "web"}, "n1", prefix="q")
                await eventually(lambda: asyncio.sleep(0, result=len(watch.pods()) == 150), 15)
            finally:
                follower_task.cancel()
                await asyncio.gather(follower_task, return_exceptions=True)
            assert watch.violations == []
            final = await slices_of(api, "default", "web")
            assert sum(len(s["endpoints"]) for s in final) == 150
            lease = await api.get("leases", LEASE[1], LEASE[0])
            assert lease["spec"]["holderIdentity"] == follower
            assert lease["spec"]["leaseTransitions"] >= 1
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        server.stop()


async def _holder_is(api: ApiClient, identity: str) -> bool:
    lease = await api.get("leases", LEASE[1], LEASE[0])
    return lease["spec"].get("holderIdentity") == identity
