"""Resource request paths, parsed as kube-apiserver's RequestInfoFactory parses them.

/api/v1/... and /apis/GROUP/VERSION/..., followed by one of:
  PLURAL[/NAME[/SUB]]                          cluster-scoped, or all namespaces for a list
  namespaces/NS/PLURAL[/NAME[/SUB]]            namespaced
  watch/...                                    the legacy watch prefix before either form
"""

from __future__ import annotations

from dataclasses import dataclass

from svcnet.api import resources
from svcnet.api.errors import StatusError
from svcnet.api.resources import Resource

NOT_FOUND_MESSAGE = "the server could not find the requested resource"


def not_found_status() -> StatusError:
    return StatusError(404, "NotFound", NOT_FOUND_MESSAGE, {})


@dataclass
class RequestTarget:
    resource: Resource
    namespace: str | None  # None: cluster-scoped or across all namespaces
    name: str | None
    subresource: str | None
    legacy_watch: bool


def parse(group: str, version: str, parts: list[str]) -> RequestTarget:
    """``parts`` are the path segments after the group/version. Raises 404 Status."""
    legacy_watch = bool(parts) and parts[0] == "watch"
    if legacy_watch:
        parts = parts[1:]
    namespace: str | None = None
    if len(parts) >= 3 and parts[0] == "namespaces":
        candidate = resources.by_path(group, version, parts[2])
        if candidate is not None and candidate.namespaced:
            namespace = parts[1]
            parts = parts[2:]
    if not parts or len(parts) > 3:
        raise not_found_status()
    resource = resources.by_path(group, version, parts[0])
    if resource is None:
        raise not_found_status()
    if resource.namespaced is False and namespace is not None:
        raise not_found_status()
    name = parts[1] if len(parts) >= 2 else None
    sub = parts[2] if len(parts) == 3 else None
    if name == "":
        raise not_found_status()
    if sub is not None and sub not in resource.subresources:
        raise not_found_status()
    if legacy_watch and sub is not None:
        raise not_found_status()
    return RequestTarget(resource, namespace, name, sub, legacy_watch)


def metric_resource(target: RequestTarget) -> str:
    return f"{target.resource.plural}/{target.subresource}" if target.subresource else target.resource.plural
