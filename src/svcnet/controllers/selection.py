"""Which Pods a Service selects and which Services select a Pod, through label indexes on the
shared informer caches, so an event costs O(matches) and not O(objects in the namespace)
(a linear scan made a readiness flip cost ~20 ms at 1,000 Services)."""

from __future__ import annotations

from typing import Any

from svcnet.client.source import ObjectSource

Obj = dict[str, Any]

POD_LABELS = "svcnet.labels"  # pods filed under "<ns>/<key>=<value>" for each label
SERVICE_SELECTOR = "svcnet.selector"  # services filed under "<ns>/<key>=<value>" for each selector term


def selects(selector: dict[str, str] | None, labels: dict[str, str] | None) -> bool:
    if not selector:
        return False
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def service_selector(service: Obj) -> dict[str, str] | None:
    """A Service's selector, None when it has none (an empty map decodes to none upstream)
    and for ExternalName Services."""
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return None
    return spec.get("selector") or None


def _pairs(namespace: str | None, labels: dict[str, str] | None) -> list[str]:
    return [f"{namespace}/{k}={v}" for k, v in (labels or {}).items()]


def _pod_index(pod: Obj) -> list[str]:
    md = pod.get("metadata") or {}
    return _pairs(md.get("namespace"), md.get("labels"))


def _service_index(service: Obj) -> list[str]:
    return _pairs((service.get("metadata") or {}).get("namespace"), service_selector(service))


class Selection:
    def __init__(self, source: ObjectSource) -> None:
        source.add_indexer("pods", POD_LABELS, _pod_index)
        source.add_indexer("services", SERVICE_SELECTOR, _service_index)
        self.pods = source.store("pods")
        self.services = source.store("services")

    def pods_of(self, service: Obj) -> list[Obj]:
        selector = service_selector(service)
        if not selector:
            return []
        namespace = (service.get("metadata") or {}).get("namespace")
        # Scan the smallest candidate set among the selector's terms.
        candidates = min(
            (self.pods.by_index(POD_LABELS, f"{namespace}/{k}={v}") for k, v in selector.items()), key=len
        )
        return [p for p in candidates if selects(selector, (p.get("metadata") or {}).get("labels"))]

    def services_for(self, *pods: Obj) -> list[Obj]:
        """Services whose selector matches any of ``pods`` (the old and new versions of one)."""
        found: dict[str, Obj] = {}
        for pod in pods:
            labels = (pod.get("metadata") or {}).get("labels")
            for value in _pod_index(pod):
                for svc in self.services.by_index(SERVICE_SELECTOR, value):
                    md = svc.get("metadata") or {}
                    key = f"{md.get('namespace')}/{md.get('name')}"
                    if key not in found and selects(service_selector(svc), labels):
                        found[key] = svc
        return list(found.values())
