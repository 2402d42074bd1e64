"""Bearer-token authentication: one admin token, made on first start.

Health endpoints and /version stay open without a token, as kube-apiserver's default RBAC
grants them to system:unauthenticated (the system:public-info-viewer role).
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from svcnet.api.errors import unauthorized
from svcnet.apiserver.codec import status_response

PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})
PUBLIC_PREFIXES = ("/healthz/", "/livez/", "/readyz/")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def ensure_admin_token(data_dir: Path) -> str:
    path = data_dir / "admin-token"
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def token_middleware(tokens: list[str]) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    expected = [t.encode() for t in tokens]

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() == "bearer" and presented:
            given = presented.strip().encode()
            # compare_digest against every token so timing does not reveal which one is close
            if any(hmac.compare_digest(given, t) for t in expected):
                return await handler(request)
        return status_response(unauthorized())

    return authenticate
