"""Informer against a fake API server that serves list + watch the way kube-apiserver does,
and misbehaves on demand: 410 Expired (as an ERROR event or an HTTP reply), dropped streams."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from svcnet.client.api import ApiClient, ApiError
from svcnet.client.cache import INDEX_SERVICE, endpointslice_service_index
from svcnet.client.informer import Informer, InformerSource
from svcnet.client.kubeconfig import ClientConfig
from svcnet.client.source import ObjectSource

PAGE = 2  # small pages so the informer has to follow continue tokens


class FakeApi:
    """Services in one namespace with a revision counter and a bounded watch history."""

    def __init__(self) -> None:
        self.objects: dict[str, dict] = {}
        self.rv = 0
        self.history: list[tuple[int, str, dict]] = []
        self.oldest_watchable = 0  # a watch from an older resourceVersion gets 410
        self.queues: set[asyncio.Queue] = set()
        self.lists: list[dict] = []
        self.watches: list[dict] = []
        self.http_410_once = False
        self.failing_lists = 0  # this many lists get 410 (an expired continue token) first
        self.transports: set = set()

    # -- state changes (synchronous, so a test can make several without the informer running) --

    def _emit(self, kind: str, obj: dict) -> None:
        self.history.append((self.rv, kind, obj))
        for q in self.queues:
            q.put_nowait((kind, obj))

    def put(self, name: str, port: int = 80, labels: dict | None = None) -> dict:
        self.rv += 1
        existed = name in self.objects
        obj = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": "default", "resourceVersion": str(self.rv),
                            "uid": f"uid-{name}", "labels": labels or {}},
               "spec": {"ports": [{"port": port}]}}
        self.objects[name] = obj
        self._emit("MODIFIED" if existed else "ADDED", obj)
        return obj

    def delete(self, name: str) -> None:
        self.rv += 1
        obj = self.objects.pop(name)
        obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.rv)}}
        self._emit("DELETED", obj)

    def compact(self) -> None:
        """Forget history: watches from any revision up to now get 410."""
        self.oldest_watchable = self.rv + 1

    def drop_watches(self) -> None:
        """Cut every open watch connection abruptly, as a crashed server or proxy would."""
        for transport in list(self.transports):
            transport.close()
        self.transports.clear()
        self.queues.clear()  # so `queues` non-empty means a new watch is live

    # -- HTTP ------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/default/services", self.handle)
        app.router.add_get("/api/v1/services", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") in ("true", "1"):
            return await self.watch(request)
        query = dict(request.query)
        self.lists.append(query)
        if self.failing_lists:
            self.failing_lists -= 1
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "reason": "Expired", "code": 410,
                                      "message": "The provided continue parameter is too old"}, status=410)
        names = sorted(self.objects)
        start = int(query.get("continue") or 0)
        limit = int(query.get("limit") or len(names) or 1)
        page = names[start:start + limit]
        meta: dict = {"resourceVersion": str(self.rv)}
        if start + limit < len(names):
            meta["continue"] = str(start + limit)
        items = [{k: v for k, v in self.objects[n].items() if k not in ("kind", "apiVersion")} for n in page]
        return web.json_response({"kind": "ServiceList", "apiVersion": "v1", "metadata": meta,
                                  "items": items})

    async def watch(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.watches.append(query)
        if self.http_410_once:
            self.http_410_once = False
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "reason": "Expired", "code": 410, "message": "too old"}, status=410)
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        await resp.prepare(request)
        since = int(query.get("resourceVersion") or 0)

        async def send(kind: str, obj: dict) -> None:
            await resp.write(orjson.dumps({"type": kind, "object": obj}) + b"\n")

        if since + 1 < self.oldest_watchable:
            await send("ERROR", {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "reason": "Expired", "code": 410,
                                 "message": f"too old resource version: {since} ({self.oldest_watchable})"})
            return resp
        queue: asyncio.Queue = asyncio.Queue()
        self.queues.add(queue)
        self.transports.add(request.transport)
        try:
            for rv, kind, obj in self.history:
                if rv > since:
                    await send(kind, obj)
            timeout = float(query.get("timeoutSeconds") or 3600)
            async with asyncio.timeout(timeout):
                while True:
                    kind, obj = await queue.get()
                    await send(kind, obj)
        except TimeoutError:
            pass
        finally:
            self.queues.discard(queue)
            self.transports.discard(request.transport)
        return resp


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeApi, ApiClient]]:
    api = FakeApi()
    server = TestServer(api.app())
    await server.start_server()
    client = ApiClient(ClientConfig(server=str(server.make_url("")).rstrip("/")))
    try:
        yield api, client
    finally:
        await client.close()
        await server.close()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def attach(self, informer: Informer) -> None:
        informer.add_handler(
            on_add=lambda o: self.events.append(("add", o["metadata"]["name"])),
            on_update=lambda old, new: self.events.append(("update", new["metadata"]["name"])),
            on_delete=lambda o: self.events.append(("delete", o["metadata"]["name"])),
        )


def informer_for(client: ApiClient, **kwargs) -> Informer:
    kwargs.setdefault("min_watch_timeout", 30)
    return Informer(client, "services", "default", page_size=PAGE, backoff_initial=0.01,
                    backoff_cap=0.05, **kwargs)


async def test_initial_list_follows_continue_then_watches(fake):
    api, client = fake
    for name in ("a", "b", "c", "d", "e"):
        api.put(name)
    inf = informer_for(client)
    rec = Recorder()
    rec.attach(inf)
    await inf.start()
    try:
        assert await inf.wait_synced(timeout=5)
        assert sorted(n for _, n in rec.events) == ["a", "b", "c", "d", "e"]
        assert {k for k, _ in rec.events} == {"add"}
        assert len(api.lists) == 3, "5 objects in pages of 2 take three list calls"
        assert inf.store.get("default", "c")["kind"] == "Service", "list items get their kind back"
        await until(lambda: len(api.watches) == 1)
        watch = api.watches[0]
        assert watch["resourceVersion"] == "5"
        assert watch["allowWatchBookmarks"] == "true"
        assert 30 <= int(watch["timeoutSeconds"]) < 60
    finally:
        await inf.stop()


async def test_watch_events_update_cache_and_handlers(fake):
    api, client = fake
    api.put("a")
    inf = informer_for(client)
    rec = Recorder()
    rec.attach(inf)
    await inf.start()
    try:
        await inf.wait_synced(timeout=5)
        await until(lambda: api.queues)
        api.put("b")
        api.put("a", port=81)
        api.delete("b")
        await until(lambda: len(rec.events) == 4)
        assert rec.events == [("add", "a"), ("add", "b"), ("update", "a"), ("delete", "b")]
        assert inf.store.get("default", "a")["spec"]["ports"][0]["port"] == 81
        assert inf.store.get("default", "b") is None
        assert inf.last_sync_resource_version == str(api.rv)
    finally:
        await inf.stop()


@pytest.mark.parametrize("how", ["error-event", "http-410"])
async def test_relist_on_410_delivers_the_difference(fake, how):
    api, client = fake
    for name in ("a", "b", "c"):
        api.put(name)
    inf = informer_for(client)
    rec = Recorder()
    rec.attach(inf)
    await inf.start()
    try:
        await inf.wait_synced(timeout=5)
        await until(lambda: api.queues)
        rec.events.clear()
        # While the informer is cut off, the world changes and the history is compacted, so the
        # informer cannot resume: only a relist can tell it that b is gone.
        api.drop_watches()
        api.put("a", port=8080)
        api.delete("b")
        api.put("d")
        if how == "error-event":
            api.compact()
        else:
            api.http_410_once = True
        await until(lambda: len(api.lists) >= 2 and len(rec.events) == 3)
        assert sorted(rec.events) == [("add", "d"), ("delete", "b"), ("update", "a")]
        assert sorted(o["metadata"]["name"] for o in inf.store.list()) == ["a", "c", "d"]
        # After the relist it watches again from the fresh list's resourceVersion.
        await until(lambda: api.queues)
        assert api.watches[-1]["resourceVersion"] == str(api.rv)
        api.put("e")
        await until(lambda: ("add", "e") in rec.events)
    finally:
        await inf.stop()


async def test_reconnects_after_dropped_stream_without_relisting(fake):
    api, client = fake
    api.put("a")
    inf = informer_for(client)
    rec = Recorder()
    rec.attach(inf)
    await inf.start()
    try:
        await inf.wait_synced(timeout=5)
        for round_ in range(3):
            await until(lambda: api.queues)
            await until(lambda r=round_: ("add", f"x{r - 1}") in rec.events or r == 0)
            api.drop_watches()
            api.put(f"x{round_}")  # made while disconnected; the resumed watch must carry it
        await until(lambda: ("add", "x2") in rec.events)
        assert [e for e in rec.events if e[0] == "add"] == [("add", "a"), ("add", "x0"), ("add", "x1"),
                                                            ("add", "x2")]
        assert len(api.lists) == 1, "history was still there: resume, no relist"
        assert len(api.watches) == 4
        # Each resumed watch starts after the last event the informer saw.
        assert [w["resourceVersion"] for w in api.watches] == ["1", "1", "2", "3"]
    finally:
        await inf.stop()


async def test_watch_rotation_when_the_server_ends_the_stream(fake):
    api, client = fake
    inf = informer_for(client, min_watch_timeout=1)
    rec = Recorder()
    rec.attach(inf)
    await inf.start()
    try:
        await inf.wait_synced(timeout=5)
        await until(lambda: len(api.watches) >= 2, timeout=5)
        api.put("late")
        await until(lambda: ("add", "late") in rec.events)
        assert len(api.lists) == 1
    finally:
        await inf.stop()


async def test_retries_while_server_is_down():
    # Nothing listens on this port until the server starts.
    api = FakeApi()
    api.put("a")
    server = TestServer(api.app())
    await server.start_server()
    port = server.port
    await server.close()
    client = ApiClient(ClientConfig(server=f"http://127.0.0.1:{port}"))
    inf = informer_for(client)
    await inf.start()
    try:
        assert not await inf.wait_synced(timeout=0.2)
        server = TestServer(api.app(), port=port)
        await server.start_server()
        assert await inf.wait_synced(timeout=5)
        assert inf.store.get("default", "a") is not None
    finally:
        await inf.stop()
        await client.close()
        await server.close()


async def test_list_failures_are_retried(fake):
    api, client = fake
    api.put("a")
    api.failing_lists = 3
    inf = informer_for(client)
    await inf.start()
    try:
        assert await inf.wait_synced(timeout=5)
        assert len(api.lists) == 4
        assert inf.store.get("default", "a") is not None
    finally:
        await inf.stop()


async def test_resync_refires_updates(fake):
    api, client = fake
    api.put("a")
    inf = informer_for(client, resync_period=0.05)
    resyncs: list[tuple[str, bool]] = []
    inf.add_handler(on_update=lambda old, new: resyncs.append((new["metadata"]["name"], old is new)))
    await inf.start()
    try:
        await until(lambda: len(resyncs) >= 2)
        assert set(resyncs) == {("a", True)}
    finally:
        await inf.stop()


async def test_late_handler_and_indexer_see_existing_objects(fake):
    api, client = fake
    api.put("a", labels={"kubernetes.io/service-name": "web"})
    api.put("b", labels={"kubernetes.io/service-name": "web"})
    api.put("c")
    inf = informer_for(client)
    await inf.start()
    try:
        await inf.wait_synced(timeout=5)
        inf.add_indexer(INDEX_SERVICE, endpointslice_service_index)
        assert sorted(o["metadata"]["name"] for o in inf.store.by_index(INDEX_SERVICE, "default/web")) \
            == ["a", "b"]
        seen: list[str] = []

        async def on_add(obj):
            seen.append(obj["metadata"]["name"])

        inf.add_handler(on_add=on_add)
        await until(lambda: len(seen) == 3)
        assert sorted(seen) == ["a", "b", "c"]
        # The index follows changes.
        await until(lambda: api.queues)
        api.delete("a")
        await until(lambda: len(inf.store.by_index(INDEX_SERVICE, "default/web")) == 1)
        assert inf.store.by_index(INDEX_SERVICE, "default/web")[0]["metadata"]["name"] == "b"
    finally:
        await inf.stop()


async def test_failing_handler_does_not_stop_delivery(fake):
    api, client = fake
    inf = informer_for(client)
    seen: list[str] = []

    def broken(obj):
        raise RuntimeError("handler bug")

    inf.add_handler(on_add=broken)
    inf.add_handler(on_add=lambda o: seen.append(o["metadata"]["name"]))
    await inf.start()
    try:
        await inf.wait_synced(timeout=5)
        await until(lambda: api.queues)
        api.put("a")
        await until(lambda: seen == ["a"])
        # The failure stays with the handler: later events flow, and the informer neither
        # relists nor reconnects over it.
        api.put("b")
        await until(lambda: seen == ["a", "b"])
        assert len(api.lists) == 1 and len(api.watches) == 1
        assert sorted(o["metadata"]["name"] for o in inf.store.list()) == ["a", "b"]
    finally:
        await inf.stop()


async def test_informer_source_is_an_object_source(fake):
    api, client = fake
    api.put("a")
    source = InformerSource(client, ["services"], namespace="default", page_size=PAGE,
                            min_watch_timeout=30)
    assert isinstance(source, ObjectSource)
    added: list[str] = []
    source.add_handler("svc", on_add=lambda o: added.append(o["metadata"]["name"]))
    async with source:
        assert await source.wait_synced(timeout=5)
        assert source.has_synced()
        assert source.store("Service").get("default", "a") is not None
        assert added == ["a"]


async def test_api_error_carries_status(fake):
    _, client = fake
    with pytest.raises(ApiError) as info:
        await client.get("pods", "nope", "default")
    assert info.value.code == 404
    assert info.value.status["kind"] == "Status"


async def test_watch_handles_lines_larger_than_stream_buffers():
    """One event far larger than aiohttp's readline limit, split over many chunks."""
    big = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "big", "namespace": "default", "resourceVersion": "1",
                        "annotations": {f"k{i}": "v" * 200 for i in range(3000)}}}
    payload = orjson.dumps({"type": "ADDED", "object": big}) + b"\n" + \
        orjson.dumps({"type": "DELETED", "object": big})  # last event without a trailing newline

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in itertools.count(0, 7000):
            if i >= len(payload):
                break
            await resp.write(payload[i:i + 7000])
        return resp

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/default/services", handler)
    server = TestServer(app)
    await server.start_server()
    client = ApiClient(ClientConfig(server=str(server.make_url("")).rstrip("/")))
    try:
        events = [(kind, obj["metadata"]["name"]) async for kind, obj in client.watch("services", "default")]
        assert events == [("ADDED", "big"), ("DELETED", "big")]
    finally:
        await client.close()
        await server.close()
