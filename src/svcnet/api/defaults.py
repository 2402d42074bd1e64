"""Defaulting as kube-apiserver applies it while decoding a request body.

``apply_defaults(obj)`` mutates a Kubernetes object (plain JSON dict) the way upstream's
``SetDefaults_*`` functions and the declarative ``+default`` markers of the v1 API do
(kubernetes/kubernetes pkg/apis/{core,apps,discovery}/v1/defaults.go). It runs on every
create and update body, before the registry strategy and validation, and on objects read
from files so that a file source sees what a server would have stored.

Defaulting never raises: a field of the wrong JSON type is left alone for validation or
strict decoding to report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from svcnet.api.validation.service import externally_accessible

DEFAULT_CLIENT_IP_AFFINITY_SECONDS = 10800
DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS = 30
DEFAULT_SCHEDULER_NAME = "default-scheduler"
TERMINATION_MESSAGE_PATH_DEFAULT = "/dev/termination-log"
# Octal 0644, the mode of secret, configMap, downwardAPI and projected volume files.
DEFAULT_VOLUME_MODE = 420
LABEL_METADATA_NAME = "kubernetes.io/metadata.name"


def _dict(parent: Any, key: str, create: bool = False) -> dict[str, Any] | None:
    """parent[key] when it is a dict; with create, an empty dict is put there if absent."""
    if not isinstance(parent, dict):
        return None
    value = parent.get(key)
    if value is None and create:
        value = parent[key] = {}
    return value if isinstance(value, dict) else None


def _dicts(parent: Any, key: str) -> list[dict[str, Any]]:
    """The dict items of the list parent[key] (non-dict items are skipped, not fixed)."""
    if not isinstance(parent, dict):
        return []
    value = parent.get(key)
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def _default(d: dict[str, Any], key: str, value: Any) -> None:
    """Set d[key] when it is missing, null or the empty string (Go's zero value for strings)."""
    if d.get(key) in (None, ""):
        d[key] = value


def _default_zero(d: dict[str, Any], key: str, value: int) -> None:
    """Set an int field whose Go zero value (0 or absent) means "use the default"."""
    if d.get(key) in (None, 0):
        d[key] = value


# --------------------------------------------------------------------------------------------
# Service


def _defaults_service(svc: dict[str, Any]) -> None:
    spec = _dict(svc, "spec", create=True)
    if spec is None:
        return
    _default(spec, "sessionAffinity", "None")
    if spec.get("sessionAffinity") == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec.get("sessionAffinity") == "ClientIP":
        config = spec.get("sessionAffinityConfig")
        client_ip = config.get("clientIP") if isinstance(config, dict) else None
        if not isinstance(client_ip, dict) or client_ip.get("timeoutSeconds") is None:
            # Upstream replaces the whole config when any level is missing.
            spec["sessionAffinityConfig"] = {
                "clientIP": {"timeoutSeconds": DEFAULT_CLIENT_IP_AFFINITY_SECONDS}
            }
    _default(spec, "type", "ClusterIP")
    for port in _dicts(spec, "ports"):
        _default(port, "protocol", "TCP")
        if port.get("targetPort") in (None, 0, ""):
            port_number = port.get("port")
            if isinstance(port_number, int) and not isinstance(port_number, bool):
                port["targetPort"] = port_number
            else:
                port["targetPort"] = 0
    if externally_accessible(svc):
        _default(spec, "externalTrafficPolicy", "Cluster")
    if spec.get("internalTrafficPolicy") is None and spec.get("type") in (
        "ClusterIP",
        "NodePort",
        "LoadBalancer",
    ):
        spec["internalTrafficPolicy"] = "Cluster"
    if spec.get("type") == "LoadBalancer":
        if spec.get("allocateLoadBalancerNodePorts") is None:
            spec["allocateLoadBalancerNodePorts"] = True
        load_balancer = _dict(_dict(svc, "status"), "loadBalancer")
        for ingress in _dicts(load_balancer, "ingress"):
            if ingress.get("ip") and ingress.get("ipMode") is None:
                ingress["ipMode"] = "VIP"


# --------------------------------------------------------------------------------------------
# Pod and pod templates


def image_tag(image: str) -> str:
    """The tag a container runtime would pull: "latest" when there is neither tag nor digest.

    Mirrors pkg/util/parsers.ParseImageName closely enough for the pull-policy default: a
    digest without a tag gives "", and an unparsable reference gives "" too.
    """
    if not image or image != image.strip() or any(c.isspace() for c in image):
        return ""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return "" if digest else "latest"


def _defaults_handler(handler: Any) -> None:
    http_get = _dict(handler, "httpGet")
    if http_get is not None:
        _default(http_get, "path", "/")
        _default(http_get, "scheme", "HTTP")


def _defaults_probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    _default_zero(probe, "timeoutSeconds", 1)
    _default_zero(probe, "periodSeconds", 10)
    _default_zero(probe, "successThreshold", 1)
    _default_zero(probe, "failureThreshold", 3)
    _defaults_handler(probe)


def _defaults_env(container: dict[str, Any]) -> None:
    for env in _dicts(container, "env"):
        field_ref = _dict(_dict(env, "valueFrom"), "fieldRef")
        if field_ref is not None:
            _default(field_ref, "apiVersion", "v1")


def _defaults_container(container: dict[str, Any]) -> None:
    if container.get("imagePullPolicy") in (None, ""):
        image = container.get("image")
        tag = image_tag(image) if isinstance(image, str) else ""
        container["imagePullPolicy"] = "Always" if tag == "latest" else "IfNotPresent"
    _default(container, "terminationMessagePath", TERMINATION_MESSAGE_PATH_DEFAULT)
    _default(container, "terminationMessagePolicy", "File")
    # Not a default upstream but the same effect: Go encodes the non-pointer
    # ResourceRequirements struct as {} even when empty, so every container shows it.
    _default(container, "resources", {})
    for port in _dicts(container, "ports"):
        _default(port, "protocol", "TCP")
    for probe_key in ("livenessProbe", "readinessProbe", "startupProbe"):
        _defaults_probe(container.get(probe_key))
    lifecycle = _dict(container, "lifecycle")
    for hook in ("postStart", "preStop"):
        _defaults_handler(_dict(lifecycle, hook))
    _defaults_env(container)


_VOLUME_SOURCES_WITH_MODE = ("secret", "configMap", "downwardAPI", "projected")
_VOLUME_SOURCE_KEYS = (
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
)


def _defaults_volume(volume: dict[str, Any]) -> None:
    if not any(volume.get(key) is not None for key in _VOLUME_SOURCE_KEYS):
        volume["emptyDir"] = {}
    for key in _VOLUME_SOURCES_WITH_MODE:
        source = _dict(volume, key)
        if source is not None and source.get("defaultMode") is None:
            source["defaultMode"] = DEFAULT_VOLUME_MODE
    host_path = _dict(volume, "hostPath")
    if host_path is not None and host_path.get("type") is None:
        host_path["type"] = ""
    for source in _dicts(_dict(volume, "projected"), "sources"):
        token = _dict(source, "serviceAccountToken")
        if token is not None and token.get("expirationSeconds") is None:
            token["expirationSeconds"] = 3600


def _defaults_pod_spec(spec: dict[str, Any]) -> None:
    """SetDefaults_PodSpec plus the container, volume and probe defaults inside it."""
    _default(spec, "dnsPolicy", "ClusterFirst")
    _default(spec, "restartPolicy", "Always")
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS
    _default(spec, "schedulerName", DEFAULT_SCHEDULER_NAME)
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in _dicts(spec, key):
            _defaults_container(container)
    for volume in _dicts(spec, "volumes"):
        _defaults_volume(volume)


def _defaults_pod(pod: dict[str, Any]) -> None:
    spec = _dict(pod, "spec", create=True)
    if spec is None:
        return
    # SetDefaults_Pod: requests default to limits, only on Pods (not on templates).
    for key in ("containers", "initContainers"):
        for container in _dicts(spec, key):
            resources = _dict(container, "resources")
            limits = _dict(resources, "limits")
            if resources is None or limits is None:
                continue
            requests = resources.get("requests")
            if requests is None:
                requests = resources["requests"] = {}
            if isinstance(requests, dict):
                for name, quantity in limits.items():
                    requests.setdefault(name, quantity)
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True
    if spec.get("hostNetwork") is True:
        for key in ("containers", "initContainers"):
            for container in _dicts(spec, key):
                for port in _dicts(container, "ports"):
                    if port.get("hostPort") in (None, 0):
                        port["hostPort"] = port.get("containerPort")
    _defaults_pod_spec(spec)


def _defaults_pod_template(template: Any) -> None:
    spec = _dict(template, "spec")
    if spec is not None:
        _defaults_pod_spec(spec)


# --------------------------------------------------------------------------------------------
# Other kinds


def _defaults_endpoints(endpoints: dict[str, Any]) -> None:
    for subset in _dicts(endpoints, "subsets"):
        for port in _dicts(subset, "ports"):
            _default(port, "protocol", "TCP")


def _defaults_endpoint_slice(slice_: dict[str, Any]) -> None:
    for port in _dicts(slice_, "ports"):
        if port.get("name") is None:
            port["name"] = ""
        if port.get("protocol") is None:
            port["protocol"] = "TCP"


def _defaults_namespace(namespace: dict[str, Any]) -> None:
    metadata = _dict(namespace, "metadata")
    name = metadata.get("name") if metadata is not None else None
    if isinstance(name, str) and name:
        labels = _dict(metadata, "labels", create=True)
        if labels is not None:
            labels[LABEL_METADATA_NAME] = name
    status = _dict(namespace, "status", create=True)
    if status is not None:
        _default(status, "phase", "Active")


def _defaults_node(node: dict[str, Any]) -> None:
    status = _dict(node, "status")
    if status is not None and status.get("allocatable") is None and isinstance(status.get("capacity"), dict):
        status["allocatable"] = dict(status["capacity"])


def _defaults_deployment(deployment: dict[str, Any]) -> None:
    spec = _dict(deployment, "spec", create=True)
    if spec is None:
        return
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    strategy = _dict(spec, "strategy", create=True)
    if strategy is not None:
        _default(strategy, "type", "RollingUpdate")
        if strategy.get("type") == "RollingUpdate":
            rolling = _dict(strategy, "rollingUpdate", create=True)
            if rolling is not None:
                if rolling.get("maxUnavailable") is None:
                    rolling["maxUnavailable"] = "25%"
                if rolling.get("maxSurge") is None:
                    rolling["maxSurge"] = "25%"
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600
    _defaults_pod_template(spec.get("template"))


def _defaults_statefulset(statefulset: dict[str, Any]) -> None:
    spec = _dict(statefulset, "spec", create=True)
    if spec is None:
        return
    _default(spec, "podManagementPolicy", "OrderedReady")
    update = _dict(spec, "updateStrategy", create=True)
    if update is not None:
        if update.get("type") in (None, ""):
            update["type"] = "RollingUpdate"
            if update.get("rollingUpdate") is None:
                update["rollingUpdate"] = {}
        rolling = _dict(update, "rollingUpdate")
        if update.get("type") == "RollingUpdate" and rolling is not None and rolling.get("partition") is None:
            rolling["partition"] = 0
    retention = _dict(spec, "persistentVolumeClaimRetentionPolicy", create=True)
    if retention is not None:
        _default(retention, "whenDeleted", "Retain")
        _default(retention, "whenScaled", "Retain")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    _defaults_pod_template(spec.get("template"))
    for claim in _dicts(spec, "volumeClaimTemplates"):
        claim_spec = _dict(claim, "spec")
        if claim_spec is not None and claim_spec.get("volumeMode") is None:
            claim_spec["volumeMode"] = "Filesystem"
        claim_status = _dict(claim, "status", create=True)
        if claim_status is not None:
            _default(claim_status, "phase", "Pending")


_DEFAULTERS: dict[tuple[str, str], Callable[[dict[str, Any]], None]] = {
    ("v1", "Service"): _defaults_service,
    ("v1", "Pod"): _defaults_pod,
    ("v1", "Endpoints"): _defaults_endpoints,
    ("v1", "Namespace"): _defaults_namespace,
    ("v1", "Node"): _defaults_node,
    ("discovery.k8s.io/v1", "EndpointSlice"): _defaults_endpoint_slice,
    ("apps/v1", "Deployment"): _defaults_deployment,
    ("apps/v1", "StatefulSet"): _defaults_statefulset,
    # v1 Event and coordination.k8s.io/v1 Lease have no defaults upstream.
}


def apply_defaults(obj: dict[str, Any]) -> None:
    """Fill in upstream's defaults for the object's apiVersion/kind, in place."""
    if not isinstance(obj, dict):
        return
    defaulter = _DEFAULTERS.get((obj.get("apiVersion"), obj.get("kind")))  # type: ignore[arg-type]
    if defaulter is not None:
        defaulter(obj)
