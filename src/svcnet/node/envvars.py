"""A container's environment as kubelet builds it (kubelet_pods.go makeEnvironmentVariables):
service links of the pod's namespace (plus the master `kubernetes` service), then the
container's env with $(VAR) references expanded and downward-API fieldRefs resolved."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from svcnet.node.podfiles import pod_hostname

Obj = dict[str, Any]


def _env_name(service_name: str) -> str:
    return service_name.upper().replace("-", "_")


def service_env(services: Iterable[Obj], namespace: str, enable_links: bool = True) -> dict[str, str]:
    """FOO_SERVICE_HOST/PORT(_NAME) and the docker-link FOO_PORT_* for each ClusterIP Service.

    Only services with a ClusterIP count; `default/kubernetes` is always included, other
    namespaces' services never; with enableServiceLinks false only the master service."""
    env: dict[str, str] = {}
    chosen: list[Obj] = []
    for svc in services:
        meta = svc.get("metadata") or {}
        spec = svc.get("spec") or {}
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            continue
        master = meta.get("namespace") == "default" and meta.get("name") == "kubernetes"
        if master or (enable_links and meta.get("namespace") == namespace):
            chosen.append(svc)
    for svc in sorted(chosen, key=lambda s: s["metadata"]["name"]):
        name = _env_name(svc["metadata"]["name"])
        spec = svc["spec"]
        ip = spec["clusterIP"]
        ports = spec.get("ports") or []
        env[f"{name}_SERVICE_HOST"] = ip
        if ports:
            env[f"{name}_SERVICE_PORT"] = str(ports[0].get("port"))
        for p in ports:
            if p.get("name"):
                env[f"{name}_SERVICE_PORT_{_env_name(p['name'])}"] = str(p.get("port"))
        if ports:
            first = ports[0]
            proto = (first.get("protocol") or "TCP").lower()
            env[f"{name}_PORT"] = f"{proto}://{ip}:{first.get('port')}"
        for p in ports:
            proto = p.get("protocol") or "TCP"
            prefix = f"{name}_PORT_{p.get('port')}_{proto.upper()}"
            env[prefix] = f"{proto.lower()}://{ip}:{p.get('port')}"
            env[f"{prefix}_PROTO"] = proto.lower()
            env[f"{prefix}_PORT"] = str(p.get("port"))
            env[f"{prefix}_ADDR"] = ip
    return env


_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names replaced, unknown left as written, $$ -> $."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _REF.sub(sub, text)


def field_ref(pod: Obj, path: str, host_ip: str, pod_ips: list[str]) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
        "status.podIP": pod_ips[0] if pod_ips else "",
        "status.podIPs": ",".join(pod_ips),
    }
    if path in simple:
        return str(simple[path] or "")
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    return ""


def container_env(
    pod: Obj, container: Obj, services: Iterable[Obj], host_ip: str, pod_ips: list[str], node_name: str
) -> dict[str, str]:
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    env = service_env(services, meta.get("namespace") or "default", spec.get("enableServiceLinks", True))
    # svcnet's own additions, which the built-in echo server and users' scripts rely on.
    env["POD_NAME"] = meta.get("name") or ""
    env["POD_NAMESPACE"] = meta.get("namespace") or ""
    env["POD_IP"] = pod_ips[0] if pod_ips else ""
    env["NODE_NAME"] = node_name
    env["HOSTNAME"] = pod_hostname(pod)[0]  # the name the pod's UTS namespace gets
    for item in container.get("env") or []:
        name = item.get("name")
        if not name:
            continue
        if "value" in item or not item.get("valueFrom"):
            env[name] = expand(str(item.get("value") or ""), env)
            continue
        ref = (item.get("valueFrom") or {}).get("fieldRef")
        if ref:
            env[name] = field_ref(pod, ref.get("fieldPath", ""), host_ip, pod_ips)
    return env
