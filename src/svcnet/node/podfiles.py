"""The /etc/resolv.conf and /etc/hosts kubelet gives a pod (pkg/kubelet/network/dns/dns.go,
pkg/kubelet/kubelet_pods.go), as pure functions of the pod and the node's settings."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

MAX_NAMESERVERS = 3
MAX_SEARCH = 32  # ExpandedDNSConfig
MAX_SEARCH_CHARS = 2048
MAX_ENTRY_CHARS = 253


def _dedupe(items: list[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if item and item not in out:
            out.append(item)
    return out


def resolv_conf(
    pod: Obj, cluster_dns: list[str], cluster_domain: str = "cluster.local", host_resolv: str = ""
) -> str:
    spec = pod.get("spec") or {}
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_servers, host_search, host_options = _parse(host_resolv)
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        policy = "Default"
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet") and not cluster_dns:
        policy = "Default"  # kubelet: a MissingClusterDNS event, then the node's resolv.conf
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        servers = list(cluster_dns)
        search = [f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain, *host_search]
        options = ["ndots:5"]
    elif policy == "Default":
        servers, search, options = host_servers, host_search, host_options
    else:  # None
        servers, search, options = [], [], []
    cfg = spec.get("dnsConfig") or {}
    servers = _dedupe(servers + list(cfg.get("nameservers") or []))[:MAX_NAMESERVERS]
    search = [s for s in _dedupe(search + list(cfg.get("searches") or [])) if len(s) <= MAX_ENTRY_CHARS]
    search = search[:MAX_SEARCH]
    while search and len(" ".join(search)) > MAX_SEARCH_CHARS:
        search.pop()
    opts: dict[str, str | None] = {}
    for o in options:
        name, _, value = o.partition(":")
        opts[name] = value or None
    for o in cfg.get("options") or []:  # pod options override same-named ones
        opts[o.get("name", "")] = o.get("value")
    lines = [f"nameserver {s}" for s in servers]
    if search:
        lines.append("search " + " ".join(search))
    rendered = [f"{k}:{v}" if v else k for k, v in opts.items() if k]
    if rendered:
        lines.append("options " + " ".join(rendered))
    return "\n".join(lines) + "\n"


def _parse(text: str) -> tuple[list[str], list[str], list[str]]:
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        if parts[0] == "nameserver" and len(parts) > 1:
            servers.append(parts[1])
        elif parts[0] in ("search", "domain"):
            search = parts[1:]
        elif parts[0] == "options":
            options.extend(parts[1:])
    return servers, search, options


def pod_hostname(pod: Obj, cluster_domain: str = "cluster.local") -> tuple[str, str]:
    """(hostname, fqdn-or-empty) as kubelet's GeneratePodHostNameAndDomain computes them."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    hostname = (spec.get("hostname") or meta.get("name") or "")[:63].rstrip("-.")
    sub = spec.get("subdomain") or ""
    fqdn = f"{hostname}.{sub}.{meta.get('namespace') or 'default'}.svc.{cluster_domain}" if sub else ""
    return hostname, fqdn


def hosts_file(pod: Obj, pod_ips: list[str], cluster_domain: str = "cluster.local") -> str:
    hostname, fqdn = pod_hostname(pod, cluster_domain)
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
    ]
    for ip in pod_ips:
        lines.append(f"{ip}\t{fqdn}\t{hostname}" if fqdn else f"{ip}\t{hostname}")
    for alias in (pod.get("spec") or {}).get("hostAliases") or []:
        lines.append(
            f"# Entries added by HostAliases.\n{alias.get('ip')}\t" + "\t".join(alias.get("hostnames") or [])
        )
    return "\n".join(lines) + "\n"
