"""What the kube-proxy daemon (iptables, nftables, ipvs) and the user-space proxy daemon share:
the object source and its handlers, the /healthz and /metrics servers, the objects-file poll.

A daemon sets `opts` (files, kubeconfig, node, file_poll_interval), `metrics`, `health`,
`source`, `_sites`, and says which proxy states the events feed (`_states`) and what follows a
change (`_changed`).
"""

from __future__ import annotations

import asyncio
import logging
import os

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from svcnet.client.filesource import FileSource, ObjectsFileError

# Upstream kube-proxy ignores objects that another proxy owns, and headless services.
PROXY_LABEL_SELECTOR = "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless"


def split_host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def ignored(obj: dict) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return "service.kubernetes.io/service-proxy-name" in labels or "service.kubernetes.io/headless" in labels


class DaemonBase:
    log: logging.Logger = logging.getLogger("svcnet.proxy")
    # whether _serve logs the paths it serves, and a reload what changed
    log_details = False

    # --- events ---

    def _states(self) -> list:
        raise NotImplementedError

    def _changed(self) -> None:
        raise NotImplementedError

    def _own_node(self, obj: dict, deleted: bool) -> None:
        """This node's object was added, updated or deleted (before the states hear of it)."""

    def _on_service(self, obj: dict, deleted: bool = False) -> None:
        for state in self._states():
            state.on_service(obj, deleted=deleted or ignored(obj))
        self.metrics.service_changes.inc()
        self._changed()

    def _on_slice(self, obj: dict, deleted: bool = False) -> None:
        for state in self._states():
            state.on_endpoint_slice(obj, deleted=deleted or ignored(obj))
        self.metrics.endpoint_changes.inc()
        self._changed()

    def _on_node(self, obj: dict, deleted: bool = False) -> None:
        if (obj.get("metadata") or {}).get("name") != self.opts.node.node_name:
            return
        self._own_node(obj, deleted)
        states = self._states()
        for state in states:
            state.on_node(obj, deleted=deleted)
        if any(s.has_changes for s in states):
            self._changed()

    def _make_source(self):
        if self.opts.files:
            return FileSource(self.opts.files)
        from svcnet.client.informer import InformerSource

        src = InformerSource.from_kubeconfig(self.opts.kubeconfig)
        src.watch("services", label_selector=PROXY_LABEL_SELECTOR)
        src.watch("endpointslices", label_selector=PROXY_LABEL_SELECTOR)
        src.watch("nodes", field_selector=f"metadata.name={self.opts.node.node_name}")
        return src

    async def _start_source(self) -> bool:
        """Make the object source, hook the handlers, start it and wait for its first lists.
        False (logged) when the objects files cannot be read."""
        self.source = src = self._make_source()
        src.add_handler("services", on_add=self._on_service, on_update=lambda _o, n: self._on_service(n),
                        on_delete=lambda o: self._on_service(o, deleted=True))
        src.add_handler("endpointslices", on_add=self._on_slice, on_update=lambda _o, n: self._on_slice(n),
                        on_delete=lambda o: self._on_slice(o, deleted=True))
        src.add_handler("nodes", on_add=self._on_node, on_update=lambda _o, n: self._on_node(n),
                        on_delete=lambda o: self._on_node(o, deleted=True))
        try:
            await src.start()
        except ObjectsFileError as e:
            self.log.error("%s", e)
            return False
        await src.wait_synced()
        return True

    # --- servers ---

    async def _serve(self, app: web.Application, address: str) -> None:
        host, port = split_host_port(address)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port, reuse_address=True).start()
        self._sites.append(runner)
        if self.log_details:
            self.log.info("serving %s on %s",
                          ", ".join(sorted({r.resource.canonical for r in app.router.routes()})), address)

    def _metrics_app(self) -> web.Application:
        async def metrics(_req: web.Request) -> web.Response:
            body = generate_latest(self.metrics.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        return app

    # --- loops ---

    async def _file_poll_loop(self) -> None:
        def stamp() -> tuple:
            out = []
            for p in self.opts.files:
                try:
                    st = os.stat(p)
                    out.append((st.st_mtime_ns, st.st_size))
                except OSError:
                    out.append(None)
            return tuple(out)

        last = stamp()
        while True:
            await asyncio.sleep(self.opts.file_poll_interval)
            now = stamp()
            if now == last:
                continue
            last = now
            try:
                added, updated, deleted = await self.source.reload()
                if self.log_details:
                    self.log.info("objects files changed: %d added, %d updated, %d deleted",
                                  added, updated, deleted)
            except ObjectsFileError as e:
                self.log.error("not reloading objects: %s", e)
