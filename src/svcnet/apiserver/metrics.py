"""Prometheus metrics with kube-apiserver's names.

apiserver_request_total and apiserver_request_duration_seconds carry verb, resource and code
(and, as upstream, the duration histogram has no code label). The REST handlers tag each
request with keys.VERB and keys.RESOURCE; anything else (health,
discovery, OpenAPI) is counted under its path class so no series is unbounded.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from svcnet.apiserver import keys

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# kube-apiserver's request duration buckets (k8s.io/apiserver/pkg/endpoints/metrics).
DURATION_BUCKETS = (
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30,
    45, 60,
)


class ApiServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "apiserver_request_total",
            "Counter of apiserver requests broken out for each verb, resource and HTTP response code.",
            ["verb", "resource", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb and resource.",
            ["verb", "resource"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )

    def middleware(self) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
        @web.middleware
        async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = time.perf_counter()
            code = 500
            try:
                response = await handler(request)
                code = response.status
                return response
            except web.HTTPException as exc:
                code = exc.status
                raise
            finally:
                verb = request.get(keys.VERB) or _fallback_verb(request)
                resource = request.get(keys.RESOURCE) or ""
                self.requests.labels(verb, resource, str(code)).inc()
                # Watches are long-lived by design; upstream leaves them out of the latency
                # histogram as well, so a watch does not drown the real request latencies.
                if verb != "watch":
                    self.duration.labels(verb, resource).observe(time.perf_counter() - started)

        return measure

    async def handle(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _fallback_verb(request: web.Request) -> str:
    # Non-resource requests (discovery, health) are labelled by method as upstream does.
    return request.method.upper()
