"""`svcnet up`: the whole cluster on one machine, in one command.

The API server (SQLite under --data-dir, with the controllers inside), the scheduler and the
workload controllers, the cluster DNS and the lab (node namespaces running the node agent and
kube-proxy each), then the manifests given with -f. Ctrl-C stops everything and removes every
namespace, link and process it made.

Without root there are no network namespaces: `svcnet up` then runs one node ("local") whose
pods are plain local processes on loopback addresses (127.244.0.0/16), the user-space proxy
binding the ClusterIPs of a loopback service range (127.96.0.0/16) directly, and the DNS on
127.0.0.1:10053; nothing touches netfilter or routes (see docs/lab.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from svcnet.cli.common import parse_host_port, setup_logging
from svcnet.node.runtime import alive, start_svcnet, start_ticks, stop_group

if TYPE_CHECKING:
    from svcnet.lab.lab import Lab

log = logging.getLogger("svcnet.up")


def register(app: typer.Typer) -> None:
    app.command("up")(up)


def start_server(
    data_dir: Path, listen: str, log_dir: Path, extra: list[str]
) -> tuple[subprocess.Popen, str]:
    """`svcnet server` in a session of its own (so the terminal's Ctrl-C reaches only us and we
    stop things in order), logging to LOG_DIR/server.log; returns the process and its URL once
    it serves."""
    url_file = data_dir / "server-url"
    url_file.unlink(missing_ok=True)
    log_path = log_dir / "server.log"
    proc = start_svcnet(
        ["server", "--data-dir", str(data_dir), "--listen", listen, "--log-level", "warning", *extra],
        log_path,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"svcnet server exited with {proc.returncode}; see {log_path}:\n"
                + log_path.read_text(errors="replace")[-2000:]
            )
        url = url_file.read_text().strip() if url_file.exists() else ""
        if url:
            return proc, url
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"svcnet server did not start within 60s; see {log_path}")


def stop_previous_server(data_dir: Path) -> None:
    """The API server of an earlier `svcnet up` on this data directory that died without
    stopping it (kill -9): stop it, if the recorded PID still names that very process."""
    try:
        prev = json.loads((data_dir / "up.json").read_text())
    except (OSError, ValueError):
        return
    if prev.get("pid") and alive(int(prev["pid"]), None) and int(prev["pid"]) != os.getpid():
        raise SystemExit(f"svcnet up: already running (pid {prev['pid']}) with data directory {data_dir}")
    pid, ticks = prev.get("server_pid"), prev.get("server_ticks")
    if pid and ticks is not None and alive(int(pid), ticks):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(pid), signal.SIGTERM)
        deadline = time.monotonic() + 10
        while alive(int(pid), ticks) and time.monotonic() < deadline:
            time.sleep(0.1)
    (data_dir / "up.json").unlink(missing_ok=True)


async def apply_manifests(kubeconfig: Path, paths: list[str]) -> list[str]:
    """Create the objects in PATHS (namespaces first; an existing object is left as it is)."""
    from svcnet.client.api import ApiClient, ApiError
    from svcnet.client.filesource import load_objects

    objects = load_objects(paths)
    objects.sort(key=lambda o: 0 if o.get("kind") == "Namespace" else 1)
    done = []
    async with ApiClient.from_kubeconfig(str(kubeconfig)) as api:
        for obj in objects:
            what = f"{obj.get('kind', '?').lower()}/{(obj.get('metadata') or {}).get('name')}"
            try:
                await api.create(obj.get("kind", ""), obj)
                done.append(f"{what} created")
            except ApiError as e:
                done.append(f"{what} unchanged" if e.code == 409 else f"{what}: {e}")
    return done


def host_of(text: str, flag: str) -> str:
    """The host of FLAG's HOST:PORT value (a usage error if it is not one)."""
    try:
        return parse_host_port(text)[0]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=flag) from exc


