"""The chapter's story, told against a running lab (`svcnet demo`, and the e2e tests).

Each step acts through the API and observes through clients in the lab's namespaces (a
frontend pod, the `external` namespace), and returns what the clients saw so that tests can
assert on it and the command can print it."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from svcnet.client.api import ApiClient, ApiError
from svcnet.controllers.endpointslice.desired import pod_is_ready
from svcnet.lab.lab import read_state, target_netns
from svcnet.lab.topology import EXTERNAL_IP

Obj = dict[str, Any]

HTTP_CLIENT = r"""
import sys, time, urllib.request
url, count, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never an http_proxy
for _ in range(count):
    try:
        print(opener.open(url, timeout=2).read().decode().strip(), flush=True)
    except Exception as e:
        print("ERR", e, flush=True)
    if pause:
        time.sleep(pause)
"""

REPLY = re.compile(r"pod=(\S+) ip=(\S+) node=(\S+) client=(\S+)")

BACKEND = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "backend"},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "backend", "tier": "api"}},
        "template": {
            "metadata": {"labels": {"app": "backend", "tier": "api"}},
            "spec": {
                "containers": [
                    {"name": "backend", "image": "svcnet/echo", "ports": [{"containerPort": 8080}]}
                ]
            },
        },
    },
}
BACKEND_SVC = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "backend-svc"},
    "spec": {
        "selector": {"app": "backend", "tier": "api"},
        "ports": [{"protocol": "TCP", "port": 80, "targetPort": 8080}],
    },
}
# web-svc (NodePort 30080) and web-svc-lb select app=web; the demo brings the pods.
WEB = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [{"name": "web", "image": "svcnet/echo", "ports": [{"containerPort": 8080}]}]
            },
        },
    },
}
WEB_SVC = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web-svc"},
    "spec": {
        "type": "NodePort",
        "selector": {"app": "web"},
        "ports": [{"protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080}],
    },
}
WEB_LB = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web-svc-lb"},
    "spec": {
        "type": "LoadBalancer",
        "selector": {"app": "web"},
        "ports": [{"protocol": "TCP", "port": 80, "targetPort": 8080}],
    },
}
MY_DATABASE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "my-database"},
    "spec": {"type": "ExternalName", "externalName": "db.example.com"},
}
DB_HEADLESS = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "db-headless"},
    "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]},
}
DB = {
    "apiVersion": "apps/v1",
    "kind": "StatefulSet",
    "metadata": {"name": "db"},
    "spec": {
        "serviceName": "db-headless",
        "replicas": 2,
        "selector": {"matchLabels": {"app": "db"}},
        "template": {
            "metadata": {"labels": {"app": "db"}},
            "spec": {
                "containers": [{"name": "db", "image": "svcnet/echo", "ports": [{"containerPort": 5432}]}]
            },
        },
    },
}
FRONTEND = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "frontend", "labels": {"app": "frontend"}},
    "spec": {"containers": [{"name": "client", "image": "busybox", "command": ["sleep", "infinity"]}]},
}


@dataclass
class Reply:
    pod: str
    ip: str
    node: str
    client: str


@dataclass
class StepResult:
    title: str
    ok: bool
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def parse_replies(text: str) -> list[Reply | None]:
    out: list[Reply | None] = []
    for line in text.splitlines():
        m = REPLY.search(line)
        out.append(Reply(*m.groups()) if m else None)
    return out


class Demo:
    def __init__(self, lab_dir: Path, kubeconfig: Path | None = None, namespace: str = "default") -> None:
        self.lab_dir = lab_dir
        self.state = read_state(lab_dir)
        self.kubeconfig = kubeconfig or Path(self.state["kubeconfig"])
        self.namespace = namespace
        self.api = ApiClient.from_kubeconfig(str(self.kubeconfig))

    async def close(self) -> None:
        await self.api.close()

    # -- clients ---------------------------------------------------------------------------------

    def netns_of(self, target: str) -> str:
        ns = target_netns(self.state, target, self.namespace)
        if ns is None:
            raise RuntimeError(f"no lab namespace for {target!r}")
        return ns

    def run_in(self, target: str, script: str, timeout: float = 60) -> str:
        res = subprocess.run(
            ["ip", "netns", "exec", self.netns_of(target), "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return res.stdout

    def curl(self, target: str, url: str, count: int = 1, interval: float = 0.0) -> list[Reply | None]:
        """COUNT HTTP GETs, each on a new connection (as `curl` does), one reply per request
        (None for a failure). Python's urllib, so the demo needs no curl on the machine."""
        res = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.netns_of(target),
                sys.executable,
                "-c",
                HTTP_CLIENT,
                url,
                str(count),
                str(interval),
            ],
            capture_output=True,
            text=True,
            timeout=count * (2.5 + interval) + 10,
        )
        return parse_replies(res.stdout)

    # -- objects ---------------------------------------------------------------------------------

    async def ensure(self, resource: str, obj: Obj) -> Obj:
        try:
            return await self.api.create(resource, obj, self.namespace)
        except ApiError as e:
            if e.code != 409:
                raise
            return await self.api.get(resource, obj["metadata"]["name"], self.namespace)

    async def ready_pods(self, selector: str) -> list[Obj]:
        pods = (await self.api.list("pods", self.namespace, label_selector=selector)).get("items") or []
        return [p for p in pods if not p["metadata"].get("deletionTimestamp") and pod_is_ready(p)]

    async def wait_ready(self, selector: str, count: int, timeout: float = 30) -> list[Obj]:
        deadline = time.monotonic() + timeout
        while True:
            pods = await self.ready_pods(selector)
            if len(pods) >= count or time.monotonic() > deadline:
                return pods
            await asyncio.sleep(0.2)

    async def cluster_ip(self, name: str) -> str:
        return (await self.api.get("services", name, self.namespace))["spec"]["clusterIP"]

    async def wait_endpoints(self, service: str, count: int, timeout: float = 30) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            slices = (
                await self.api.list(
                    "endpointslices", self.namespace, label_selector=f"kubernetes.io/service-name={service}"
                )
            ).get("items") or []
            ips = [
                a
                for s in slices
                for e in s.get("endpoints") or []
                if (e.get("conditions") or {}).get("ready")
                for a in e.get("addresses") or []
            ]
            if len(ips) >= count or time.monotonic() > deadline:
                return ips
            await asyncio.sleep(0.1)

    async def setup(self) -> StepResult:
        for resource, obj in (
            ("deployments", BACKEND),
            ("services", BACKEND_SVC),
            ("deployments", WEB),
            ("services", WEB_SVC),
            ("services", WEB_LB),
            ("services", MY_DATABASE),
            ("services", DB_HEADLESS),
            ("statefulsets", DB),
            ("pods", FRONTEND),
        ):
            await self.ensure(resource, obj)
        backends = await self.wait_ready("app=backend", 3)
        await self.wait_ready("app=web", 1)
        await self.wait_ready("app=frontend", 1)
        await self.wait_ready("app=db", 2)
        await self.wait_endpoints("backend-svc", 3)
        await self.wait_endpoints("web-svc", 1)
        return StepResult(
            "Set up: backend (3 pods) behind backend-svc, web behind web-svc and web-svc-lb, "
            "db-0/db-1 behind db-headless, my-database, a frontend client pod",
            len(backends) >= 3,
            [
                f"{p['metadata']['name']} {p['status'].get('podIP')} on {p['spec'].get('nodeName')}"
                for p in backends
            ],
        )

    # -- the story -------------------------------------------------------------------------------

    async def step_clusterip(self, count: int = 10) -> StepResult:
        ip = await self.cluster_ip("backend-svc")
        replies = self.curl("frontend", f"http://{ip}/", count)
        ok_replies = [r for r in replies if r]
        spread = Counter(r.pod for r in ok_replies)
        lines = [f"{n} replies from {pod}" for pod, n in spread.most_common()]
        return StepResult(
            f"curl the ClusterIP {ip} {count} times from the frontend pod",
            len(ok_replies) == count and len(spread) > 1,
            lines,
            {"replies": replies, "spread": spread, "cluster_ip": ip},
        )

    async def step_delete_pod(self) -> StepResult:
        ip = await self.cluster_ip("backend-svc")
        before = {p["metadata"]["name"]: p["status"]["podIP"] for p in await self.ready_pods("app=backend")}
        victim = sorted(before)[0]
        # A client keeps calling while the pod goes away.
        loop = asyncio.get_running_loop()
        during = loop.run_in_executor(None, self.curl, "frontend", f"http://{ip}/", 20, 0.1)
        await asyncio.sleep(0.3)
        await self.api.delete("pods", victim, self.namespace)
        replies = await during
        after_pods = await self.wait_ready("app=backend", len(before))
        deadline = time.monotonic() + 20
        while (
            victim in {p["metadata"]["name"] for p in after_pods} or len(after_pods) < len(before)
        ) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            after_pods = await self.ready_pods("app=backend")
        after = {p["metadata"]["name"]: p["status"]["podIP"] for p in after_pods}
        new = {n: i for n, i in after.items() if n not in before}
        # The replacement joins the pool: keep asking until it answers (or give up).
        seen_new = False
        for _ in range(40):
            got = {r.pod for r in self.curl("frontend", f"http://{ip}/", 5) if r}
            if got & set(new):
                seen_new = True
                break
        failed = sum(1 for r in replies if r is None)
        lines = [
            f"deleted {victim} ({before[victim]}); {len(replies) - failed}/{len(replies)} requests "
            "during the deletion succeeded"
        ]
        lines += [
            f"replacement {n} has IP {i}" + (" and answers through the ClusterIP" if seen_new else "")
            for n, i in new.items()
        ]
        return StepResult(
            "Delete a backend pod while a client keeps calling",
            failed == 0 and bool(new) and seen_new and all(i not in before.values() for i in new.values()),
            lines,
            {"victim": victim, "new": new, "failed": failed, "seen_new": seen_new},
        )

    async def step_scale(self, replicas: int = 5) -> StepResult:
        await self.api.patch(
            "deployments",
            "backend",
            {"spec": {"replicas": replicas}},
            self.namespace,
            subresource="scale",
            patch_type="merge",
        )
        pods = await self.wait_ready("app=backend", replicas)
        await self.wait_endpoints("backend-svc", replicas)
        ip = await self.cluster_ip("backend-svc")
        spread: Counter[str] = Counter()
        for _ in range(6):
            spread.update(r.pod for r in self.curl("frontend", f"http://{ip}/", 10) if r)
            if len(spread) >= replicas:
                break
        return StepResult(
            f"Scale backend to {replicas}",
            len(pods) >= replicas and len(spread) >= replicas,
            [f"{len(pods)} ready pods; {len(spread)} distinct pods answered"]
            + [f"{n} replies from {p}" for p, n in spread.most_common()],
            {"spread": spread},
        )

    async def step_dns(self) -> StepResult:
        names = [
            "backend-svc",
            "backend-svc.default",
            "backend-svc.default.svc.cluster.local",
            "db-0.db-headless.default.svc.cluster.local",
            "my-database.default.svc.cluster.local",
        ]
        answers: dict[str, str] = {}
        for name in names:
            out = self.run_in("frontend", f"dig +search +short {name} 2>/dev/null | head -3", timeout=15)
            answers[name] = " ".join(out.split()) or "(no answer)"
        ip = await self.cluster_ip("backend-svc")
        ok = all(answers[n] == ip for n in names[:3])
        return StepResult(
            "Resolve the names from the frontend pod (its resolv.conf: kube-dns, search list, ndots:5)",
            ok,
            [f"{n:50} {a}" for n, a in answers.items()],
            {"answers": answers},
        )

    async def step_nodeport(self) -> StepResult:
        lines = []
        ok = True
        results = {}
        for node in self.state["nodes"]:
            replies = self.curl("external", f"http://{node['ip']}:30080/", 3)
            good = [r for r in replies if r]
            results[node["name"]] = good
            ok = ok and len(good) == 3
            lines.append(
                f"external -> {node['name']} {node['ip']}:30080: {len(good)}/3 answered"
                + (f" (by {good[0].pod} on {good[0].node})" if good else "")
            )
        return StepResult(
            "Reach the NodePort from outside through every node", ok, lines, {"results": results}
        )

    async def lb_ip(self, timeout: float = 20) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            svc = await self.api.get("services", "web-svc-lb", self.namespace)
            ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            if ingress and ingress[0].get("ip"):
                return ingress[0]["ip"]
            await asyncio.sleep(0.2)
        return None

    async def step_traffic_policy(self) -> StepResult:
        ip = await self.lb_ip()
        if ip is None:
            return StepResult(
                "externalTrafficPolicy Cluster vs Local", False, ["web-svc-lb got no load-balancer IP"]
            )
        seen: dict[str, set[str]] = {}
        for policy in ("Cluster", "Local"):
            await self.api.patch(
                "services",
                "web-svc-lb",
                {"spec": {"externalTrafficPolicy": policy}},
                self.namespace,
                patch_type="merge",
            )
            clients: set[str] = set()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                replies = [r for r in self.curl("external", f"http://{ip}/", 6) if r]
                clients = {r.client.rsplit(":", 1)[0] for r in replies}
                want_local = policy == "Local"
                if (
                    replies
                    and (EXTERNAL_IP in clients) == want_local
                    and len(replies) == 6
                    and (not want_local or clients == {EXTERNAL_IP})
                ):
                    break
                await asyncio.sleep(0.5)
            seen[policy] = clients
        ok = EXTERNAL_IP not in seen["Cluster"] and seen["Local"] == {EXTERNAL_IP}
        return StepResult(
            f"externalTrafficPolicy through the load balancer {ip}: the client address a pod sees",
            ok,
            [f"{p:8} pod saw client {', '.join(sorted(c)) or '(nothing)'}" for p, c in seen.items()]
            + [f"(the external client is {EXTERNAL_IP}; Cluster SNATs to the node, Local keeps it)"],
            {"seen": seen, "lb_ip": ip},
        )

    def steps(self) -> list[Callable[[], Awaitable[StepResult]]]:
        """The whole story in order, set-up first (what `svcnet demo` walks)."""
        return [
            self.setup,
            self.step_clusterip,
            self.step_delete_pod,
            self.step_scale,
            self.step_dns,
            self.step_nodeport,
            self.step_traffic_policy,
        ]
