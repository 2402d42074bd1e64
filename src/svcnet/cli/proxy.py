"""`svcnet proxy`: the kube-proxy daemon, and `svcnet proxy render` (print a full sync)."""

from __future__ import annotations

import logging
import re
import sys
from typing import Annotated

import typer

from svcnet.cli.common import setup_logging
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.ipnet import IPV4, IPV6, parse_cidr, parse_ip

proxy_app = typer.Typer(help="kube-proxy: Services and EndpointSlices -> rules in the kernel.",
                        invoke_without_command=True, no_args_is_help=False)

ModeOpt = Annotated[str, typer.Option("--mode", help="iptables | nftables | ipvs (| userspace)")]
FilesOpt = Annotated[list[str] | None, typer.Option(
    "-f", "--filename", help="objects file (repeatable, - = stdin)")]
NodeNameOpt = Annotated[str, typer.Option("--node-name", help="this node's name (locality of endpoints)")]
NodeIPOpt = Annotated[list[str] | None, typer.Option("--node-ip", help="node IP (repeatable, primary first)")]
ClusterCIDROpt = Annotated[list[str] | None, typer.Option(
    "--cluster-cidr", help="pod CIDR: the local-traffic detector (repeatable; none = no detector)")]
MasqAllOpt = Annotated[bool, typer.Option("--masquerade-all", help="SNAT all traffic sent to ClusterIPs")]
MasqBitOpt = Annotated[int, typer.Option("--masquerade-bit", help="fwmark bit for SNAT (0-31)")]
NodePortAddrOpt = Annotated[str, typer.Option(
    "--nodeport-addresses", help="CIDRs (comma separated) whose node IPs accept NodePorts; default all")]
LocalhostOpt = Annotated[bool, typer.Option("--localhost-nodeports/--no-localhost-nodeports",
                                            help="accept NodePorts on 127.0.0.0/8 (iptables, IPv4)")]
ServiceCIDROpt = Annotated[list[str] | None, typer.Option("--service-cidr", help="service CIDR (repeatable)")]
FamilyOpt = Annotated[str, typer.Option("--ip-family", help="ipv4 | ipv6")]


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def build_node_config(node_name: str, node_ip: list[str] | None, cluster_cidr: list[str] | None,
                      masquerade_all: bool, masquerade_bit: int, nodeport_addresses: str,
                      localhost_nodeports: bool, service_cidr: list[str] | None,
                      ip_family: str) -> NodeConfig:
    family = {"ipv4": IPV4, "ipv6": IPV6}.get(ip_family.lower())
    if family is None:
        _fail(f"--ip-family must be ipv4 or ipv6, not {ip_family!r}")
    if not 0 <= masquerade_bit <= 31:
        _fail(f"--masquerade-bit must be within 0..31, not {masquerade_bit}")
    for ip in node_ip or []:
        if parse_ip(ip) is None:
            _fail(f"--node-ip {ip!r} is not an IP address")
    cidr_flags = [("--cluster-cidr", c) for c in cluster_cidr or []]
    cidr_flags += [("--service-cidr", c) for c in service_cidr or []]
    nodeport_cidrs = [c.strip() for c in nodeport_addresses.split(",") if c.strip()]
    cidr_flags += [("--nodeport-addresses", c) for c in nodeport_cidrs]
    for flag, cidr in cidr_flags:
        if parse_cidr(cidr) is None:
            _fail(f"{flag} {cidr!r} is not a CIDR")
    return NodeConfig(family=family, node_name=node_name, node_ips=list(node_ip or []),
                      cluster_cidrs=list(cluster_cidr or []), masquerade_all=masquerade_all,
                      masquerade_bit=masquerade_bit, nodeport_addresses=nodeport_cidrs,
                      localhost_nodeports=localhost_nodeports, service_cidrs=list(service_cidr or []))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Go-style durations as kube-proxy flags take them: 1s, 500ms, 1m30s, 0s."""
    text = text.strip()
    if text in ("0", "0s"):
        return 0.0
    pos = 0
    total = 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise typer.BadParameter(f"invalid duration {text!r} (examples: 1s, 500ms, 1m)")
    return total


@proxy_app.callback()
def proxy(
    ctx: typer.Context,
    mode: ModeOpt = "iptables",
    filename: FilesOpt = None,
    kubeconfig: Annotated[str | None, typer.Option("--kubeconfig", help="API server kubeconfig")] = None,
    node_name: NodeNameOpt = "",
    node_ip: NodeIPOpt = None,
    cluster_cidr: ClusterCIDROpt = None,
    masquerade_all: MasqAllOpt = False,
    masquerade_bit: MasqBitOpt = 14,
    nodeport_addresses: NodePortAddrOpt = "",
    localhost_nodeports: LocalhostOpt = True,
    service_cidr: ServiceCIDROpt = None,
    ip_family: FamilyOpt = "ipv4",
    min_sync_period: Annotated[str, typer.Option("--min-sync-period")] = "1s",
    sync_period: Annotated[str, typer.Option("--sync-period")] = "30s",
    healthz_bind_address: Annotated[str, typer.Option("--healthz-bind-address")] = "0.0.0.0:10256",
    metrics_bind_address: Annotated[str, typer.Option("--metrics-bind-address")] = "127.0.0.1:10249",
    cleanup: Annotated[bool, typer.Option("--cleanup", help="remove the proxy's rules and exit")] = False,
    ipvs_scheduler: Annotated[str, typer.Option(
        "--ipvs-scheduler", help="--mode ipvs: rr wrr lc wlc lblc lblcr dh sh sed nq mh")] = "rr",
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Run the proxy daemon (`svcnet proxy --mode iptables -f OBJECTS --node-name N`)."""
    if ctx.invoked_subcommand is not None:
        return
    setup_logging("debug" if verbose else "info")
    from svcnet.proxy import daemon

    if cleanup:
        raise typer.Exit(daemon.cleanup())
    if mode == "userspace":
        _fail("the user-space proxy has its own options: run `svcnet proxy userspace --help`")
    _check_kernel_supports(mode)
    if mode == "ipvs":
        from svcnet.proxy.ipvs import SCHEDULERS

        if ipvs_scheduler not in SCHEDULERS:
            _fail(f"--ipvs-scheduler must be one of {', '.join(SCHEDULERS)}, not {ipvs_scheduler!r}")
    if bool(filename) == bool(kubeconfig):
        _fail("give exactly one of -f OBJECTS or --kubeconfig K")
    if not node_name:
        _fail("--node-name is required")
    node = build_node_config(node_name, node_ip, cluster_cidr, masquerade_all, masquerade_bit,
                             nodeport_addresses, localhost_nodeports, service_cidr, ip_family)
    opts = daemon.DaemonOptions(
        mode=mode, files=list(filename or []), kubeconfig=kubeconfig, node=node,
        min_sync_period=parse_duration(min_sync_period), sync_period=parse_duration(sync_period),
        healthz_bind_address=healthz_bind_address, metrics_bind_address=metrics_bind_address,
        ipvs_scheduler=ipvs_scheduler)
    raise typer.Exit(daemon.run(opts))


