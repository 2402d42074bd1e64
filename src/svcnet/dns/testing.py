"""A DNS server on its own thread and event loop, for tests and scripts that query it with
blocking clients (dig, dnspython's dns.query)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from svcnet.dns.app import DnsService
from svcnet.dns.lookup import ZoneOptions
from svcnet.dns.server import ServerOptions


class ThreadedDns:
    """``with ThreadedDns(objects, zones=["cluster.local"]) as d: dns.query.udp(q, "127.0.0.1", port=d.port)``

    ``objects`` are Kubernetes object dicts served through a FileSource (so defaults apply);
    ``objects=None`` starts a server whose source never syncs. ``source`` overrides both.
    """

    def __init__(
        self,
        objects: Sequence[dict[str, Any]] | None = (),
        *,
        zones: Sequence[str] = ("cluster.local",),
        upstreams: Sequence[tuple[str, int]] = (),
        metrics: bool = False,
        source: object = None,
        host: str = "127.0.0.1",
        source_factory: Any = None,
        autopath: bool = False,
        **zone_options: Any,
    ) -> None:
        labels = tuple(tuple(z.rstrip(".").lower().split(".")) for z in zones)
        options = ZoneOptions(zones=labels, local_ips=(host,), **zone_options)
        server_options = ServerOptions(host, 0, tuple(upstreams), autopath=autopath)
        self.service = DnsService(options, server_options, (host, 0) if metrics else None)
        self.objects = objects
        self.source = source
        self.source_factory = source_factory  # called on the server's loop (informers bind to it)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="svcnet-dns-test", daemon=True)

    @property
    def port(self) -> int:
        assert self.service.server is not None
        return self.service.server.port

    @property
    def http_port(self) -> int | None:
        return self.service.http_port

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> ThreadedDns:
        self._thread.start()
        source = self.source
        if source is None and self.objects is not None:
            from svcnet.client.filesource import FileSource

            source = FileSource.from_objects(list(self.objects))
        self.source = source

        async def go() -> None:
            nonlocal source
            if self.source_factory is not None:
                source = self.source = self.source_factory()
            await self.service.start(source)
            if source is not None:
                await source.wait_synced()  # type: ignore[attr-defined]
                for _ in range(500):  # the index marks itself synced right after the source
                    if self.service.index.synced:
                        break
                    await asyncio.sleep(0.002)

        self.call(go())
        return self

    def stop(self) -> None:
        async def go() -> None:
            await self.service.stop()
            stop = getattr(self.source, "stop", None)
            if stop is not None:
                await stop()

        try:
            self.call(go())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()

    def __enter__(self) -> ThreadedDns:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
