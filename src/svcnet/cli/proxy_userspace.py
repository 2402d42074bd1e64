"""`svcnet proxy userspace`: the user-space proxy daemon's command (attached by cli/proxy.py)."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from svcnet.proxy.userspace.options import REDIRECT_MODES, UserspaceOptions
from svcnet.proxy.userspace.schedulers import SCHEDULERS, is_prime

# The flags' defaults are the options' own (one place to change them); durations are spelled
# as flags take them.
_DEFAULTS = UserspaceOptions()


def userspace_command(
    filename: Annotated[list[str] | None, typer.Option(
        "-f", "--filename", help="objects file (repeatable, - = stdin)")] = None,
    kubeconfig: Annotated[str | None, typer.Option("--kubeconfig", help="API server kubeconfig")] = None,
    node_name: Annotated[str, typer.Option("--node-name", help="this node's name")] = "",
    node_ip: Annotated[list[str] | None, typer.Option("--node-ip", help="node IP (repeatable)")] = None,
    nodeport_addresses: Annotated[str, typer.Option(
        "--nodeport-addresses", help="CIDRs whose local addresses accept NodePorts; default all")] = "",
    ip_family: Annotated[str, typer.Option("--ip-family", help="ipv4 | ipv6")] = "ipv4",
    scheduler: Annotated[str, typer.Option(
        "--scheduler", help=f"default scheduler ({', '.join(SCHEDULERS)}); per service: "
                            "annotation svcnet.io/scheduler")] = _DEFAULTS.scheduler,
    maglev_table_size: Annotated[int, typer.Option(
        "--maglev-table-size", help="mh table size (a prime)")] = _DEFAULTS.maglev_table_size,
    drain_timeout: Annotated[str, typer.Option(
        "--drain-timeout", help="how long connections of a removed endpoint may keep flowing")] = "30s",
    max_connections: Annotated[int, typer.Option(
        "--max-connections", help="open connections (UDP: flows) per listener")] = _DEFAULTS.max_connections,
    connect_retries: Annotated[int, typer.Option(
        "--connect-retries",
        help="other endpoints tried after a failed connect")] = _DEFAULTS.connect_retries,
    connect_timeout: Annotated[str, typer.Option("--connect-timeout")] = "1s",
    idle_timeout: Annotated[str, typer.Option("--idle-timeout", help="TCP, no traffic")] = "15m",
    half_close_timeout: Annotated[str, typer.Option(
        "--half-close-timeout", help="TCP, after one side finished")] = "2m",
    udp_idle_timeout: Annotated[str, typer.Option("--udp-idle-timeout")] = "5m",
    health_check_interval: Annotated[str, typer.Option(
        "--health-check-interval", help="active TCP checks (0s = off)")] = "0s",
    splice: Annotated[bool, typer.Option(
        "--splice/--no-splice",
        help="bulk TCP through a pipe with os.splice instead of 1 MB copies")] = _DEFAULTS.splice,
    redirect: Annotated[str, typer.Option(
        "--redirect",
        help="REDIRECT rules for non-local service IPs: auto|iptables|nftables|none")] = _DEFAULTS.redirect,
    bind_address: Annotated[str, typer.Option(
        "--bind-address", help="address of the listeners behind REDIRECT rules")] = _DEFAULTS.bind_address,
    min_sync_period: Annotated[str, typer.Option("--min-sync-period")] = "0s",
    sync_period: Annotated[str, typer.Option("--sync-period")] = "30s",
    healthz_bind_address: Annotated[str, typer.Option("--healthz-bind-address")] = "0.0.0.0:10256",
    metrics_bind_address: Annotated[str, typer.Option("--metrics-bind-address")] = "127.0.0.1:10249",
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Run the user-space proxy (`svcnet proxy userspace -f OBJECTS --node-name N`): TCP and UDP
    forwarded in user space with IPVS's schedulers, connection draining and passive health.
    Service IPs in 127.0.0.0/8 are bound directly (no root, no rules)."""
    # The shared node-flag parsing lives with the proxy command.
    from svcnet.cli.proxy import build_node_config, parse_duration
    from svcnet.proxy.userspace import daemon

    def fail(message: str) -> None:
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2)

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if bool(filename) == bool(kubeconfig):
        fail("give exactly one of -f OBJECTS or --kubeconfig K")
    if not node_name:
        fail("--node-name is required")
    if scheduler not in SCHEDULERS:
        fail(f"unknown --scheduler {scheduler!r} (one of: {', '.join(SCHEDULERS)})")
    if not is_prime(maglev_table_size):
        fail(f"--maglev-table-size must be a prime (251, 4093, 65537, ...), not {maglev_table_size}")
    if redirect not in REDIRECT_MODES:
        fail(f"--redirect must be one of {', '.join(REDIRECT_MODES)}, not {redirect!r}")
    if max_connections < 1 or connect_retries < 0:
        fail("--max-connections must be >= 1 and --connect-retries >= 0")
    node = build_node_config(node_name, node_ip, None, False, 14, nodeport_addresses, True, None, ip_family)
    proxy = UserspaceOptions(
        scheduler=scheduler, maglev_table_size=maglev_table_size, drain_timeout=parse_duration(drain_timeout),
        max_connections=max_connections, connect_retries=connect_retries,
        connect_timeout=parse_duration(connect_timeout), idle_timeout=parse_duration(idle_timeout),
        half_close_timeout=parse_duration(half_close_timeout),
        udp_idle_timeout=parse_duration(udp_idle_timeout),
        health_check_interval=parse_duration(health_check_interval), splice=splice, redirect=redirect,
        bind_address=bind_address)
    opts = daemon.UserspaceDaemonOptions(
        files=list(filename or []), kubeconfig=kubeconfig, node=node, proxy=proxy,
        min_sync_period=parse_duration(min_sync_period), sync_period=parse_duration(sync_period),
        healthz_bind_address=healthz_bind_address, metrics_bind_address=metrics_bind_address)
    raise typer.Exit(daemon.run(opts))


def attach(proxy_app: typer.Typer) -> None:
    """Add `userspace` to the `svcnet proxy` command group."""
    proxy_app.command("userspace")(userspace_command)
