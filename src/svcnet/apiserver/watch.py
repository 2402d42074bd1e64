"""Watch requests: newline-delimited JSON events over a chunked response, served from the
watch cache (synthetic ADDED for the current state when resourceVersion is unset or "0",
exact resume after a resourceVersion still in the window, 410 Expired below it, bookmarks,
timeouts)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import orjson
from aiohttp import web

from svcnet.api import errors
from svcnet.api.errors import StatusError
from svcnet.api.resources import Resource
from svcnet.apiserver import tables
from svcnet.apiserver.codec import query_bool, query_int
from svcnet.apiserver.listing import make_predicate, parse_resource_version, parse_selectors, too_large_rv
from svcnet.apiserver.options import ApiServerOptions
from svcnet.apiserver.watchcache import ADDED, WatchCache, Watcher

# How often a blocked watch checks whether its client went away.
_LIVENESS_SECONDS = 5.0
_WRITE_BATCH_BYTES = 256 * 1024
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def _error_frame(err: StatusError) -> bytes:
    return orjson.dumps({"type": "ERROR", "object": err.status()}) + b"\n"


def _bookmark_frame(resource: Resource, rev: int, initial_end: bool = False) -> bytes:
    metadata: dict[str, Any] = {"resourceVersion": str(rev)}
    if initial_end:
        metadata["annotations"] = {INITIAL_EVENTS_END: "true"}
    obj = {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": metadata}
    return orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"


async def serve_watch(
    request: web.Request,
    cache: WatchCache,
    options: ApiServerOptions,
    resource: Resource,
    namespace: str | None,
    name: str | None,
) -> web.StreamResponse:
    query = request.query
    encode = tables.watch_encoder(request.headers.get("Accept", ""), query, resource)
    label, field = parse_selectors(query, resource)
    if name is not None:
        from svcnet.api import selectors

        name_sel = selectors.parse_field_selector(f"metadata.name={_escape(name)}", resource)
        field = name_sel if field is None else selectors.FieldSelector(field.terms + name_sel.terms, resource)
    predicate = make_predicate(label, field)
    bookmarks = query_bool(query, "allowWatchBookmarks")
    send_initial = query.get("sendInitialEvents")
    initial_events = query_bool(query, "sendInitialEvents") if send_initial is not None else None
    match = query.get("resourceVersionMatch") or ""
    if initial_events is None and match:
        raise errors.invalid(
            "ListOptions",
            "",
            [
                errors.forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                )
            ],
        )
    if initial_events is not None:
        if match != "NotOlderThan":
            raise errors.invalid(
                "ListOptions",
                "",
                [
                    errors.invalid_value(
                        "resourceVersionMatch",
                        match,
                        "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                    )
                ],
            )
        if not bookmarks:
            raise errors.invalid(
                "ListOptions",
                "",
                [
                    errors.forbidden(
                        "allowWatchBookmarks",
                        "allowWatchBookmarks must be set to true when sendInitialEvents is specified",
                    )
                ],
            )
    timeout = query_int(query, "timeoutSeconds")
    if timeout is None or timeout <= 0:
        base = options.min_request_timeout_seconds
        timeout_s = base * (1 + random.random())
    else:
        timeout_s = float(timeout)
    rv_text = query.get("resourceVersion") or ""
    rv = parse_resource_version(rv_text) if rv_text else 0

    rcache = cache.cache(resource)
    replay_state = initial_events if initial_events is not None else rv == 0
    backlog: list[bytes] = []
    if replay_state:
        if rv_text == "":  # unset = a consistent read, with or without sendInitialEvents
            await cache.sync(options.wait_for_revision_seconds)
        elif rv and not await cache.wait_for(rv, options.wait_for_revision_seconds):
            raise too_large_rv(rv, cache.revision)
        # No await from here to subscribe(): the snapshot and the subscription see the same
        # revision, so nothing is missed or sent twice.
        start_rev = cache.revision
        for entry in rcache.entries(namespace):
            if predicate is None or predicate(entry.obj):
                backlog.append(b'{"type":"ADDED","object":' + entry.raw + b"}\n")
        watcher = cache.subscribe(resource, namespace, predicate)
        if initial_events:
            backlog.append(_bookmark_frame(resource, start_rev, initial_end=True))
    else:
        if rv > cache.revision and not await cache.wait_for(rv, options.wait_for_revision_seconds):
            raise too_large_rv(rv, cache.revision)
        if rv < rcache.window_start:
            expired = errors.expired(f"too old resource version: {rv} ({rcache.window_start + 1})")
            response = await _start(request)
            await response.write(_error_frame(expired))
            await response.write_eof()
            return response
        # As above: the backlog from the window and the subscription share one instant.
        probe = Watcher(rcache, namespace, predicate, options.watcher_queue_limit)
        for ev in rcache.events_after(rv):
            probe.offer(ev)
        backlog.extend(probe.drain())
        watcher = cache.subscribe(resource, namespace, predicate)
    return await _stream(request, watcher, backlog, resource, cache, bookmarks, timeout_s, options, encode)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


async def _start(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    return response


async def _stream(
    request: web.Request,
    watcher: Watcher,
    backlog: list[bytes],
    resource: Resource,
    cache: WatchCache,
    bookmarks: bool,
    timeout_s: float,
    options: ApiServerOptions,
    encode: tables.WatchTableEncoder | None = None,
) -> web.StreamResponse:
    deadline = time.monotonic() + timeout_s
    next_bookmark = time.monotonic() + options.bookmark_interval_seconds
    try:
        response = await _start(request)
        await _write_frames(response, backlog, encode)
        del backlog
        while True:
            frames = watcher.drain()
            if frames:
                await _write_frames(response, frames, encode)
                continue
            if watcher.closed:
                break
            now = time.monotonic()
            if now >= deadline:
                break
            if bookmarks and now >= next_bookmark:
                # Everything up to the cache's revision has been offered to this watcher and
                # its queue is empty, so the bookmark's revision is a safe resume point.
                await _write_frames(response, [_bookmark_frame(resource, cache.revision)], encode)
                next_bookmark = now + options.bookmark_interval_seconds
                continue
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            wait = min(deadline - now, _LIVENESS_SECONDS)
            if bookmarks:
                wait = min(wait, max(next_bookmark - now, 0.0))
            try:
                await asyncio.wait_for(watcher.wakeup.wait(), timeout=max(wait, 0.0))
            except TimeoutError:
                pass
        if watcher.overflowed:
            # Tell the client to resume (or relist) rather than silently ending.
            await response.write(
                _error_frame(errors.expired("watch closed: the client fell too far behind; please re-watch"))
            )
    except (ConnectionResetError, asyncio.CancelledError):
        watcher.close()
        raise
    finally:
        watcher.close()
    try:
        await response.write_eof()
    except ConnectionResetError:
        pass
    return response


async def _write_frames(
    response: web.StreamResponse, frames: list[bytes], encode: tables.WatchTableEncoder | None = None
) -> None:
    batch: list[bytes] = []
    size = 0
    for frame in frames:
        if encode is not None:
            frame = encode(frame)
        batch.append(frame)
        size += len(frame)
        if size >= _WRITE_BATCH_BYTES:
            await response.write(b"".join(batch))
            batch, size = [], 0
    if batch:
        await response.write(b"".join(batch))


__all__ = ["ADDED", "serve_watch"]
