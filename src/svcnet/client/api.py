"""An async Kubernetes API client over aiohttp, generic over the resources in api/resources.py.

Every non-2xx reply raises ``ApiError`` carrying the server's ``Status`` object; network
failures surface as aiohttp.ClientError / TimeoutError (informers retry those). One session
with a connection pool is shared by all calls; ``close()`` releases it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from svcnet.api.resources import Resource
from svcnet.client.kubeconfig import ClientConfig, load_kubeconfig
from svcnet.client.source import ResourceRef, resolve_resource

log = logging.getLogger(__name__)

Obj = dict[str, Any]

USER_AGENT = "svcnet/0.1"
PATCH_CONTENT_TYPES = {
    "json": "application/json-patch+json",
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}


class ApiError(Exception):
    """A non-2xx reply; ``status`` is the Status object the server sent (or one built from the
    reply when the body was not a Status)."""

    def __init__(self, status: Obj) -> None:
        self.status = status
        super().__init__(f"{self.code} {self.reason}: {self.message}")

    @property
    def code(self) -> int:
        return int(self.status.get("code") or 0)

    @property
    def reason(self) -> str:
        return str(self.status.get("reason") or "")

    @property
    def message(self) -> str:
        return str(self.status.get("message") or "")

    @classmethod
    def from_reply(cls, code: int, body: bytes) -> ApiError:
        try:
            parsed = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("kind") == "Status":
            parsed.setdefault("code", code)
            return cls(parsed)
        text = body.decode("utf-8", "replace").strip()[:1000]
        return cls({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "code": code, "reason": _REASONS.get(code, ""), "message": text or f"HTTP {code}"})


# The StatusReason apimachinery assigns to a bare HTTP code (errors.go, NewGenericServerResponse).
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            405: "MethodNotAllowed", 409: "Conflict", 410: "Expired", 413: "RequestEntityTooLarge",
            415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests",
            500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}


def _clean(params: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


def resource_path(resource: Resource, namespace: str | None = None, name: str | None = None,
                  subresource: str | None = None) -> str:
    """The REST path: /api/v1/... for the core group, /apis/GROUP/VERSION/... otherwise;
    a namespaced resource without a namespace is the all-namespaces collection."""
    base = f"/apis/{resource.group}/{resource.version}" if resource.group else f"/api/{resource.version}"
    if resource.namespaced and namespace:
        base += f"/namespaces/{quote(namespace, safe='')}"
    path = f"{base}/{resource.plural}"
    if name is not None:
        path += f"/{quote(name, safe='')}"
        if subresource:
            path += f"/{subresource}"
    return path


class ApiClient:
    """Async client for one API server. Use as ``async with ApiClient(cfg) as api: ...``."""

    def __init__(self, config: ClientConfig, *, timeout: float = 30.0, max_connections: int = 64) -> None:
        self.config = config
        self.timeout = timeout
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._ssl = config.ssl_context()

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None, **kwargs: Any) -> ApiClient:
        return cls(load_kubeconfig(path, context), **kwargs)

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_connections,
                                             ssl=self._ssl if self._ssl is not None else True)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        return self._session

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers: dict[str, str] = {}
        token = self.config.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _request_kwargs(self) -> dict[str, Any]:
        if self.config.tls_server_name:
            return {"server_hostname": self.config.tls_server_name}
        return {}

    async def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                      body: Any = None, content_type: str = "application/json",
                      timeout: float | None = None) -> Obj:
        """One request; the decoded JSON reply, or ApiError for a non-2xx reply."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes | str) else orjson.dumps(body)
        kwargs = self._request_kwargs()
        if timeout is not None:
            kwargs["timeout"] = aiohttp.ClientTimeout(total=timeout)
        async with self._get_session().request(
            method, self.config.server + path, params=_clean(params or {}), data=data,
            headers=self._headers(content_type if data is not None else None), **kwargs,
        ) as resp:
            raw = await resp.read()
            if resp.status >= 300:
                raise ApiError.from_reply(resp.status, raw)
            if not raw:
                return {}
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                raise ApiError.from_reply(500, b"reply is not JSON: " + raw[:200]) from e

    # -- verbs -----------------------------------------------------------------------------------

    def _ns(self, resource: Resource, namespace: str | None, obj: Obj | None = None) -> str | None:
        """The namespace of a single-object call: given, else the object's, else the context's."""
        if not resource.namespaced:
            return None
        if namespace:
            return namespace
        if obj is not None and (obj.get("metadata") or {}).get("namespace"):
            return obj["metadata"]["namespace"]
        return self.config.namespace

    async def get(self, resource: ResourceRef, name: str, namespace: str | None = None,
                  subresource: str | None = None) -> Obj:
        r = resolve_resource(resource)
        return await self.request("GET", resource_path(r, self._ns(r, namespace), name, subresource))

    async def list(self, resource: ResourceRef, namespace: str | None = None, *,
                   label_selector: str | None = None, field_selector: str | None = None,
                   limit: int | None = None, continue_: str | None = None,
                   resource_version: str | None = None,
                   resource_version_match: str | None = None) -> Obj:
        """One page of a list; namespace None lists across all namespaces."""
        r = resolve_resource(resource)
        params = {"labelSelector": label_selector, "fieldSelector": field_selector, "limit": limit,
                  "continue": continue_, "resourceVersion": resource_version,
                  "resourceVersionMatch": resource_version_match}
        return await self.request("GET", resource_path(r, namespace), params=params)

    async def list_all(self, resource: ResourceRef, namespace: str | None = None, *,
                       label_selector: str | None = None, field_selector: str | None = None,
                       page_size: int | None = 500, resource_version: str | None = None) -> Obj:
        """Every page of a list, following ``continue``; one list object whose items are all
        the pages' items and whose metadata.resourceVersion is the snapshot's."""
        first = await self.list(resource, namespace, label_selector=label_selector,
                                field_selector=field_selector, limit=page_size,
                                resource_version=resource_version)
        items = list(first.get("items") or [])
        page = first
        while (page.get("metadata") or {}).get("continue"):
            page = await self.list(resource, namespace, label_selector=label_selector,
                                   field_selector=field_selector, limit=page_size,
                                   continue_=page["metadata"]["continue"])
            items.extend(page.get("items") or [])
        meta = dict(first.get("metadata") or {})
        meta.pop("continue", None)
        meta.pop("remainingItemCount", None)
        if (page.get("metadata") or {}).get("resourceVersion"):
            meta["resourceVersion"] = page["metadata"]["resourceVersion"]
        return {**first, "metadata": meta, "items": items}

    async def create(self, resource: ResourceRef, obj: Obj, namespace: str | None = None, *,
                     field_manager: str | None = None, dry_run: bool = False) -> Obj:
        r = resolve_resource(resource)
        params = {"fieldManager": field_manager, "dryRun": "All" if dry_run else None}
        return await self.request("POST", resource_path(r, self._ns(r, namespace, obj)),
                                  params=params, body=obj)

    async def update(self, resource: ResourceRef, obj: Obj, namespace: str | None = None, *,
                     field_manager: str | None = None) -> Obj:
        """PUT the object (metadata.resourceVersion, when set, makes it a compare-and-swap)."""
        r = resolve_resource(resource)
        path = resource_path(r, self._ns(r, namespace, obj), obj["metadata"]["name"])
        return await self.request("PUT", path, params={"fieldManager": field_manager}, body=obj)

    async def update_status(self, resource: ResourceRef, obj: Obj, namespace: str | None = None) -> Obj:
        r = resolve_resource(resource)
        path = resource_path(r, self._ns(r, namespace, obj), obj["metadata"]["name"], "status")
        return await self.request("PUT", path, body=obj)

    async def patch(self, resource: ResourceRef, name: str, patch: Any, namespace: str | None = None, *,
                    patch_type: str = "merge", subresource: str | None = None,
                    field_manager: str | None = None, force: bool | None = None) -> Obj:
        """patch_type: "json" (a list of ops), "merge", "strategic" or "apply" (server-side
        apply, which needs field_manager)."""
        if patch_type not in PATCH_CONTENT_TYPES:
            raise ValueError(f"patch_type must be one of {sorted(PATCH_CONTENT_TYPES)}")
        r = resolve_resource(resource)
        path = resource_path(r, self._ns(r, namespace), name, subresource)
        return await self.request("PATCH", path, params={"fieldManager": field_manager, "force": force},
                                  body=patch, content_type=PATCH_CONTENT_TYPES[patch_type])

    async def delete(self, resource: ResourceRef, name: str, namespace: str | None = None, *,
                     grace_period_seconds: int | None = None, propagation_policy: str | None = None,
                     preconditions: Obj | None = None) -> Obj:
        """Delete one object; the reply is the object (when deletion is deferred) or a Status."""
        r = resolve_resource(resource)
        options: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy is not None:
            options["propagationPolicy"] = propagation_policy
        if preconditions is not None:
            options["preconditions"] = preconditions
        return await self.request("DELETE", resource_path(r, self._ns(r, namespace), name), body=options)

    async def delete_collection(self, resource: ResourceRef, namespace: str | None = None, *,
                                label_selector: str | None = None,
                                field_selector: str | None = None) -> Obj:
        r = resolve_resource(resource)
        return await self.request("DELETE", resource_path(r, namespace),
                                  params={"labelSelector": label_selector, "fieldSelector": field_selector})

    async def watch(self, resource: ResourceRef, namespace: str | None = None, *,
                    resource_version: str | None = None, label_selector: str | None = None,
                    field_selector: str | None = None, timeout_seconds: int | None = None,
                    allow_watch_bookmarks: bool = True,
                    read_timeout: float | None = None) -> AsyncIterator[tuple[str, Obj]]:
        """Yield (type, object) for each event of a watch until the server ends the stream.

        ERROR events are yielded like the others (their object is a Status): the caller decides
        whether a 410 means relist. ``read_timeout`` bounds the silence between chunks, to notice
        a dead connection; by default timeout_seconds plus a margin, else no bound.
        """
        r = resolve_resource(resource)
        params = {"watch": True, "resourceVersion": resource_version, "labelSelector": label_selector,
                  "fieldSelector": field_selector, "timeoutSeconds": timeout_seconds,
                  "allowWatchBookmarks": allow_watch_bookmarks}
        if read_timeout is None and timeout_seconds is not None:
            read_timeout = timeout_seconds + 30
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=read_timeout)
        async with self._get_session().get(
            self.config.server + resource_path(r, namespace), params=_clean(params),
            headers=self._headers(), timeout=timeout, **self._request_kwargs(),
        ) as resp:
            if resp.status >= 300:
                raise ApiError.from_reply(resp.status, await resp.read())
            # Split the chunked stream on newlines ourselves: StreamReader.readline has a size
            # limit that a big object (a pod with many containers, a 1000-endpoint slice) exceeds.
            buffer = bytearray()
            async for chunk in resp.content.iter_any():
                buffer.extend(chunk)
                start = 0
                while True:
                    end = buffer.find(b"\n", start)
                    if end < 0:
                        break
                    line = bytes(buffer[start:end])
                    start = end + 1
                    event = _decode_event(line)
                    if event is not None:
                        yield event
                if start:
                    del buffer[:start]
            tail = _decode_event(bytes(buffer))
            if tail is not None:
                yield tail


def _decode_event(line: bytes) -> tuple[str, Obj] | None:
    line = line.strip()
    if not line:
        return None
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise aiohttp.ClientPayloadError(f"watch stream line is not JSON: {line[:200]!r}") from e
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise aiohttp.ClientPayloadError(f"watch stream line is not an event: {line[:200]!r}")
    obj = event.get("object")
    return event["type"], obj if isinstance(obj, dict) else {}

