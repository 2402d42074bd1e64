"""`svcnet server` and `svcnet kubeconfig`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from svcnet.cli.common import parse_host_port, setup_logging


def register(app: typer.Typer) -> None:
    app.command("server")(server)
    app.command("kubeconfig")(kubeconfig)


def server(
    data_dir: Annotated[Path, typer.Option(help="Where state, certificates and the kubeconfig live.")] = Path(
        "./svcnet-data"
    ),
    listen: Annotated[str, typer.Option(help="HOST:PORT to serve HTTPS on (port 0 picks a free one).")] = (
        "127.0.0.1:6443"
    ),
    tls_san: Annotated[
        list[str] | None, typer.Option("--tls-san", help="Extra name or IP for the serving certificate.")
    ] = None,
    datastore: Annotated[
        str | None,
        typer.Option(
            help="sqlite://DIR or etcd://HOST:PORT[,HOST:PORT...] (etcds:// for TLS). "
            "Default: SQLite under --data-dir. Several servers may share one etcd."
        ),
    ] = None,
    etcd_cafile: Annotated[
        Path | None, typer.Option(help="CA bundle that signed the etcd members' certificates.")
    ] = None,
    etcd_certfile: Annotated[Path | None, typer.Option(help="Client certificate for etcd (PEM).")] = None,
    etcd_keyfile: Annotated[Path | None, typer.Option(help="Key of --etcd-certfile (PEM).")] = None,
    print_kubeconfig: Annotated[
        bool, typer.Option(help="Print the admin kubeconfig path and how to use it once serving.")
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    service_cluster_ip_range: Annotated[
        list[str] | None,
        typer.Option(
            "--service-cluster-ip-range",
            help="ClusterIP range(s), one per IP family, primary first (repeatable or comma list).",
        ),
    ] = None,
    service_node_port_range: Annotated[
        str, typer.Option(help="NodePort range FIRST-LAST (inclusive).")
    ] = "30000-32767",
    allocation_repair_interval: Annotated[
        float, typer.Option(help="Seconds between allocation repair passes (0: only at start).")
    ] = 180.0,
    run_controllers: Annotated[
        bool,
        typer.Option(
            "--controllers/--no-controllers",
            help="Run the controllers in this process (as an API client, with leader election).",
        ),
    ] = True,
    lb_pool: Annotated[
        list[str] | None, typer.Option("--lb-pool", help="CIDR of load-balancer addresses (repeatable).")
    ] = None,
    cluster_cidr: Annotated[str, typer.Option(help="Pod network; each Node gets a block of it.")] = (
        "10.244.0.0/16"
    ),
    max_endpoints_per_slice: Annotated[int, typer.Option(help="Endpoints per EndpointSlice.")] = 100,
    allow_loopback_endpoints: Annotated[
        bool,
        typer.Option(
            "--allow-loopback-endpoints",
            help="Accept 127/8 and ::1 addresses in Endpoints and EndpointSlices (upstream refuses "
            "them; `svcnet up` without root needs them for pods on loopback).",
        ),
    ] = False,
    leader_elect_lease_duration: Annotated[float, typer.Option(help="Seconds a lease lasts.")] = 15.0,
    leader_elect_renew_deadline: Annotated[
        float, typer.Option(help="Seconds the leader may fail to renew.")
    ] = 10.0,
    leader_elect_retry_period: Annotated[float, typer.Option(help="Seconds between attempts.")] = 2.0,
) -> None:
    """Run the Kubernetes API server (SQLite under --data-dir, or etcd with --datastore)."""
    from svcnet.apiserver.allocator.ranges import IPRange, PortRange
    from svcnet.apiserver.options import ApiServerOptions
    from svcnet.apiserver.server import RunningServer, ServerConfig, run_forever
    from svcnet.cli.controllers import build_options, split_list

    ranges = tuple(split_list(service_cluster_ip_range)) or ("10.96.0.0/12",)
    try:
        families = [IPRange.parse(r).family for r in ranges]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--service-cluster-ip-range") from exc
    if len(set(families)) != len(families) or len(ranges) > 2:
        raise typer.BadParameter(
            "give at most one range per IP family (e.g. 10.96.0.0/12,fd00:10:96::/112)",
            param_hint="--service-cluster-ip-range",
        )
    try:
        PortRange.parse(service_node_port_range)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--service-node-port-range") from exc
    api_options = ApiServerOptions(
        service_cluster_ip_ranges=ranges,
        service_node_port_range=service_node_port_range,
        allocation_repair_interval_seconds=allocation_repair_interval,
        allow_loopback_endpoints=allow_loopback_endpoints,
    )
    controller_options = None
    if run_controllers:
        controller_options = build_options(
            controllers=None,
            lb_pool=lb_pool,
            cluster_cidr=cluster_cidr,
            node_cidr_mask_size=None,
            max_endpoints_per_slice=max_endpoints_per_slice,
            leader_elect=True,
            lease_duration=leader_elect_lease_duration,
            renew_deadline=leader_elect_renew_deadline,
            retry_period=leader_elect_retry_period,
        )

    setup_logging(log_level)
    try:
        host, port = parse_host_port(listen)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--listen") from exc

    from svcnet.store import StoreError
    from svcnet.store.url import etcd_tls, parse_datastore_url

    tls = None
    if datastore is not None:
        try:
            tls_files = (str(f) if f else None for f in (etcd_cafile, etcd_certfile, etcd_keyfile))
            tls = etcd_tls(parse_datastore_url(datastore), *tls_files)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--datastore") from exc

    def announce(running: RunningServer) -> None:
        if print_kubeconfig:
            print(f"svcnet API server ready at {running.url}", flush=True)
            print(f"kubeconfig: {running.kubeconfig_path}", flush=True)
            print(f"try:  export KUBECONFIG={running.kubeconfig_path}; kubectl get svc -A", flush=True)

    try:
        config = ServerConfig(
            data_dir=data_dir,
            host=host,
            port=port,
            tls_sans=tls_san or [],
            api=api_options,
            controllers=controller_options,
            datastore=datastore,
            etcd_tls=tls,
        )
        run_forever(config, announce)
    except StoreError as exc:
        print(f"svcnet server: datastore {datastore or data_dir}: {exc}", file=sys.stderr)
        raise typer.Exit(1) from exc
    except OSError as exc:
        print(f"svcnet server: cannot serve on {listen}: {exc.strerror or exc}", file=sys.stderr)
        raise typer.Exit(1) from exc


def kubeconfig(
    data_dir: Annotated[Path, typer.Option(help="The server's data directory.")] = Path("./svcnet-data"),
    write: Annotated[
        Path | None, typer.Option(help="Write the kubeconfig to this path instead of printing it.")
    ] = None,
) -> None:
    """Print (or write) the admin kubeconfig of a server started with this data directory."""
    from svcnet.apiserver.kubeconfig import load_admin_kubeconfig, write_private_text

    try:
        text = load_admin_kubeconfig(data_dir)
    except FileNotFoundError as exc:
        print(f"svcnet kubeconfig: {exc}", file=sys.stderr)
        raise typer.Exit(1) from exc
    if write is None:
        sys.stdout.write(text)
    else:
        write_private_text(write, text)
        print(f"wrote {write}; use it with: export KUBECONFIG={write.resolve()}")
