"""Validation with kube-apiserver's rules, field paths and messages, per apiVersion/kind.

``validate_create(obj)``, ``validate_update(new, old)`` and ``validate_status_update(new, old)``
return lists of ``FieldError``; an empty list means valid, anything else becomes a 422 Invalid
(``svcnet.api.errors.invalid``). They expect objects that were defaulted
(``svcnet.api.defaults.apply_defaults``) and prepared by the registry strategy
(``svcnet.api.strategy``), as upstream does: validation runs last.

Every kind's create validation includes ObjectMeta validation and every update includes
ObjectMetaUpdate; metadata.resourceVersion preconditions are left to the server.
Kinds this module does not know validate as valid (routing rejects unknown resources first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from svcnet.api.errors import FieldError, invalid_value
from svcnet.api.validation import apps, cluster, endpoints, pod, service
from svcnet.api.validation.meta import validate_object_meta_update

Validator = Callable[[Any], list[FieldError]]
UpdateValidator = Callable[[Any, Any], list[FieldError]]


def _meta_only_update(new: Any, old: Any) -> list[FieldError]:
    new_meta = new.get("metadata") if isinstance(new, dict) else None
    old_meta = old.get("metadata") if isinstance(old, dict) else None
    return validate_object_meta_update(new_meta, old_meta)


_CREATE: dict[tuple[str, str], Validator] = {
    ("v1", "Service"): service.validate_service,
    ("v1", "Pod"): pod.validate_pod_create,
    ("v1", "Endpoints"): endpoints.validate_endpoints,
    ("discovery.k8s.io/v1", "EndpointSlice"): endpoints.validate_endpoint_slice,
    ("v1", "Namespace"): cluster.validate_namespace,
    ("v1", "Node"): cluster.validate_node,
    ("v1", "Event"): cluster.validate_event,
    ("coordination.k8s.io/v1", "Lease"): cluster.validate_lease,
    ("apps/v1", "Deployment"): apps.validate_deployment,
    ("apps/v1", "StatefulSet"): apps.validate_statefulset,
}

_UPDATE: dict[tuple[str, str], UpdateValidator] = {
    ("v1", "Service"): service.validate_service_update,
    ("v1", "Pod"): pod.validate_pod_update,
    ("v1", "Endpoints"): endpoints.validate_endpoints_update,
    ("discovery.k8s.io/v1", "EndpointSlice"): endpoints.validate_endpoint_slice_update,
    ("v1", "Namespace"): cluster.validate_namespace_update,
    ("v1", "Node"): cluster.validate_node_update,
    ("v1", "Event"): cluster.validate_event_update,
    ("coordination.k8s.io/v1", "Lease"): cluster.validate_lease_update,
    ("apps/v1", "Deployment"): apps.validate_deployment_update,
    ("apps/v1", "StatefulSet"): apps.validate_statefulset_update,
}

_STATUS_UPDATE: dict[tuple[str, str], UpdateValidator] = {
    ("v1", "Service"): service.validate_service_status_update,
    ("v1", "Pod"): pod.validate_pod_status_update,
    ("v1", "Namespace"): cluster.validate_namespace_status_update,
    # The node status strategy validates the whole node, as its main update does.
    ("v1", "Node"): cluster.validate_node_update,
    ("apps/v1", "Deployment"): apps.validate_deployment_status_update,
    ("apps/v1", "StatefulSet"): apps.validate_statefulset_status_update,
}


def _kind_of(obj: Any) -> tuple[str, str]:
    if not isinstance(obj, dict):
        return ("", "")
    return (str(obj.get("apiVersion") or ""), str(obj.get("kind") or ""))


def _guarded(run: Callable[[], list[FieldError]]) -> list[FieldError]:
    """Validators read JSON defensively; should one still trip over an odd shape, the client
    gets a 422 naming the problem instead of the server failing."""
    try:
        return run()
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError) as exc:
        return [invalid_value("", "<object>", f"object could not be validated: {exc}")]


def validate_create(obj: Any) -> list[FieldError]:
    validator = _CREATE.get(_kind_of(obj))
    return _guarded(lambda: validator(obj)) if validator else []


def validate_update(new: Any, old: Any) -> list[FieldError]:
    validator = _UPDATE.get(_kind_of(new), _meta_only_update)
    return _guarded(lambda: validator(new, old))


def validate_status_update(new: Any, old: Any) -> list[FieldError]:
    validator = _STATUS_UPDATE.get(_kind_of(new), _meta_only_update)
    return _guarded(lambda: validator(new, old))


__all__ = ["validate_create", "validate_status_update", "validate_update"]
