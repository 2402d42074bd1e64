"""In-process API application fixtures for the REST, watch and Python-client tests: the app
of apiserver/app.py on a fresh SQLite store, served over plain HTTP on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from svcnet.apiserver.app import build_app
from svcnet.apiserver.options import ApiServerOptions
from svcnet.store.sqlite import SqliteStore

SVC = "/api/v1/namespaces/{ns}/services"
PODS = "/api/v1/namespaces/{ns}/pods"


@dataclass
class Api:
    client: TestClient
    store: SqliteStore
    url: str

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        raw: bytes | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {"Content-Type": content_type} if data is not None else {}
        resp = await self.client.request(method, path, data=data, headers=headers, **kwargs)
        text = await resp.text()
        try:
            parsed = json.loads(text) if text else None
        except json.JSONDecodeError:
            parsed = text
        return resp.status, parsed, resp.headers

    async def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        status, parsed, _ = await self.call(method, path, body, **kwargs)
        assert 200 <= status < 300, (status, parsed)
        return parsed


def service(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": name}}
    labels = spec.pop("labels", None)
    body.update(spec)
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": body}


def pod(name: str, node: str | None = None, **meta: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **meta}, "spec": spec}


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


@pytest.fixture
async def make_api(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[tuple[TestClient, SqliteStore]] = []

    async def start(**options: Any) -> Api:
        store = SqliteStore(str(tmp_path / f"state{len(started)}.db"))
        await store.start()
        client = TestClient(TestServer(build_app(store, ApiServerOptions(**options)), host="127.0.0.1"))
        await client.start_server()
        started.append((client, store))
        return Api(client, store, str(client.make_url("")).rstrip("/"))

    try:
        yield start
    finally:
        for client, store in reversed(started):
            await client.close()
            await store.close()


@pytest.fixture
async def api(make_api: Callable[..., Any]) -> Api:
    return await make_api()
