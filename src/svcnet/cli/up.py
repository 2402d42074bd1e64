"""`svcnet up`: the whole cluster on one machine, in one command.

The API server (SQLite under --data-dir, with the controllers inside), the scheduler and the
workload controllers, the cluster DNS and the lab (node namespaces running the node agent and
kube-proxy each), then the manifests given with -f. Ctrl-C stops everything and removes every
namespace, link and process it made.

Without root there are no network namespaces: `svcnet up` then says so and stops; the
user-space proxy on a loopback service range is the way to try Services without root (see
docs/lab.md)."""

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
from typing import Annotated

import typer

from svcnet.cli.common import parse_host_port
from svcnet.node.runtime import alive, start_ticks

log = logging.getLogger("svcnet.up")


def register(app: typer.Typer) -> None:
    app.command("up")(up)


def start_server(
    data_dir: Path, listen: str, log_path: Path, extra: list[str]
) -> tuple[subprocess.Popen, str]:
    """`svcnet server` in a session of its own (so the terminal's Ctrl-C reaches only us and we
    stop things in order); returns the process and its URL once it serves."""
    url_file = data_dir / "server-url"
    url_file.unlink(missing_ok=True)
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "svcnet",
                "server",
                "--data-dir",
                str(data_dir),
                "--listen",
                listen,
                "--log-level",
                "warning",
                *extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
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


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


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
) -> None:
    """Run the API server, controllers, DNS and a multi-node lab; Ctrl-C removes it all."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if os.geteuid() != 0:
        print(
            "svcnet up: the lab needs root for network namespaces and iptables (try: sudo make run).\n"
            "Without root, run the API server and the user-space proxy on a loopback service range:\n"
            "  svcnet server --data-dir ./svcnet-data --service-cluster-ip-range 127.96.0.0/16 &\n"
            "  svcnet proxy userspace --kubeconfig ./svcnet-data/admin.kubeconfig --node-name local\n"
            "Pods as local processes without namespaces are not implemented yet (docs/lab.md).",
            file=sys.stderr,
        )
        raise typer.Exit(2)
    try:
        host, _port = parse_host_port(listen)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--listen") from exc
    if host not in ("127.0.0.1", "localhost"):
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
        data_dir / "logs" / "server.log",
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
        stop_process(server)
        (data_dir / "up.json").unlink(missing_ok=True)
        print("svcnet up: stopped; nothing left behind.", file=sys.stderr)


def announce(url: str, kubeconfig: Path, lab: object, applied: list[str]) -> None:
    from svcnet.lab.lab import Lab

    assert isinstance(lab, Lab)
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