def _check_kernel_supports(mode: str) -> None:
    """Exit at once, naming what is missing, when this kernel cannot run the mode."""
    if mode == "iptables":
        return
    if mode == "nftables":
        from svcnet.proxy.apply.nft import Nft, NftUnavailable

        try:
            Nft("ip").check_support()
        except NftUnavailable as e:
            _fail(f"--mode nftables: {e}", code=1)
        return
    if mode == "ipvs":
        from svcnet.proxy.apply.ipvs import ipvs_unavailable_reason

        reason = ipvs_unavailable_reason()
        if reason:
            _fail(f"--mode ipvs: {reason}", code=1)
        return
    _fail(f"unknown mode {mode!r} (iptables, nftables, ipvs or userspace)")


@proxy_app.command("render")
def render_cmd(
    mode: ModeOpt = "iptables",
    filename: FilesOpt = None,
    node_name: NodeNameOpt = "",
    node_ip: NodeIPOpt = None,
    cluster_cidr: ClusterCIDROpt = None,
    masquerade_all: MasqAllOpt = False,
    masquerade_bit: MasqBitOpt = 14,
    nodeport_addresses: NodePortAddrOpt = "",
    localhost_nodeports: LocalhostOpt = True,
    service_cidr: ServiceCIDROpt = None,
    ip_family: FamilyOpt = "ipv4",
    sort: Annotated[bool, typer.Option("--sorted", help="order rules as upstream's tests do")] = False,
    ipvs_scheduler: Annotated[str, typer.Option(
        "--ipvs-scheduler", help="IPVS scheduler: rr wrr lc wlc lblc lblcr dh sh sed nq mh")] = "rr",
) -> None:
    """Print what a full sync hands the kernel (iptables-restore input for --mode iptables)."""
    from svcnet.client.filesource import ObjectsFileError
    from svcnet.proxy import iptables
    from svcnet.proxy.objects import load_files
    from svcnet.proxy.render import MODES, render_full

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if mode not in MODES:
        _fail(f"unknown mode {mode!r} (iptables, nftables or ipvs)")
    if not filename:
        _fail("-f OBJECTS is required")
    if sort and mode != "iptables":
        _fail("--sorted applies to --mode iptables only")
    node = build_node_config(node_name, node_ip, cluster_cidr, masquerade_all, masquerade_bit,
                             nodeport_addresses, localhost_nodeports, service_cidr, ip_family)
    if mode == "ipvs":
        from svcnet.proxy.ipvs import SCHEDULERS

        if ipvs_scheduler not in SCHEDULERS:
            _fail(f"--ipvs-scheduler must be one of {', '.join(SCHEDULERS)}, not {ipvs_scheduler!r}")
    try:
        snapshot = load_files(filename)
        if mode == "ipvs":
            from svcnet.proxy.ipvs import render_snapshot

            text = render_snapshot(snapshot, node, ipvs_scheduler)
        else:
            text = render_full(mode, snapshot, node)
    except ObjectsFileError as e:
        _fail(str(e))
    except NotImplementedError as e:
        _fail(str(e), code=3)
    if sort:
        text = iptables.sort_restore_text(text)
    sys.stdout.write(text)


def _attach_other_modes() -> None:
    """Modes that bring their own subcommand (issue #8's `svcnet proxy userspace`)."""
    if any(c.name == "userspace" for c in proxy_app.registered_commands):
        return  # build() may run more than once in a process (tests)
    try:
        from svcnet.cli.proxy_userspace import attach
    except ImportError:
        return
    attach(proxy_app)


def register(app: typer.Typer) -> None:
    _attach_other_modes()
    app.add_typer(proxy_app, name="proxy")
