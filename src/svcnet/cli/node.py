"""`svcnet node`: the node agent."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from svcnet.cli.common import run_on_uvloop, setup_logging


def register(app: typer.Typer) -> None:
    app.command("node")(node)
    app.command("workloads")(workloads)


def node(
    node_name: Annotated[str, typer.Option("--node-name", help="This node's name.")],
    kubeconfig: Annotated[str | None, typer.Option("--kubeconfig", help="API server kubeconfig.")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Agent state (IPAM, pods); default ./svcnet-data/node-NAME.")
    ] = None,
    pod_cidr: Annotated[
        str | None, typer.Option("--pod-cidr", help="Pod range when the Node has no spec.podCIDR.")
    ] = None,
    bridge: Annotated[str, typer.Option("--bridge", help="The node's pod bridge.")] = "cbr0",
    netns_name: Annotated[
        str | None,
        typer.Option(
            "--netns",
            help="The node's network namespace (pods attach to its bridge); default: the agent's own.",
        ),
    ] = None,
    netns_prefix: Annotated[
        str | None, typer.Option("--netns-prefix", help="Prefix of pod namespace names.")
    ] = None,
    node_ip: Annotated[
        str | None, typer.Option("--node-ip", help="InternalIP to report (default: first global IPv4).")
    ] = None,
    cluster_dns: Annotated[
        list[str] | None, typer.Option("--cluster-dns", help="Nameserver for pods (repeatable).")
    ] = None,
    cluster_domain: Annotated[str, typer.Option("--cluster-domain")] = "cluster.local",
    node_labels: Annotated[
        list[str] | None, typer.Option("--node-label", help="KEY=VALUE (repeatable).")
    ] = None,
    cleanup_on_exit: Annotated[
        bool, typer.Option(help="Stop pods and remove their namespaces on exit.")
    ] = False,
    in_host_namespace: Annotated[
        bool,
        typer.Option(help="Without --netns: allow the bridge and sysctls in this machine's own namespace."),
    ] = False,
    local_pods: Annotated[
        bool,
        typer.Option(
            "--local-pods",
            help="Run pods as plain local processes on loopback addresses from --pod-cidr "
            "(e.g. 127.244.0.0/16): no network namespace, no root.",
        ),
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the node agent: register the Node and run the pods bound to it in network namespaces."""
    from svcnet.node.agent import AgentConfig, NodeAgent

    setup_logging(log_level)
    labels = {}
    for item in node_labels or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--node-label")
        labels[key] = value
    cfg = AgentConfig(
        kubeconfig=kubeconfig,
        node_name=node_name,
        data_dir=data_dir or Path("./svcnet-data") / f"node-{node_name}",
        node_ip=node_ip or "",
        pod_cidr=pod_cidr,
        bridge=bridge,
        netns=netns_name,
        netns_prefix=netns_prefix or "",
        cluster_dns=cluster_dns or [],
        cluster_domain=cluster_domain,
        labels=labels,
        cleanup_on_exit=cleanup_on_exit,
        local_pods=local_pods,
    )
    if pod_cidr:
        import ipaddress

        try:
            ipaddress.ip_network(pod_cidr, strict=False)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--pod-cidr") from e
    if not netns_name and not in_host_namespace and not local_pods:
        print(
            "svcnet node: without --netns the agent would add a bridge and enable forwarding in this "
            "machine's own network namespace; pass --in-host-namespace to allow that, or give the "
            "node a namespace with --netns (svcnet lab does)",
            file=sys.stderr,
        )
        raise typer.Exit(2)
    if netns_name:
        from svcnet.node import netns

        if not netns.exists(netns_name):
            print(f"svcnet node: network namespace {netns_name!r} does not exist", file=sys.stderr)
            raise typer.Exit(2)

    async def main() -> None:
        from svcnet.client.kubeconfig import KubeconfigError

        try:
            agent = NodeAgent(cfg)
        except KubeconfigError as e:
            print(f"svcnet node: {e}", file=sys.stderr)
            raise typer.Exit(2) from e
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop)
        await agent.run()

    run_on_uvloop(main())


def workloads(
    kubeconfig: Annotated[str | None, typer.Option("--kubeconfig", help="API server kubeconfig.")] = None,
    scheduler: Annotated[bool, typer.Option(help="Also run the scheduler.")] = True,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the Deployment and StatefulSet controllers and the scheduler."""
    from svcnet.controllers.workloads.runner import run_workloads

    setup_logging(log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_workloads(kubeconfig, stop, scheduler)

    asyncio.run(main())
