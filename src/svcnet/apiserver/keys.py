"""Typed keys for values the API server keeps on requests and on the application: the REST
handlers tag each request with its verb and resource for the metrics middleware."""

from __future__ import annotations

import asyncio

from aiohttp import web

VERB = web.RequestKey("svcnet.verb", str)
RESOURCE = web.RequestKey("svcnet.resource", str)
SERVER_READY = web.AppKey("svcnet.server_ready", asyncio.Event)