def up(
    data_dir: Annotated[Path, typer.Option(help="API server state, lab state and logs.")] = Path(
        "./svcnet-data"
    ),
    filename: Annotated[
        list[str] | None, typer.Option("-f", "--filename", help="Manifests to apply (repeatable).")
    ] = None,
    nodes: Annotated[int, typer.Option("--nodes", min=1, max=50, help="How many nodes.")] = 2,
    proxy_mode: Annotated[str, typer.Option("--proxy-mode", help="iptables|nftables|userspace")] = "iptables",
    listen: Annotated[str, typer.Option(help="API server address (loopback).")] = "127.0.0.1:6443",
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "warning",
    dns_listen: Annotated[
        str, typer.Option("--dns-listen", help="Without root: where the cluster DNS listens (loopback).")
    ] = "127.0.0.1:10053",
) -> None:
    """Run the API server, controllers, DNS and a multi-node lab; Ctrl-C removes it all.

    Without root: one node whose pods are local processes on 127.244.0.0/16, the user-space
    proxy on ClusterIPs of 127.96.0.0/16 and the DNS on --dns-listen (--nodes and --proxy-mode
    do not apply)."""
    setup_logging(log_level)
    if os.geteuid() != 0:
        up_local(data_dir, filename, listen, dns_listen)
        return
    if host_of(listen, "--listen") not in ("127.0.0.1", "localhost"):
        raise typer.BadParameter(
            "the lab reaches the API server through loopback relays", param_hint="--listen"
        )
    from svcnet.lab.lab import Lab, LabOptions
    from svcnet.lab.topology import CLUSTER_CIDR, LB_POOL, SERVICE_CIDR

    data_dir = data_dir.resolve()
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    stop_previous_server(data_dir)
    server, url = start_server(
        data_dir,
        listen,
        data_dir / "logs",
        ["--service-cluster-ip-range", SERVICE_CIDR, "--cluster-cidr", CLUSTER_CIDR, "--lb-pool", LB_POOL],
    )
    kubeconfig = data_dir / "admin.kubeconfig"
    # Who is who, for `svcnet lab cleanup` and for tests that restart the server.
    (data_dir / "up.json").write_text(json.dumps({"pid": os.getpid(), "server_pid": server.pid,
                                                  "server_ticks": start_ticks(server.pid), "url": url}))
    lab = Lab(
        LabOptions(
            kubeconfig=kubeconfig,
            data_dir=data_dir / "lab",
            nodes=nodes,
            proxy_mode=proxy_mode,
            log_level="info",
        )
    )

    async def main() -> None:
        from svcnet.controllers.workloads.runner import run_workloads

        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        workloads = asyncio.ensure_future(run_workloads(str(kubeconfig), stop))
        try:
            await lab.start()
            applied = await apply_manifests(kubeconfig, filename) if filename else []
            announce(url, kubeconfig, lab, applied)
            await stop.wait()
        finally:
            print(
                "\nsvcnet up: stopping; removing every namespace, link and process it made ...",
                file=sys.stderr,
            )
            stop.set()
            await lab.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(workloads, 5)

    try:
        asyncio.run(main())
    finally:
        stop_group(server)
        (data_dir / "up.json").unlink(missing_ok=True)
        print("svcnet up: stopped; nothing left behind.", file=sys.stderr)


def announce(url: str, kubeconfig: Path, lab: Lab, applied: list[str]) -> None:
    nodes = ", ".join(f"{n.name} {n.ip}" for n in lab.topo.nodes)
    data = lab.data_dir
    print(
        f"""
svcnet is up: API server {url}, nodes {nodes}, lab {lab.prefix}.
{chr(10).join("  " + line for line in applied)}
kubeconfig: {kubeconfig}
try:
  export KUBECONFIG={kubeconfig}
  kubectl get nodes,pods,svc -o wide
  svcnet demo --data-dir {data.parent}     # the chapter's story (adds a web Deployment and a frontend pod)
  svcnet lab exec --data-dir {data} frontend -- curl -s http://backend-svc/
  svcnet lab exec --data-dir {data} external -- curl -s http://{lab.topo.nodes[0].ip}:30080/
Ctrl-C stops everything and removes every namespace, link and process.
""",
        flush=True,
    )


# -- without root: pods as local processes on loopback ------------------------------------------

LOCAL_SERVICE_CIDR = "127.96.0.0/16"
LOCAL_POD_CIDR = "127.244.0.0/16"
LOCAL_NODE = "local"


def stop_local_children(data_dir: Path) -> None:
    """Children an earlier `svcnet up` without root recorded and left running (kill -9):
    SIGKILL their groups while the PID still names the very process it started."""
    try:
        prev = json.loads((data_dir / "up.json").read_text())
    except (OSError, ValueError):
        return
    if prev.get("pid") and alive(int(prev["pid"]), None) and int(prev["pid"]) != os.getpid():
        return  # still running: stop_previous_server refuses to start a second one
    from svcnet.lab.lab import kill_recorded_children

    kill_recorded_children(prev)


