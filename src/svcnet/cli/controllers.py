"""`svcnet controllers`: the controller manager (EndpointSlice, Endpoints, load-balancer IPs,
node IPAM) as its own process, talking to the API server through a kubeconfig. Several may
run at once: a Lease elects the one that acts."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from svcnet.cli.common import run_on_uvloop, setup_logging
from svcnet.controllers.manager import ALL_CONTROLLERS, ControllerOptions


def register(app: typer.Typer) -> None:
    app.command("controllers")(controllers)


def split_list(values: list[str] | None) -> list[str]:
    """Repeatable flags that also accept comma-separated lists."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def build_options(
    *,
    controllers: list[str] | None,
    lb_pool: list[str] | None,
    cluster_cidr: str,
    node_cidr_mask_size: int | None,
    max_endpoints_per_slice: int,
    leader_elect: bool,
    lease_duration: float,
    renew_deadline: float,
    retry_period: float,
    lease_name: str = "svcnet-controller-manager",
    lease_namespace: str = "kube-system",
    identity: str = "",
) -> ControllerOptions:
    from svcnet.controllers.leaderelection import LeaderElectionConfig

    try:
        election = LeaderElectionConfig(
            namespace=lease_namespace,
            name=lease_name,
            identity=identity,
            lease_duration=lease_duration,
            renew_deadline=renew_deadline,
            retry_period=retry_period,
        )
        return ControllerOptions(
            controllers=tuple(split_list(controllers)) or ALL_CONTROLLERS,
            lb_pools=tuple(split_list(lb_pool)),
            cluster_cidr=cluster_cidr,
            node_cidr_mask_size=node_cidr_mask_size,
            max_endpoints_per_slice=max_endpoints_per_slice,
            leader_elect=leader_elect,
            leader_election=election,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def controllers(
    kubeconfig: Annotated[Path, typer.Option(help="Kubeconfig of the API server to work against.")],
    controller: Annotated[
        list[str] | None,
        typer.Option(
            "--controller",
            help=f"Controllers to run (repeatable or comma list): {', '.join(ALL_CONTROLLERS)}.",
        ),
    ] = None,
    lb_pool: Annotated[
        list[str] | None, typer.Option("--lb-pool", help="CIDR of load-balancer addresses (repeatable).")
    ] = None,
    cluster_cidr: Annotated[
        str, typer.Option(help="Pod network; each Node gets a block of it.")
    ] = "10.244.0.0/16",
    node_cidr_mask_size: Annotated[
        int | None, typer.Option(help="Size of each Node's block (default /24 IPv4, /64 IPv6).")
    ] = None,
    max_endpoints_per_slice: Annotated[int, typer.Option(help="Endpoints per EndpointSlice.")] = 100,
    leader_elect: Annotated[bool, typer.Option(help="Elect a leader through a Lease.")] = True,
    leader_elect_lease_duration: Annotated[float, typer.Option(help="Seconds a lease lasts.")] = 15.0,
    leader_elect_renew_deadline: Annotated[
        float, typer.Option(help="Seconds the leader may fail to renew.")
    ] = 10.0,
    leader_elect_retry_period: Annotated[float, typer.Option(help="Seconds between attempts.")] = 2.0,
    leader_elect_resource_name: Annotated[
        str, typer.Option(help="Name of the Lease.")
    ] = "svcnet-controller-manager",
    leader_elect_resource_namespace: Annotated[
        str, typer.Option(help="Namespace of the Lease.")
    ] = "kube-system",
    identity: Annotated[str, typer.Option(help="This candidate's name (default host_pid_random).")] = "",
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the controllers against an API server."""
    from svcnet.client.api import ApiClient
    from svcnet.client.kubeconfig import KubeconfigError
    from svcnet.controllers.manager import ControllerManager

    setup_logging(log_level)
    options = build_options(
        controllers=controller,
        lb_pool=lb_pool,
        cluster_cidr=cluster_cidr,
        node_cidr_mask_size=node_cidr_mask_size,
        max_endpoints_per_slice=max_endpoints_per_slice,
        leader_elect=leader_elect,
        lease_duration=leader_elect_lease_duration,
        renew_deadline=leader_elect_renew_deadline,
        retry_period=leader_elect_retry_period,
        lease_name=leader_elect_resource_name,
        lease_namespace=leader_elect_resource_namespace,
        identity=identity,
    )
    try:
        client = ApiClient.from_kubeconfig(str(kubeconfig))
    except (KubeconfigError, OSError) as exc:
        print(f"svcnet controllers: {exc}", file=sys.stderr)
        raise typer.Exit(1) from exc

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await ControllerManager(client, options).run(stop)
        finally:
            await client.close()

    run_on_uvloop(main())
