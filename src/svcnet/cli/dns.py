"""`svcnet dns`: the cluster DNS server (CoreDNS's kubernetes plugin behaviour)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Annotated

import typer

from svcnet.cli.common import parse_host_port


def register(app: typer.Typer) -> None:
    app.command("dns")(dns_command)


def _fail(message: str) -> None:
    print(f"svcnet dns: {message}", file=sys.stderr)
    raise typer.Exit(2)


def _zone_labels(text: str) -> tuple[str, ...]:
    text = text.strip().rstrip(".").lower()
    if not text or any(not p or len(p) > 63 for p in text.split(".")):
        raise ValueError(f"{text!r} is not a DNS zone name")
    return tuple(text.split("."))


def dns_command(
    filename: Annotated[list[str] | None, typer.Option("-f", "--filename",
                        help="Objects file (YAML/JSON, repeatable, - for stdin).")] = None,
    kubeconfig: Annotated[str | None, typer.Option("--kubeconfig", help="API server kubeconfig.")] = None,
    listen: Annotated[str, typer.Option(help="HOST:PORT for UDP and TCP (port 0 picks one).")] = (
        "127.0.0.1:53"),
    zone: Annotated[list[str] | None, typer.Option("--zone", help="Zone served (repeatable; default "
                    "cluster.local; reverse zones such as 0.96.10.in-addr.arpa allowed).")] = None,
    ttl: Annotated[int, typer.Option(help="TTL of cluster records, 0..3600.")] = 5,
    pods: Annotated[str, typer.Option(help="Pod records: disabled, insecure or verified.")] = "disabled",
    ignore_empty_service: Annotated[bool, typer.Option("--ignore-empty-service",
                                    help="NXDOMAIN for ClusterIP services without ready endpoints.")] = False,
    namespaces: Annotated[str | None, typer.Option(help="Only these namespaces (comma separated).")] = None,
    upstream: Annotated[list[str] | None, typer.Option("--upstream",
                        help="IP:PORT resolver for names outside the zones (repeatable).")] = None,
    metrics_listen: Annotated[str | None, typer.Option("--metrics-listen",
                              help="HOST:PORT for /metrics, /health and /ready.")] = None,
    autopath: Annotated[bool, typer.Option("--autopath", help="Server-side search path for queries "
                        "from pods (CoreDNS's autopath @kubernetes; needs --pods verified).")] = False,
    workers: Annotated[int, typer.Option(help="Processes sharing the port (SO_REUSEPORT).")] = 1,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve cluster DNS for Services, EndpointSlices and Pods, as CoreDNS's kubernetes plugin."""
    # Flags are checked before the server's modules load, so mistakes are reported at once.
    from svcnet.dns.lookup import PODS_MODES, ZoneOptions, is_reverse

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if bool(filename) == bool(kubeconfig):
        _fail("give exactly one of -f OBJECTS or --kubeconfig K")
    if not 0 <= ttl <= 3600:
        _fail("ttl must be in range [0, 3600]")
    if pods not in PODS_MODES:
        _fail(f"wrong value for pods: {pods},  must be one of: disabled, verified, insecure")
    try:
        host, port = parse_host_port(listen)
    except ValueError as e:
        _fail(f"--listen: {e}")
    try:
        zones = tuple(_zone_labels(z) for z in (zone or ["cluster.local"]))
    except ValueError as e:
        _fail(f"--zone: {e}")
    if all(is_reverse(z) for z in zones):
        _fail("non-reverse zone name must be used")
    from svcnet.dns.forward import parse_hostport

    upstreams = []
    for u in upstream or []:
        try:
            upstreams.append(parse_hostport(u))
        except ValueError:
            _fail(f"--upstream: {u!r} is not IP:PORT")
    metrics_at = None
    if metrics_listen:
        try:
            metrics_at = parse_host_port(metrics_listen)
        except ValueError as e:
            _fail(f"--metrics-listen: {e}")
    if autopath and pods != "verified":
        _fail("--autopath needs --pods verified (the client's pod is found by its IP)")
    if workers < 1:
        _fail("--workers must be at least 1")
    local_ip = host if host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    zone_options = ZoneOptions(
        zones=zones, ttl=ttl, pods=pods, ignore_empty_service=ignore_empty_service,
        namespaces=frozenset(n.strip() for n in (namespaces or "").split(",") if n.strip()),
        local_ips=(local_ip,))
    from svcnet.dns.app import DnsService
    from svcnet.dns.server import ServerOptions

    children: list[int] = []
    if workers > 1:
        if port == 0:
            _fail("--workers needs a fixed --listen port")
        for _ in range(workers - 1):
            pid = os.fork()
            if pid == 0:
                children.clear()
                metrics_at = None  # only the first process serves HTTP
                _die_with_parent()
                break
            children.append(pid)
    server_options = ServerOptions(host, port, tuple(upstreams), reuse_port=workers > 1, autopath=autopath)
    service = DnsService(zone_options, server_options, metrics_at)

    async def main() -> None:
        if filename:
            from svcnet.client.filesource import FileSource
            source: object = FileSource(filename)
        else:
            from svcnet.client.informer import InformerSource
            source = InformerSource.from_kubeconfig(kubeconfig)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await service.start(source)
        except OSError as e:
            print(f"svcnet dns: cannot serve on {listen}: {e.strerror or e}", file=sys.stderr)
            raise typer.Exit(1) from e
        except ValueError as e:  # a malformed objects file
            print(f"svcnet dns: {e}", file=sys.stderr)
            raise typer.Exit(1) from e
        assert service.server is not None
        extra = f", metrics on port {service.http_port}" if service.http_port else ""
        shown = f"[{host}]" if ":" in host else host
        print(f"svcnet dns serving on {shown}:{service.server.port} (udp+tcp){extra}", flush=True)
        await stop.wait()
        await service.stop()
        stop_source = getattr(source, "stop", None)
        if stop_source is not None:
            await stop_source()

    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(main())
        else:
            uvloop.run(main())
    finally:
        for pid in children:  # the workers this process forked, by PID
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def _die_with_parent() -> None:
    """A forked worker gets SIGTERM when the first process dies, whatever kills it."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
