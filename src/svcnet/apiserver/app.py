"""The REST application: ``build_app(store, options, middlewares)``.

The caller owns the store (started before, closed after); the app owns the watch cache and
the namespace lifecycle, started and stopped with the application."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from svcnet.api import errors
from svcnet.api.errors import StatusError
from svcnet.apiserver import routing
from svcnet.apiserver.allocator.kubernetes_service import record_service_event
from svcnet.apiserver.allocator.ranges import IPRange, PortRange
from svcnet.apiserver.allocator.repair import AllocationRepair
from svcnet.apiserver.allocator.service import ServiceAllocator
from svcnet.apiserver.codec import status_response
from svcnet.apiserver.handlers import ResourceHandlers, add_routes
from svcnet.apiserver.listing import Lister
from svcnet.apiserver.namespaces import NamespaceLifecycle
from svcnet.apiserver.options import ApiServerOptions
from svcnet.apiserver.registry import Registry
from svcnet.apiserver.watchcache import WatchCache
from svcnet.store.interface import CompactedError, Store, StoreError, UnavailableError

log = logging.getLogger("svcnet.apiserver")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

WATCH_CACHE_KEY = web.AppKey("svcnet.watch_cache", WatchCache)
REGISTRY_KEY = web.AppKey("svcnet.registry", Registry)
REPAIR_KEY = web.AppKey("svcnet.allocation_repair", AllocationRepair)
MAX_BODY_KEY = web.AppKey("svcnet.max_body", int)


@web.middleware
async def status_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as a ``kind: Status`` reply; nothing a client sends kills the server."""
    try:
        return await handler(request)
    except StatusError as exc:
        return status_response(exc)
    except web.HTTPException as exc:
        if exc.status == 404:
            return status_response(routing.not_found_status())
        if exc.status == 405:
            return status_response(
                errors.method_not_allowed("the server does not allow this method on the requested resource")
            )
        if exc.status == 413:
            return status_response(errors.request_entity_too_large(request.app[MAX_BODY_KEY]))
        if exc.status < 400:
            raise
        return status_response(StatusError(exc.status, exc.reason.replace(" ", ""), exc.reason))
    except asyncio.CancelledError:
        raise
    except UnavailableError as exc:
        return status_response(errors.service_unavailable(str(exc)))
    except CompactedError as exc:
        return status_response(errors.expired(str(exc)))
    except StoreError as exc:
        log.exception("store error on %s %s", request.method, request.path)
        return status_response(errors.internal_error(str(exc)))
    except ConnectionResetError:
        raise
    except Exception as exc:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return status_response(errors.internal_error(f"{type(exc).__name__}: {exc}"))


def build_app(store: Store, options: ApiServerOptions, middlewares: Sequence = ()) -> web.Application:
    app = web.Application(
        middlewares=[*middlewares, status_middleware],
        # Bodies are read and capped by the handlers (413 as a Status); this is only a backstop.
        client_max_size=options.max_body_bytes + 64 * 1024,
    )
    app[MAX_BODY_KEY] = options.max_body_bytes
    cache = WatchCache(store, options.watch_cache_size, options.watcher_queue_limit)
    registry = Registry(store, cache, options.wait_for_revision_seconds)
    registry.allow_loopback_endpoints = options.allow_loopback_endpoints
    lister = Lister(store, cache, options.wait_for_revision_seconds)
    lifecycle = NamespaceLifecycle(registry, options.namespace_retry_seconds)
    handlers = ResourceHandlers(options, cache, registry, lister)
    app[WATCH_CACHE_KEY] = cache
    app[REGISTRY_KEY] = registry
    allocator = ServiceAllocator(
        store,
        [IPRange.parse(cidr) for cidr in options.service_cluster_ip_ranges],
        PortRange.parse(options.service_node_port_range),
    )
    registry.service_allocator = allocator

    async def emit(svc: dict, reason: str, message: str, component: str) -> None:
        await record_service_event(registry, svc, reason, message, component)

    repair = AllocationRepair(store, allocator, options.allocation_repair_interval_seconds, emit)
    app[REPAIR_KEY] = repair

    async def on_startup(_: web.Application) -> None:
        await allocator.load()
        await cache.start()
        await lifecycle.bootstrap(options.system_namespaces)
        # Upstream runs the repair once before serving, then periodically.
        await repair.run_once()
        repair.start()

    async def on_shutdown(_: web.Application) -> None:
        # Open watches end now, so the server can stop without waiting for their timeouts.
        await repair.stop()
        await lifecycle.stop()
        await cache.stop()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    add_routes(app, handlers)
    return app