def up_local(data_dir: Path, filename: list[str] | None, listen: str, dns_listen: str) -> None:
    """No root: the API server (loopback endpoints allowed), the controllers, the workloads and
    scheduler, one node agent running pods as local processes on 127.244.0.0/16, the user-space
    proxy binding ClusterIPs of 127.96.0.0/16 directly (no rules), and the DNS on a high port."""
    if host_of(listen, "--listen") not in ("127.0.0.1", "localhost"):
        raise typer.BadParameter("without root everything runs on loopback", param_hint="--listen")
    if not host_of(dns_listen, "--dns-listen").startswith("127."):
        raise typer.BadParameter("without root everything runs on loopback", param_hint="--dns-listen")
    data_dir = data_dir.resolve()
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stop_local_children(data_dir)
    stop_previous_server(data_dir)
    server, url = start_server(
        data_dir,
        listen,
        log_dir,
        [
            "--service-cluster-ip-range",
            LOCAL_SERVICE_CIDR,
            "--cluster-cidr",
            LOCAL_POD_CIDR,
            "--allow-loopback-endpoints",
        ],
    )
    kubeconfig = data_dir / "admin.kubeconfig"
    children: list[tuple[str, subprocess.Popen]] = []

    def record() -> None:
        state = {
            "pid": os.getpid(),
            "server_pid": server.pid,
            "server_ticks": start_ticks(server.pid),
            "url": url,
            "mode": "local",
            "children": [
                {"name": n, "pid": p.pid, "ticks": start_ticks(p.pid)} for n, p in children
            ],
        }
        (data_dir / "up.json").write_text(json.dumps(state))

    record()
    kc = ["--kubeconfig", str(kubeconfig)]
    specs = [
        (
            "agent-local",
            ["node", *kc, "--node-name", LOCAL_NODE, "--local-pods", "--node-ip", "127.0.0.1",
             "--pod-cidr", LOCAL_POD_CIDR, "--data-dir", str(data_dir / "node-local"),
             "--cleanup-on-exit", "--log-level", "info"],
        ),
        (
            "proxy-local",
            ["proxy", "userspace", *kc, "--node-name", LOCAL_NODE, "--node-ip", "127.0.0.1",
             "--redirect", "none", "--nodeport-addresses", "127.0.0.0/8",
             # One local node and no load balancer: nothing checks healthz; no fixed ports taken.
             "--healthz-bind-address", "", "--metrics-bind-address", ""],
        ),
        ("dns", ["dns", *kc, "--listen", dns_listen]),
    ]

    async def main() -> None:
        from svcnet.client.api import ApiClient, ApiError
        from svcnet.client.informer import RETRYABLE
        from svcnet.controllers.workloads.runner import run_workloads

        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        workloads = asyncio.ensure_future(run_workloads(str(kubeconfig), stop))
        try:
            for name, args in specs:
                children.append((name, start_svcnet(args, log_dir / f"{name}.log")))
                record()
            async with ApiClient.from_kubeconfig(str(kubeconfig)) as api:
                deadline = time.monotonic() + 30
                while not stop.is_set():
                    for name, proc in children:
                        if proc.poll() is not None:
                            log_file = log_dir / f"{name}.log"
                            raise RuntimeError(f"{name} exited with {proc.returncode}; see {log_file}")
                    with contextlib.suppress(ApiError, *RETRYABLE):
                        await api.get("nodes", LOCAL_NODE)
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"node {LOCAL_NODE} did not register within 30s")
                    await asyncio.sleep(0.2)
            applied = await apply_manifests(kubeconfig, filename) if filename else []
            announce_local(url, kubeconfig, applied, dns_listen)
            await stop.wait()
        finally:
            print("\nsvcnet up: stopping every process it started ...", file=sys.stderr)
            stop.set()
            # The agent first (it stops its pods), then the rest.
            for name, proc in children:
                if name.startswith("agent-"):
                    await asyncio.to_thread(stop_group, proc, 15)
            await asyncio.gather(*(asyncio.to_thread(stop_group, p) for _n, p in children))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(workloads, 5)

    try:
        asyncio.run(main())
    finally:
        for _name, proc in children:
            stop_group(proc)
        stop_group(server)
        (data_dir / "up.json").unlink(missing_ok=True)
        print("svcnet up: stopped; nothing left behind.", file=sys.stderr)


def announce_local(url: str, kubeconfig: Path, applied: list[str], dns_listen: str) -> None:
    dns_host, dns_port = dns_listen.rsplit(":", 1)
    print(
        f"""
svcnet is up without root: API server {url}, node {LOCAL_NODE} (pods are local processes on
{LOCAL_POD_CIDR}), Services on {LOCAL_SERVICE_CIDR} through the user-space proxy, DNS on {dns_listen}.
{chr(10).join("  " + line for line in applied)}
kubeconfig: {kubeconfig}
try:
  export KUBECONFIG={kubeconfig}
  kubectl create deployment web --image=echo --port=8080 --replicas=2
  kubectl expose deployment web --port=8080
  kubectl get pods,svc -o wide
  curl -s http://CLUSTER-IP:8080/          # ClusterIPs work directly from this machine
  dig @{dns_host} -p {dns_port} web.default.svc.cluster.local +short
Ports below 1024 need root (or CAP_NET_BIND_SERVICE); pods have no resolv.conf of their own.
Ctrl-C stops every process it started.
""",
        flush=True,
    )
