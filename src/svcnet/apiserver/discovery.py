"""Legacy discovery documents (/api, /api/v1, /apis, /apis/G, /apis/G/V) and /version,
built from the RESOURCES table. The Python client's DynamicClient and kubectl's RESTMapper
read these."""

from __future__ import annotations

import platform
from typing import Any

from svcnet.api import resources
from svcnet.api.resources import Resource
from svcnet.apiserver.options import ApiServerOptions

SUBRESOURCE_VERBS = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "finalize": ["update"],
    "binding": ["create"],
}


def _resource_entries(resource: Resource) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": resource.plural,
        "singularName": resource.singular,
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": sorted(resource.verbs),
    }
    if resource.short_names:
        main["shortNames"] = list(resource.short_names)
    if resource.categories:
        main["categories"] = list(resource.categories)
    entries = [main]
    for sub in resource.subresources:
        entry: dict[str, Any] = {
            "name": f"{resource.plural}/{sub}",
            "singularName": "",
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": SUBRESOURCE_VERBS.get(sub, ["get"]),
        }
        if sub == "scale":
            entry.update({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        entries.append(entry)
    return entries


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    members = [r for r in resources.RESOURCES if r.group == group and r.version == version]
    if not members:
        return None
    group_version = f"{group}/{version}" if group else version
    items: list[dict[str, Any]] = []
    for r in members:
        items.extend(_resource_entries(r))
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": items}


def api_versions() -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_group_list() -> dict[str, Any]:
    groups = [_group(name, versions) for name, versions in resources.groups().items() if name]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(name: str) -> dict[str, Any] | None:
    versions = resources.groups().get(name)
    if not name or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def version_info(options: ApiServerOptions) -> dict[str, Any]:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    return {
        "major": options.version_major,
        "minor": options.version_minor,
        "gitVersion": options.git_version,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": f"python{platform.python_version()}",
        "compiler": "cpython",
        "platform": f"linux/{arch}",
    }


# ---- aggregated discovery (apidiscovery.k8s.io/v2) -----------------------------------------
#
# kubectl asks for this first; it saves the per-group-version round trips of the legacy form.
# client-go decides by the reply's Content-Type, and uses the aggregated answer only when both
# /api and /apis are aggregated.

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def wants_aggregated(accept: str) -> bool:
    for clause in accept.split(","):
        parts = [p.strip() for p in clause.split(";")]
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        if parts[0] != "application/json":
            continue
        if params.get("as") == "APIGroupDiscoveryList" and params.get("g") == "apidiscovery.k8s.io":
            if params.get("v") == "v2":
                return True
            continue
        if "as" not in params:
            return False  # plain JSON preferred before any aggregated clause
    return False


def _aggregated_resource(resource: Resource) -> dict[str, Any]:
    kind = {"group": resource.group, "version": resource.version, "kind": resource.kind}
    entry: dict[str, Any] = {
        "resource": resource.plural,
        "responseKind": kind,
        "scope": "Namespaced" if resource.namespaced else "Cluster",
        "singularResource": resource.singular,
        "verbs": sorted(resource.verbs),
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    subs = []
    for sub in resource.subresources:
        response = {"group": "autoscaling", "version": "v1", "kind": "Scale"} if sub == "scale" else kind
        subs.append(
            {"subresource": sub, "responseKind": response, "verbs": SUBRESOURCE_VERBS.get(sub, ["get"])}
        )
    if subs:
        entry["subresources"] = subs
    return entry


def aggregated(core: bool) -> dict[str, Any]:
    """The APIGroupDiscoveryList of /api (core=True) or /apis."""
    items = []
    for name, versions in resources.groups().items():
        if bool(name) == core:
            continue
        entries = []
        for version in versions:
            members = [r for r in resources.RESOURCES if r.group == name and r.version == version]
            entries.append(
                {
                    "version": version,
                    "resources": [_aggregated_resource(r) for r in members],
                    "freshness": "Current",
                }
            )
        items.append({"metadata": {"name": name, "creationTimestamp": None}, "versions": entries})
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    }
