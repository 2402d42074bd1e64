"""Settings of the REST application (apiserver/app.py), with kube-apiserver's defaults."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass
class ApiServerOptions:
    # kube-apiserver caps JSON/YAML/patch request bodies at 3 MiB (--max-request-bytes default).
    max_body_bytes: int = 3 * MIB
    # Events kept per resource in the watch cache; a watch from an older resourceVersion gets
    # 410 Expired. Upstream sizes its cache dynamically (100..100k); a fixed window is simpler.
    watch_cache_size: int = 10_000
    # How often a watch with allowWatchBookmarks=true gets a BOOKMARK (upstream: about 1/min).
    bookmark_interval_seconds: float = 60.0
    # Watches without timeoutSeconds end after a random time in [min, 2*min] (upstream 1800 s).
    min_request_timeout_seconds: float = 1800.0
    # How long a read "not older than" a resourceVersion waits for the watch cache to catch up
    # before answering 504 "Too large resource version" (upstream waits 3 s).
    wait_for_revision_seconds: float = 3.0
    # A watcher whose queue holds this many undelivered events is too slow and is closed.
    watcher_queue_limit: int = 50_000
    # How often the namespace finalizer re-checks a terminating namespace that still has
    # content waiting on finalizers or graceful deletion.
    namespace_retry_seconds: float = 0.5
    # Namespaces kube-apiserver creates at start.
    system_namespaces: tuple[str, ...] = ("default", "kube-system", "kube-public", "kube-node-lease")
    # ClusterIP and NodePort allocation (issue #4): kubeadm's service CIDR, upstream's port
    # range. At most one range per IP family, the primary family first.
    service_cluster_ip_ranges: tuple[str, ...] = ("10.96.0.0/12",)
    service_node_port_range: str = "30000-32767"
    # Deliberate difference, off by default: accept loopback addresses (127.0.0.0/8, ::1) in
    # Endpoints and EndpointSlices, which upstream refuses. `svcnet up` without root sets it,
    # because its pods are local processes on loopback addresses (docs/lab.md).
    allow_loopback_endpoints: bool = False
    # The repair loop's period (upstream's repairLoopInterval is 3 minutes); 0 runs it only at start.
    allocation_repair_interval_seconds: float = 180.0
    # /version: kubectl 1.32 warns when the server's minor version differs by more than one.
    version_major: str = "1"
    version_minor: str = "32"
    git_version: str = "v1.32.0-svcnet"
