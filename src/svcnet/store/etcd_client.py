"""A small client for etcd v3's JSON gateway (grpc-gateway, served on the client port).

Why the gateway and not a gRPC library: the Python etcd3 packages are unmaintained or pin old
protobuf/grpc releases, while the gateway is part of every etcd v3 server, speaks the same
KV/Watch API as JSON over HTTP/1.1, and aiohttp (already a dependency) gives connection pooling,
TLS and streaming. docs/datastore.md records the choice.

Failover: requests go to one endpoint at a time; when it cannot be reached, or reports that it
has no leader, the next endpoint is tried until ``timeout`` runs out. A write is only retried
when etcd cannot have applied it (the connection was refused, or the member had no leader to
propose it to); a write whose outcome is unknown (timeout, connection lost after sending) fails
with UnavailableError, so the caller never sees a retried create report "already exists" for
its own write.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from svcnet.store.interface import CompactedError, FutureRevisionError, StoreError, UnavailableError

# etcd's own messages (server/etcdserver/api/v3rpc/rpctypes); matched on text because the
# gateway reports them as {"error": ..., "code": <grpc code>}.
_COMPACTED = "required revision has been compacted"
_FUTURE = "required revision is a future revision"
# The request never reached raft: safe to send to another member, writes included.
_NOT_PROPOSED = ("no leader", "not capable", "not leader", "too many requests")
# Reads only: the outcome of a write that got these is unknown.
_TRANSIENT = ("request timed out", "leader changed", "timed out", "unhealthy cluster", "stopped")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def b64_bytes(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


@dataclass(frozen=True)
class EtcdTLS:
    """Client TLS for etcd: the CA that signed the members' certificates and, for client
    certificate authentication, this client's certificate and key (PEM files)."""

    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.cafile)
        if self.certfile:
            ctx.load_cert_chain(self.certfile, self.keyfile)
        return ctx


class EtcdRequestError(StoreError):
    """etcd answered the request with an error the store does not map to a specific type."""


class EtcdClient:
    def __init__(
        self,
        endpoints: Sequence[str],
        tls: EtcdTLS | None = None,
        timeout: float = 5.0,
        connections: int = 128,
    ) -> None:
        if not endpoints:
            raise ValueError("etcd needs at least one endpoint")
        scheme = "https" if tls is not None else "http"
        self.urls = [e if "://" in e else f"{scheme}://{e}" for e in endpoints]
        self._tls = tls
        self.timeout = timeout
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._current = 0

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._connections,
            ssl=self._tls.context() if self._tls is not None else False,
            enable_cleanup_closed=True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
            headers={"Content-Type": "application/json"},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise UnavailableError("etcd client is closed")
        return self._session

    def _rotate(self, failed: int) -> None:
        if self._current == failed:
            self._current = (failed + 1) % len(self.urls)

    async def call(self, path: str, body: dict[str, Any], *, write: bool) -> dict[str, Any]:
        """POST ``body`` to ``path`` (e.g. /v3/kv/range) and return the decoded reply."""
        deadline = time.monotonic() + self.timeout
        last_problem = "no endpoint answered"
        data = orjson.dumps(body)
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UnavailableError(f"etcd unavailable: {last_problem}")
            index = self._current
            url = self.urls[index] + path
            try:
                async with self.session.post(
                    url, data=data, timeout=aiohttp.ClientTimeout(total=remaining)
                ) as resp:
                    raw = await resp.read()
            except aiohttp.ClientConnectorError as exc:  # nothing was sent
                last_problem = f"{self.urls[index]}: {exc.os_error or exc}"
                self._rotate(index)
            except aiohttp.ClientOSError as exc:
                last_problem = f"{self.urls[index]}: {exc}"
                self._rotate(index)
                # A body that could not be written completely cannot have been applied (a
                # pooled connection to a member that died): safe to send elsewhere.
                if write and "Can not write request body" not in str(exc):
                    raise UnavailableError(
                        f"etcd did not confirm the write ({last_problem}); it may or may not have "
                        "been applied: read it back or retry"
                    ) from exc
            except (TimeoutError, aiohttp.ClientError) as exc:
                last_problem = f"{self.urls[index]}: {type(exc).__name__} {exc}".strip()
                self._rotate(index)
                if write:
                    raise UnavailableError(
                        f"etcd did not confirm the write ({last_problem}); it may or may not have "
                        "been applied: read it back or retry"
                    ) from exc
            else:
                reply = _decode(raw, url)
                error = reply.get("error")
                if error is None and resp.status == 200:
                    return reply
                message = str(reply.get("message") or error or f"HTTP {resp.status}")
                mapped = _map_error(message, body)
                if mapped is not None:
                    raise mapped
                last_problem = f"{self.urls[index]}: {message}"
                if any(text in message for text in _NOT_PROPOSED) or (
                    not write and any(text in message for text in _TRANSIENT)
                ):
                    self._rotate(index)
                elif any(text in message for text in _TRANSIENT):
                    raise UnavailableError(f"etcd: {message}")
                else:
                    raise EtcdRequestError(f"etcd rejected the request: {message}")
            attempt += 1
            if attempt % len(self.urls) == 0:
                # Every member failed once: give an election a moment before the next round.
                await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    async def open_watch(self, create_request: dict[str, Any]) -> tuple[aiohttp.ClientResponse, int]:
        """Open a watch stream on the current endpoint (failing over as ``call`` does).
        The caller (EtcdWatch) reads its newline-delimited messages and closes the response."""
        deadline = time.monotonic() + self.timeout
        last_problem = "no endpoint answered"
        body = orjson.dumps({"create_request": create_request})
        while time.monotonic() < deadline:
            index = self._current
            try:
                resp = await self.session.post(
                    self.urls[index] + "/v3/watch",
                    data=body,
                    # Ask the member to end the watch when it loses its leader, so a watch on a
                    # partitioned member fails over instead of going silent (etcd's "hasleader").
                    headers={"Grpc-Metadata-hasleader": "true"},
                    timeout=aiohttp.ClientTimeout(total=None, connect=max(0.1, deadline - time.monotonic())),
                )
            except (TimeoutError, aiohttp.ClientError) as exc:
                last_problem = f"{self.urls[index]}: {exc}"
                self._rotate(index)
                await asyncio.sleep(0.05)
                continue
            if resp.status != 200:
                raw = await resp.read()
                resp.release()
                message = str(_decode(raw, "watch").get("message") or f"HTTP {resp.status}")
                last_problem = f"{self.urls[index]}: {message}"
                self._rotate(index)
                await asyncio.sleep(0.05)
                continue
            return resp, index
        raise UnavailableError(f"etcd unavailable for watch: {last_problem}")

    def failed(self, index: int) -> None:
        self._rotate(index)


def _decode(raw: bytes, where: str) -> dict[str, Any]:
    try:
        reply = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UnavailableError(f"etcd sent an undecodable reply from {where}: {raw[:200]!r}") from exc
    if not isinstance(reply, dict):
        raise UnavailableError(f"etcd sent an unexpected reply from {where}: {raw[:200]!r}")
    return reply


def _map_error(message: str, body: dict[str, Any]) -> StoreError | None:
    requested = int(body.get("revision") or 0)
    if _COMPACTED in message:
        return CompactedError(requested, 0)
    if _FUTURE in message:
        return FutureRevisionError(requested, 0)
    return None


def header_revision(reply: dict[str, Any]) -> int:
    return int(reply.get("header", {}).get("revision") or 0)
