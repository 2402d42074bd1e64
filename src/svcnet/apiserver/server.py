"""The API server process: datastore, HTTPS, authentication, metrics and health around the
REST application of apiserver/app.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from svcnet.apiserver import keys
from svcnet.apiserver.allocator.kubernetes_service import ensure_kubernetes_service
from svcnet.apiserver.allocator.ranges import IPRange
from svcnet.apiserver.app import REGISTRY_KEY, build_app
from svcnet.apiserver.auth import ensure_admin_token, token_middleware
from svcnet.apiserver.kubeconfig import (
    KUBECONFIG_NAME,
    SERVER_URL_NAME,
    kubeconfig_text,
    url_for,
    write_private_text,
)
from svcnet.apiserver.metrics import ApiServerMetrics
from svcnet.apiserver.options import ApiServerOptions
from svcnet.apiserver.tls import ensure_pki, serving_hosts
from svcnet.store import EtcdTLS, Store, StoreError, open_store

if TYPE_CHECKING:
    from svcnet.controllers.manager import ControllerOptions

log = logging.getLogger("svcnet.apiserver")


@dataclass
class ServerConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 6443
    tls_sans: list[str] = field(default_factory=list)
    api: ApiServerOptions = field(default_factory=ApiServerOptions)
    # sqlite://DIR or etcd://HOST:PORT[,...] (store/url.py); None: SQLite under data_dir.
    datastore: str | None = None
    etcd_tls: EtcdTLS | None = None
    # The controllers run in-process as an API client with the admin token (None: off).
    controllers: ControllerOptions | None = None


@dataclass
class RunningServer:
    url: str
    kubeconfig_path: Path
    token: str
    ca_path: Path


async def _health(request: web.Request) -> web.Response:
    ready = request.app.get(keys.SERVER_READY)
    if request.path.startswith("/readyz") and ready is not None and not ready.is_set():
        failing = "[-]svcnet-startup failed: not started yet\nreadyz check failed\n"
        return web.Response(status=500, text=failing)
    name = request.path.strip("/").split("/")[0]
    if name != "livez":  # as upstream: liveness does not depend on the datastore, readiness does
        problem = await _datastore_problem(request.app[REGISTRY_KEY].store)
        if problem is not None:
            failing = f"[+]ping ok\n[-]etcd failed: {problem}\n{name} check failed\n"
            return web.Response(status=500, text=failing)
    if "verbose" in request.query:
        return web.Response(text=f"[+]ping ok\n[+]etcd ok\n{name} check passed\n")
    return web.Response(text="ok")


async def _datastore_problem(store: Store) -> str | None:
    """Why the datastore cannot serve now (etcd without quorum, closed), or None."""
    try:
        await asyncio.wait_for(store.current_revision(), 2.0)
    except TimeoutError:
        return "no answer within 2s"
    except StoreError as exc:
        return str(exc)
    return None


async def serve(config: ServerConfig, on_ready: Callable[[RunningServer], None] | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or forever). ``on_ready`` is called once the socket is
    listening and the kubeconfig is written."""
    data_dir = config.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pki = ensure_pki(data_dir, serving_hosts(config.host, config.tls_sans))
    token = ensure_admin_token(data_dir)

    store = open_store(config.datastore or f"sqlite://{data_dir}", tls=config.etcd_tls)
    await store.start()
    metrics = ApiServerMetrics()
    # Metrics wrap authentication so 401s are counted too, as upstream counts them.
    app = build_app(store, config.api, middlewares=[metrics.middleware(), token_middleware([token])])
    ready = asyncio.Event()
    app[keys.SERVER_READY] = ready
    for path in ("/healthz", "/livez", "/readyz"):
        app.router.add_get(path, _health)
        app.router.add_get(path + "/{check:.*}", _health)
    app.router.add_get("/metrics", metrics.handle)

    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, ssl_context=pki.server_ssl_context(),
                       backlog=1024, reuse_address=True)
    try:
        await site.start()
        port = config.port
        if port == 0:  # an ephemeral port was asked for: report the one the kernel chose
            sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
            port = sockets[0].getsockname()[1]
        url = url_for(config.host, port)
        kubeconfig_path = data_dir / KUBECONFIG_NAME
        write_private_text(kubeconfig_path, kubeconfig_text(url, pki.ca_cert.read_bytes(), token))
        first_ip = IPRange.parse(config.api.service_cluster_ip_ranges[0]).first()
        await ensure_kubernetes_service(app[REGISTRY_KEY], first_ip, config.host, port)
        controllers = _start_controllers(config, url, pki.ca_cert.read_bytes(), token)
        (data_dir / SERVER_URL_NAME).write_text(url + "\n")
        ready.set()
        log.info("serving the Kubernetes API on %s (kubeconfig %s)", url, kubeconfig_path)
        if on_ready:
            on_ready(RunningServer(url, kubeconfig_path, token, pki.ca_cert))
        try:
            await (stop.wait() if stop else asyncio.Event().wait())
        finally:
            await controllers.aclose()
    finally:
        await runner.cleanup()
        await store.close()


class _InProcessControllers:
    """The controller manager as a task of the server process, over its own API client."""

    def __init__(self, task: asyncio.Task[None] | None, stop: asyncio.Event, client: object | None) -> None:
        self.task = task
        self.stop = stop
        self.client = client

    async def aclose(self) -> None:
        self.stop.set()
        if self.task is not None:
            try:
                await asyncio.wait_for(self.task, 5)
            except (TimeoutError, asyncio.CancelledError):
                self.task.cancel()
            except Exception:
                log.exception("the in-process controllers failed")
        if self.client is not None:
            await self.client.close()  # type: ignore[attr-defined]


def _start_controllers(config: ServerConfig, url: str, ca: bytes, token: str) -> _InProcessControllers:
    stop = asyncio.Event()
    if config.controllers is None:
        return _InProcessControllers(None, stop, None)
    from svcnet.client.api import ApiClient
    from svcnet.client.kubeconfig import ClientConfig
    from svcnet.controllers.manager import ControllerManager

    client = ApiClient(ClientConfig(server=url, ca_data=ca, token=token))
    manager = ControllerManager(client, config.controllers)

    async def run() -> None:
        try:
            await manager.run(stop)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the in-process controller manager stopped")

    task = asyncio.get_running_loop().create_task(run(), name="controller-manager")
    return _InProcessControllers(task, stop, client)


def run_forever(config: ServerConfig, on_ready: Callable[[RunningServer], None] | None = None) -> None:
    """Blocking entry point for the CLI: uvloop when installed, clean stop on SIGINT/SIGTERM."""
    try:
        import uvloop

        runner_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a pinned dependency on Linux
        runner_factory = asyncio.new_event_loop

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await serve(config, on_ready, stop)

    with asyncio.Runner(loop_factory=runner_factory) as runner:
        runner.run(main())
