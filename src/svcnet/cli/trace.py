"""`svcnet trace`: where does a new connection go through this node's rules?

    svcnet trace --mode iptables -f objects.yaml --node-name n1 --node-ip 192.168.0.2 \\
        --cluster-cidr 10.0.0.0/8 --src 10.0.0.2 --dst 172.30.0.41:80
    svcnet trace --mode iptables --rules iptables-save.txt --node-ip 192.168.0.2 \\
        --src 203.0.113.2 --dst 192.168.0.2:30080 -o json
"""

from __future__ import annotations

import ipaddress
import sys
from typing import Annotated

import orjson
import typer
from rich.console import Console

# The node flags are kube-proxy's; `svcnet proxy` defines them once and trace reuses them.
from svcnet.cli.proxy import (
    ClusterCIDROpt,
    FamilyOpt,
    FilesOpt,
    LocalhostOpt,
    MasqAllOpt,
    MasqBitOpt,
    NodeIPOpt,
    NodeNameOpt,
    NodePortAddrOpt,
    ServiceCIDROpt,
    build_node_config,
)
from svcnet.netfilter.api import MODES, Node, trace_text
from svcnet.netfilter.errors import RuleParseError, TraceError
from svcnet.netfilter.explain import render_text
from svcnet.netfilter.trace import PROTOCOLS, Packet


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def render_rules(mode: str, files: list[str], node_config: object) -> str:
    """Objects -> the rule text a full sync would hand the kernel. The only place trace uses
    the proxy's renderer."""
    from svcnet.proxy.objects import load_files
    from svcnet.proxy.render import render_full

    return render_full(mode, load_files(files), node_config)  # type: ignore[arg-type]


def _read_rules(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        _fail(f"cannot read --rules {path}: {exc.strerror}")
    except UnicodeDecodeError as exc:
        _fail(f"--rules {path} is not UTF-8 text (byte {exc.start}): give an iptables-save or nft dump")
    return ""


def _parse_dst(text: str) -> tuple[str, int]:
    from svcnet.cli.common import parse_host_port

    try:
        host, port = parse_host_port(text)
        ipaddress.ip_address(host)
    except ValueError as exc:
        _fail(f"--dst {text!r}: {exc}" if ":" in text else f"--dst {text!r} is not IP:PORT")
    return host, port


def trace_cmd(
    src: Annotated[str, typer.Option("--src", help="source IP of the new connection")],
    dst: Annotated[str, typer.Option("--dst", help="destination IP:PORT (IPv6: \\[ADDR]:PORT)")],
    mode: Annotated[str, typer.Option("--mode", help="iptables | nftables")] = "iptables",
    filename: FilesOpt = None,
    rules: Annotated[
        str | None,
        typer.Option(
            "--rules", help="rule dump to trace (iptables-save / nft list ruleset output; - = stdin)"
        ),
    ] = None,
    proto: Annotated[str, typer.Option("--proto", help="tcp | udp | sctp")] = "tcp",
    from_node: Annotated[
        bool,
        typer.Option(
            "--from-node", help="the packet is sent by the node itself (nat OUTPUT, not PREROUTING)"
        ),
    ] = False,
    output: Annotated[str, typer.Option("-o", "--output", help="text | json")] = "text",
    node_name: NodeNameOpt = "",
    node_ip: NodeIPOpt = None,
    cluster_cidr: ClusterCIDROpt = None,
    masquerade_all: MasqAllOpt = False,
    masquerade_bit: MasqBitOpt = 14,
    nodeport_addresses: NodePortAddrOpt = "",
    localhost_nodeports: LocalhostOpt = True,
    service_cidr: ServiceCIDROpt = None,
    ip_family: FamilyOpt = "ipv4",
) -> None:
    """Explain where a new connection goes: verdict, endpoints, masquerade and the rule path."""
    if mode not in MODES:
        _fail(f"unknown mode {mode!r} (iptables or nftables)")
    if output not in ("text", "json"):
        _fail(f"-o must be text or json, not {output!r}")
    proto = proto.lower()
    if proto not in PROTOCOLS:
        _fail(f"--proto must be tcp, udp or sctp, not {proto!r}")
    if bool(filename) == bool(rules):
        _fail("give exactly one of -f OBJECTS or --rules DUMP")
    try:
        ipaddress.ip_address(src)
    except ValueError:
        _fail(f"--src {src!r} is not an IP address")
    host, port = _parse_dst(dst)
    if ipaddress.ip_address(src).version != ipaddress.ip_address(host).version:
        _fail("--src and --dst must be of the same IP family")
    if filename:
        node = build_node_config(
            node_name,
            node_ip,
            cluster_cidr,
            masquerade_all,
            masquerade_bit,
            nodeport_addresses,
            localhost_nodeports,
            service_cidr,
            ip_family,
        )
        try:
            text = render_rules(mode, list(filename), node)
        except NotImplementedError as exc:
            _fail(str(exc), code=3)
        except Exception as exc:  # ObjectsFileError and friends: name the file, never a traceback
            _fail(str(exc))
    else:
        text = _read_rules(rules or "-")
    packet = Packet(src, host, port, proto, from_node)
    try:
        result = trace_text(mode, text, packet, Node(list(node_ip or [])))
    except RuleParseError as exc:
        _fail(f"{rules or 'rendered rules'}: {exc}")
    except TraceError as exc:
        _fail(str(exc), code=1)
    except Exception as exc:  # a bug of ours: still a message, never a traceback for the user
        _fail(f"cannot trace these rules ({type(exc).__name__}: {exc}); please report this as a bug")
    if not node_ip:
        result.notes.append("no --node-ip given: only loopback addresses count as local (addrtype LOCAL)")
    if output == "json":
        sys.stdout.write(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    render_text(result, Console(highlight=False))


def register(app: typer.Typer) -> None:
    app.command("trace")(trace_cmd)
