"""`svcnet lab` (run a multi-node lab against an API server) and `svcnet lab exec`."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from svcnet.cli.common import setup_logging

if TYPE_CHECKING:
    from collections.abc import Callable

    from svcnet.lab.lab import Lab

lab_app = typer.Typer(help="A multi-node cluster in network namespaces.", no_args_is_help=False)


def register(app: typer.Typer) -> None:
    app.add_typer(lab_app, name="lab")


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        print(
            f"svcnet {what}: network namespaces need root (run with sudo, or use `svcnet up`, which falls "
            "back to local processes without root)",
            file=sys.stderr,
        )
        raise typer.Exit(2)


async def run_lab(lab: Lab, announce: Callable[[Lab], None] | None = None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    try:
        await lab.start()
        if announce:
            announce(lab)
        await stop.wait()
    finally:
        print(
            "svcnet: stopping; removing every namespace, link and process the lab made ...", file=sys.stderr
        )
        await lab.stop()


@lab_app.callback(invoke_without_command=True)
def lab(
    ctx: typer.Context,
    kubeconfig: Annotated[
        Path | None, typer.Option("--kubeconfig", help="API server kubeconfig (on loopback).")
    ] = None,
    nodes: Annotated[int, typer.Option("--nodes", min=1, max=50, help="How many nodes.")] = 2,
    proxy_mode: Annotated[str, typer.Option("--proxy-mode", help="iptables|nftables|userspace")] = "iptables",
    data_dir: Annotated[Path, typer.Option(help="Lab state, node agents' state and logs.")] = Path(
        "./svcnet-data/lab"
    ),
    dns: Annotated[bool, typer.Option(help="Run the cluster DNS behind kube-system/kube-dns.")] = True,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run N node namespaces (agent + kube-proxy each), an `external` namespace and the DNS until Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return
    if kubeconfig is None:
        raise typer.BadParameter("--kubeconfig is required", param_hint="--kubeconfig")
    require_root("lab")
    from svcnet.lab.lab import Lab, LabOptions

    setup_logging(log_level)
    lab_ = Lab(
        LabOptions(
            kubeconfig=kubeconfig.resolve(),
            data_dir=data_dir.resolve(),
            nodes=nodes,
            proxy_mode=proxy_mode,
            dns=dns,
            log_level=log_level,
        )
    )

    def announce(running: Lab) -> None:
        print(f"svcnet lab {running.prefix}: {nodes} nodes ready; logs in {running.log_dir}", flush=True)
        node_ip = running.topo.nodes[0].ip
        print(f"try:  svcnet lab exec external -- curl -s http://{node_ip}:NODEPORT/", flush=True)

    asyncio.run(run_lab(lab_, announce))


@lab_app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="node-N, external, net, or a pod name.")],
    namespace: Annotated[str, typer.Option("-n", "--namespace", help="The pod's namespace.")] = "default",
    data_dir: Annotated[Path, typer.Option(help="The running lab's data directory.")] = Path(
        "./svcnet-data/lab"
    ),
) -> None:
    """Run a command in a lab namespace: `svcnet lab exec node-1|POD|external -- CMD ...`."""
    from svcnet.lab.lab import read_state, target_netns

    cmd = list(ctx.args)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise typer.BadParameter("give a command after --")
    try:
        state = read_state(data_dir)
    except FileNotFoundError as e:
        print(f"svcnet lab exec: {e}", file=sys.stderr)
        raise typer.Exit(2) from e
    ns = target_netns(state, target, namespace)
    if ns is None:
        print(
            f"svcnet lab exec: no node, pod or namespace {target!r} in lab {state['prefix']}", file=sys.stderr
        )
        raise typer.Exit(2)
    # ip netns exec also bind-mounts the pod's /etc/netns/NS/resolv.conf, so names resolve
    # through the cluster DNS as they do for the pod's own processes.
    os.execvp("ip", ["ip", "netns", "exec", ns, *cmd])


@lab_app.command("logs")
def logs(
    pod: Annotated[str, typer.Argument(help="The pod's name.")],
    container: Annotated[str | None, typer.Option("-c", "--container", help="Default: the first.")] = None,
    namespace: Annotated[str, typer.Option("-n", "--namespace", help="The pod's namespace.")] = "default",
    data_dir: Annotated[Path, typer.Option(help="The running lab's data directory.")] = Path(
        "./svcnet-data/lab"
    ),
) -> None:
    """Print a container's output, every run of it (what `kubectl logs` shows; svcnet's API
    server does not serve pods/log, so this reads the node agent's files)."""
    import json

    from svcnet.lab.lab import read_state

    try:
        state = read_state(data_dir)
    except FileNotFoundError as e:
        print(f"svcnet lab logs: {e}", file=sys.stderr)
        raise typer.Exit(2) from e
    for node in state["nodes"]:
        for pod_dir in (data_dir / node["name"] / "pods").glob("*"):
            try:
                saved = json.loads((pod_dir / "state.json").read_text())
            except (OSError, ValueError):
                continue
            if saved.get("name") != pod or saved.get("namespace") != namespace:
                continue
            names = list(saved.get("containers") or {})
            app = [n for n in names if n not in (saved.get("initContainers") or [])]
            name = container or (app[0] if app else "")
            log_file = pod_dir / f"{name}.log"
            if name not in names or not log_file.exists():
                have = ", ".join(names)
                print(
                    f"svcnet lab logs: no container {name!r} in pod {namespace}/{pod} (have: {have})",
                    file=sys.stderr,
                )
                raise typer.Exit(1)
            sys.stdout.write(log_file.read_text(errors="replace"))
            return
    print(f"svcnet lab logs: no pod {namespace}/{pod} runs in lab {state['prefix']}", file=sys.stderr)
    raise typer.Exit(1)


@lab_app.command("cleanup")
def cleanup(
    data_dir: Annotated[Path, typer.Option(help="The lab's data directory.")] = Path("./svcnet-data/lab"),
    prefix: Annotated[str | None, typer.Option(help="Remove namespaces with this prefix instead.")] = None,
) -> None:
    """Remove what a crashed lab left behind (its processes and namespaces)."""
    from svcnet.lab.lab import kill_recorded_children, read_state
    from svcnet.lab.topology import sweep

    if prefix is None:
        try:
            state = read_state(data_dir)
        except FileNotFoundError as e:
            print(f"svcnet lab cleanup: {e}", file=sys.stderr)
            raise typer.Exit(2) from e
        kill_recorded_children(state)
        prefix = state["prefix"] + "-"
        (data_dir / "lab.json").unlink(missing_ok=True)
    if not prefix.startswith("svl"):
        print("svcnet lab cleanup: refusing a prefix that is not a lab's (svl...)", file=sys.stderr)
        raise typer.Exit(2)
    for name in sweep(prefix):
        print(f"removed {name}")
