"""Helpers for the etcd integration tests: an HTTPS client for one running API server, and
servers started on an etcd datastore (stopped by the fixtures that start them)."""

from __future__ import annotations

import json
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from svcnet.apiserver.launcher import ApiServerProcess, start_api_server


def start_on_etcd(data_dir: Path, etcd_url: str) -> ApiServerProcess:
    return start_api_server(data_dir, extra_args=["--datastore", etcd_url])


def service(name: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "protocol": "TCP"}]},
    }


class Rest:
    """A small async client for one server (bearer token, the server's CA)."""

    def __init__(self, server: ApiServerProcess, timeout: float = 30) -> None:
        self.server = server
        self._ssl = ssl.create_default_context(cafile=str(server.ca_path))
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {server.token}"},
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=64),
            timeout=aiohttp.ClientTimeout(total=timeout),
        )

    async def close(self) -> None:
        await self._session.close()

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        async with self._session.request(method, self.server.url + path, data=data, headers=headers) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text) if text else None
            except json.JSONDecodeError:
                return resp.status, text

    async def watch(self, path: str) -> aiohttp.ClientResponse:
        resp = await self._session.get(
            self.server.url + path, timeout=aiohttp.ClientTimeout(total=None, sock_read=None)
        )
        assert resp.status == 200, await resp.text()
        return resp


def wait_ready(server: ApiServerProcess, timeout: float = 20) -> None:
    """Until /readyz answers 200 (the server's datastore is reachable again)."""
    ctx = ssl.create_default_context(cafile=str(server.ca_path))
    deadline = time.monotonic() + timeout
    while True:
        try:
            auth = {"Authorization": f"Bearer {server.token}"}
            req = urllib.request.Request(server.url + "/readyz", headers=auth)
            with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("server not ready")
        time.sleep(0.1)
