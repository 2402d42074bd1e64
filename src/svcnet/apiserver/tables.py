"""Server-side Table output (``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``).

Columns and cell formatting follow kube-apiserver's printers
(kubernetes/kubernetes pkg/printers/internalversion/printers.go): the server always fills the
wide (priority 1) cells and kubectl hides them unless ``-o wide``. Ages are printed as
apimachinery's ``duration.HumanDuration``. Rows carry the object as ``includeObject`` asks:
``Metadata`` (the default, a PartialObjectMetadata), ``Object`` or ``None``.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from svcnet.api import errors, schema
from svcnet.api.resources import Resource

TABLE_GROUP = "meta.k8s.io"
# The scale subresource's kind, for `kubectl get --subresource=scale`.
SCALE = Resource("autoscaling", "v1", "Scale", "scale", "scale", True, "")
TABLE_VERSIONS = ("v1", "v1beta1")
INCLUDE_OBJECT = ("None", "Metadata", "Object")

Obj = Mapping[str, Any]
Cells = list[Any]


# ---- negotiation -----------------------------------------------------------------------------


def wants_table(accept: str) -> str | None:
    """The Table version the Accept header asks for first (kubectl lists v1, then v1beta1, then
    plain JSON as a fallback), or None when plain JSON is wanted."""
    for clause in accept.split(","):
        parts = [p.strip() for p in clause.split(";")]
        if parts[0] not in ("application/json", "*/*", "application/*"):
            continue
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        if params.get("as") == "Table" and params.get("g") == TABLE_GROUP:
            if params.get("v") in TABLE_VERSIONS:
                return params["v"]
            continue
        if "as" not in params:
            return None  # plain JSON is preferred over any later Table clause
    return None


def include_object(query: Mapping[str, str]) -> str:
    value = query.get("includeObject") or "Metadata"
    if value not in INCLUDE_OBJECT:
        raise errors.bad_request(f'invalid value for includeObject: "{value}"')  # TableOptions check
    return value


# ---- formatting helpers ----------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """apimachinery duration.HumanDuration."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 60 * 2:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        sec = whole % 60
        return f"{minutes}m" if sec == 0 else f"{minutes}m{sec}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        mins = minutes % 60
        return f"{hours}h" if mins == 0 else f"{hours}h{mins}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _parse_time(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def since(value: Any, now: datetime.datetime | None = None) -> str:
    """translateTimestampSince: ``<unknown>`` for an unset time."""
    moment = _parse_time(value)
    if moment is None:
        return "<unknown>"
    now = now or datetime.datetime.now(datetime.UTC)
    return human_duration((now - moment).total_seconds())


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def format_labels(labels: Any) -> str:
    """labels.FormatLabels: sorted k=v pairs, ``<none>`` when empty."""
    pairs = _d(labels)
    if not pairs:
        return "<none>"
    return ",".join(f"{k}={pairs[k]}" for k in sorted(pairs))


def selector_string(selector: Any) -> str:
    """metav1.LabelSelectorAsSelector(...).String(): requirements sorted by key."""
    sel = _d(selector)
    reqs: list[tuple[str, str]] = []
    for key, value in _d(sel.get("matchLabels")).items():
        reqs.append((key, f"{key}={value}"))
    for expr in _l(sel.get("matchExpressions")):
        expr = _d(expr)
        key, op = str(expr.get("key", "")), expr.get("operator")
        values = ",".join(sorted(str(v) for v in _l(expr.get("values"))))
        text = {
            "In": f"{key} in ({values})",
            "NotIn": f"{key} notin ({values})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }.get(str(op))
        if text is None:
            return "<invalid>"
        reqs.append((key, text))
    return ",".join(text for _, text in sorted(reqs, key=lambda r: r[0]))


def _join_host_port(ip: str, port: Any) -> str:
    try:
        is_v6 = isinstance(ipaddress.ip_address(ip), ipaddress.IPv6Address)
    except ValueError:
        is_v6 = ":" in ip
    return f"[{ip}]:{port}" if is_v6 else f"{ip}:{port}"


def _with_more(items: list[str], more: bool, count: int, limit: int, empty: str) -> str:
    text = ",".join(items)
    if more:
        return f"{text} + {count - limit} more..."
    return text or empty


# ---- column definitions -----------------------------------------------------------------------


@functools.cache
def _doc(api_version: str, kind: str, *path: str) -> str:
    """A field's description as the API documents it (the printers use SwaggerDoc)."""
    model = schema.model_class(api_version, kind)
    for i, field in enumerate(path):
        if model is None:
            return ""
        fields = schema._fields(model)
        if field not in fields:
            return ""
        attr, typ = fields[field]
        if i == len(path) - 1:
            info = getattr(model, "model_fields", {}).get(attr)
            return (getattr(info, "description", None) or "") if info is not None else ""
        while typ.kind in ("list", "map"):
            typ = typ.elem
        model = typ.model if typ.kind == "model" else None
    return ""


def _col(name: str, type_: str, description: str, priority: int = 0, fmt: str = "") -> dict[str, Any]:
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


def _name_col(priority: int = 0) -> dict[str, Any]:
    return _col("Name", "string", _doc("v1", "Service", "metadata", "name"), priority, "name")


def _age_col() -> dict[str, Any]:
    return _col("Age", "string", _doc("v1", "Service", "metadata", "creationTimestamp"))


CONTAINERS_DOC = "Names of each container in the template."
IMAGES_DOC = "Images referenced by each container in the template."
READINESS_GATES_DOC = (
    "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all "
    "its containers are ready AND all conditions specified in the readiness gates have status equal "
    'to "True" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates'
)


@functools.cache
def columns(kind: str) -> tuple[dict[str, Any], ...]:
    svc = ("v1", "Service", "spec")
    if kind == "Service":
        return (
            _name_col(),
            _col("Type", "string", _doc(*svc, "type")),
            _col("Cluster-IP", "string", _doc(*svc, "clusterIP")),
            _col("External-IP", "string", _doc(*svc, "externalIPs")),
            _col("Port(s)", "string", _doc(*svc, "ports")),
            _age_col(),
            _col("Selector", "string", _doc(*svc, "selector"), 1),
        )
    if kind == "Pod":
        return (
            _name_col(),
            _col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
            _col("Status", "string", "The aggregate status of the containers in this pod."),
            _col(
                "Restarts",
                "string",
                "The number of times the containers in this pod have been restarted and when the last "
                "container in this pod has restarted.",
            ),
            _age_col(),
            _col("IP", "string", _doc("v1", "Pod", "status", "podIP"), 1),
            _col("Node", "string", _doc("v1", "Pod", "spec", "nodeName"), 1),
            _col("Nominated Node", "string", _doc("v1", "Pod", "status", "nominatedNodeName"), 1),
            _col("Readiness Gates", "string", READINESS_GATES_DOC, 1),
        )
    if kind == "Endpoints":
        return (_name_col(), _col("Endpoints", "string", _doc("v1", "Endpoints", "subsets")), _age_col())
    if kind == "EndpointSlice":
        es = ("discovery.k8s.io/v1", "EndpointSlice")
        return (
            _name_col(),
            _col("AddressType", "string", _doc(*es, "addressType")),
            _col("Ports", "string", _doc(*es, "ports")),
            _col("Endpoints", "string", _doc(*es, "endpoints")),
            _age_col(),
        )
    if kind == "Node":
        info = ("v1", "Node", "status", "nodeInfo")
        addresses = _doc("v1", "Node", "status", "addresses")
        return (
            _name_col(),
            _col("Status", "string", "The status of the node"),
            _col("Roles", "string", "The roles of the node"),
            _age_col(),
            _col("Version", "string", _doc(*info, "kubeletVersion")),
            _col("Internal-IP", "string", addresses, 1),
            _col("External-IP", "string", addresses, 1),
            _col("OS-Image", "string", _doc(*info, "osImage"), 1),
            _col("Kernel-Version", "string", _doc(*info, "kernelVersion"), 1),
            _col("Container-Runtime", "string", _doc(*info, "containerRuntimeVersion"), 1),
        )
    if kind == "Namespace":
        return (_name_col(), _col("Status", "string", "The status of the namespace"), _age_col())
    if kind == "Event":
        ev = ("v1", "Event")
        return (
            _col("Last Seen", "string", _doc(*ev, "lastTimestamp")),
            _col("Type", "string", _doc(*ev, "type")),
            _col("Reason", "string", _doc(*ev, "reason")),
            _col("Object", "string", _doc(*ev, "involvedObject")),
            _col("Subobject", "string", _doc(*ev, "involvedObject", "fieldPath"), 1),
            _col("Source", "string", _doc(*ev, "source"), 1),
            _col("Message", "string", _doc(*ev, "message")),
            _col("First Seen", "string", _doc(*ev, "firstTimestamp"), 1),
            _col("Count", "string", _doc(*ev, "count"), 1),
            _name_col(1),
        )
    if kind == "Deployment":
        st = ("apps/v1", "Deployment", "status")
        return (
            _name_col(),
            _col("Ready", "string", "Number of the pod with ready state"),
            _col("Up-to-date", "string", _doc(*st, "updatedReplicas")),
            _col("Available", "string", _doc(*st, "availableReplicas")),
            _age_col(),
            _col("Containers", "string", CONTAINERS_DOC, 1),
            _col("Images", "string", IMAGES_DOC, 1),
            _col("Selector", "string", _doc("apps/v1", "Deployment", "spec", "selector"), 1),
        )
    if kind == "StatefulSet":
        return (
            _name_col(),
            _col("Ready", "string", "Number of the pod with ready state"),
            _age_col(),
            _col("Containers", "string", CONTAINERS_DOC, 1),
            _col("Images", "string", IMAGES_DOC, 1),
        )
    if kind == "Scale":
        return (
            _name_col(),
            _col("Desired", "integer", _doc("autoscaling/v1", "Scale", "spec", "replicas")),
            _col("Available", "integer", _doc("autoscaling/v1", "Scale", "status", "replicas")),
        )
    if kind == "Lease":
        return (
            _name_col(),
            _col("Holder", "string", _doc("coordination.k8s.io/v1", "Lease", "spec", "holderIdentity")),
            _age_col(),
        )
    # The default table handler upstream: name and age.
    return (_name_col(), _col("Created At", "date", _doc("v1", "Service", "metadata", "creationTimestamp")))


# ---- rows ------------------------------------------------------------------------------------


def _age(obj: Obj) -> str:
    return since(_d(obj.get("metadata")).get("creationTimestamp"))


def _name(obj: Obj) -> str:
    return str(_d(obj.get("metadata")).get("name", ""))


def service_external_ip(svc: Obj) -> str:
    spec, status = _d(svc.get("spec")), _d(svc.get("status"))
    external = [str(ip) for ip in _l(spec.get("externalIPs"))]
    kind = spec.get("type")
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if kind == "LoadBalancer":
        ingress = set()
        for entry in _l(_d(status.get("loadBalancer")).get("ingress")):
            entry = _d(entry)
            if entry.get("ip"):
                ingress.add(str(entry["ip"]))
            elif entry.get("hostname"):
                ingress.add(str(entry["hostname"]))
        lb = sorted(ingress)
        if external:
            return ",".join([*lb, *external])
        return ",".join(lb) if lb else "<pending>"
    if kind == "ExternalName":
        return str(spec.get("externalName", ""))
    return "<unknown>"


def service_ports(ports: Any) -> str:
    pieces = []
    for port in _l(ports):
        port = _d(port)
        node_port = _int(port.get("nodePort"))
        if node_port > 0:
            pieces.append(f"{port.get('port')}:{node_port}/{port.get('protocol', '')}")
        else:
            pieces.append(f"{port.get('port')}/{port.get('protocol', '')}")
    return ",".join(pieces)


def _service(svc: Obj) -> Cells:
    spec = _d(svc.get("spec"))
    cluster_ips = _l(spec.get("clusterIPs"))
    internal = str(cluster_ips[0]) if cluster_ips else "<none>"
    ports = service_ports(spec.get("ports")) or "<none>"
    return [
        _name(svc),
        str(spec.get("type", "")),
        internal,
        service_external_ip(svc),
        ports,
        _age(svc),
        format_labels(spec.get("selector")),
    ]


def _restartable_init(container: Any) -> bool:
    return _d(container).get("restartPolicy") == "Always"


def _pod(pod: Obj) -> tuple[Cells, list[dict[str, Any]]]:
    spec, status = _d(pod.get("spec")), _d(pod.get("status"))
    md = _d(pod.get("metadata"))
    containers = _l(spec.get("containers"))
    init_containers = {str(_d(c).get("name")): _d(c) for c in _l(spec.get("initContainers"))}
    total = len(containers) + sum(1 for c in init_containers.values() if _restartable_init(c))
    ready = 0
    restarts = 0
    restartable_restarts = 0
    last_restart: datetime.datetime | None = None
    last_restartable: datetime.datetime | None = None
    phase = str(status.get("phase", ""))
    reason = str(status.get("reason") or phase)
    for cond in _l(status.get("conditions")):
        cond = _d(cond)
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    row_conditions: list[dict[str, Any]] = []
    if phase == "Succeeded":
        row_conditions = [
            {
                "type": "Completed",
                "status": "True",
                "reason": "Succeeded",
                "message": "The pod has completed successfully.",
            }
        ]
    elif phase == "Failed":
        row_conditions = [
            {"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}
        ]

    def later(current: datetime.datetime | None, cs: dict[str, Any]) -> datetime.datetime | None:
        finished = _parse_time(_d(_d(cs.get("lastState")).get("terminated")).get("finishedAt"))
        if finished is not None and (current is None or current < finished):
            return finished
        return current

    initializing = False
    init_statuses = _l(status.get("initContainerStatuses"))
    for i, cs in enumerate(init_statuses):
        cs = _d(cs)
        restarts += _int(cs.get("restartCount"))
        last_restart = later(last_restart, cs)
        restartable = _restartable_init(init_containers.get(str(cs.get("name"))))
        if restartable:
            restartable_restarts += _int(cs.get("restartCount"))
            last_restartable = later(last_restartable, cs)
        state = _d(cs.get("state"))
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if isinstance(terminated, dict) and _int(terminated.get("exitCode")) == 0:
            continue
        if restartable and cs.get("started") is True:
            if cs.get("ready"):
                ready += 1
            continue
        if isinstance(terminated, dict):
            if not terminated.get("reason"):
                if _int(terminated.get("signal")):
                    reason = f"Init:Signal:{_int(terminated.get('signal'))}"
                else:
                    reason = f"Init:ExitCode:{_int(terminated.get('exitCode'))}"
            else:
                reason = f"Init:{terminated['reason']}"
        elif (
            isinstance(waiting, dict) and waiting.get("reason") and waiting.get("reason") != "PodInitializing"
        ):
            reason = f"Init:{waiting['reason']}"
        else:
            reason = f"Init:{i}/{len(init_containers)}"
        initializing = True
        break

    initialized = any(
        _d(c).get("type") == "Initialized" and _d(c).get("status") == "True"
        for c in _l(status.get("conditions"))
    )
    if not initializing or initialized:
        restarts = restartable_restarts
        last_restart = last_restartable
        has_running = False
        for cs in reversed(_l(status.get("containerStatuses"))):
            cs = _d(cs)
            restarts += _int(cs.get("restartCount"))
            last_restart = later(last_restart, cs)
            state = _d(cs.get("state"))
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if isinstance(waiting, dict) and waiting.get("reason"):
                reason = str(waiting["reason"])
            elif isinstance(terminated, dict) and terminated.get("reason"):
                reason = str(terminated["reason"])
            elif isinstance(terminated, dict):
                if _int(terminated.get("signal")):
                    reason = f"Signal:{_int(terminated.get('signal'))}"
                else:
                    reason = f"ExitCode:{_int(terminated.get('exitCode'))}"
            elif cs.get("ready") and isinstance(state.get("running"), dict):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(
                _d(c).get("type") == "Ready" and _d(c).get("status") == "True"
                for c in _l(status.get("conditions"))
            )
            reason = "Running" if pod_ready else "NotReady"

    if md.get("deletionTimestamp") and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif md.get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({since(last_restart.isoformat())} ago)"

    pod_ips = _l(status.get("podIPs"))
    pod_ip = str(_d(pod_ips[0]).get("ip") or "") if pod_ips else ""
    gates = "<none>"
    readiness_gates = _l(spec.get("readinessGates"))
    if readiness_gates:
        true_count = 0
        for gate in readiness_gates:
            wanted = _d(gate).get("conditionType")
            for cond in _l(status.get("conditions")):
                if _d(cond).get("type") == wanted:
                    if _d(cond).get("status") == "True":
                        true_count += 1
                    break
        gates = f"{true_count}/{len(readiness_gates)}"
    cells = [
        _name(pod),
        f"{ready}/{total}",
        reason,
        restarts_text,
        _age(pod),
        pod_ip or "<none>",
        str(spec.get("nodeName") or "<none>"),
        str(status.get("nominatedNodeName") or "<none>"),
        gates,
    ]
    return cells, row_conditions


def format_endpoints(ep: Obj) -> str:
    subsets = _l(ep.get("subsets"))
    if not subsets:
        return "<none>"
    limit, items, more, count = 3, [], False, 0
    for ss in subsets:
        ss = _d(ss)
        addresses = [str(_d(a).get("ip", "")) for a in _l(ss.get("addresses"))]
        ports = _l(ss.get("ports"))
        if not ports:
            count += len(addresses)
            for ip in addresses:
                if len(items) == limit:
                    more = True
                    break
                items.append(ip)
            continue
        for port in ports:
            count += len(addresses)
            for ip in addresses:
                if len(items) == limit:
                    more = True
                    break
                items.append(_join_host_port(ip, _d(port).get("port")))
    text = ",".join(items)
    return f"{text} + {count - limit} more..." if more else text


def _endpoint_slice(es: Obj) -> Cells:
    limit = 3
    ports, more, count = [], False, 0
    for port in _l(es.get("ports")):
        port = _d(port)
        if len(ports) < limit:
            if port.get("port") is not None:
                ports.append(str(port["port"]))
            elif port.get("name") is not None:
                ports.append(str(port["name"]))
            else:
                ports.append("*")
        elif len(ports) == limit:
            more = True
        count += 1
    port_text = _with_more(ports, more, count, limit, "<unset>")
    addrs, amore, acount = [], False, 0
    for endpoint in _l(es.get("endpoints")):
        for address in _l(_d(endpoint).get("addresses")):
            if len(addrs) < limit:
                addrs.append(str(address))
            elif len(addrs) == limit:
                amore = True
            acount += 1
    addr_text = _with_more(addrs, amore, acount, limit, "<unset>")
    return [_name(es), str(es.get("addressType", "")), port_text, addr_text, _age(es)]


def _node_address(node: Obj, kind: str) -> str:
    for address in _l(_d(node.get("status")).get("addresses")):
        if _d(address).get("type") == kind:
            return str(_d(address).get("address", ""))
    return "<none>"


def _node(node: Obj) -> Cells:
    status, spec = _d(node.get("status")), _d(node.get("spec"))
    states = []
    for cond in _l(status.get("conditions")):
        cond = _d(cond)
        if cond.get("type") == "Ready":
            states = ["Ready" if cond.get("status") == "True" else "NotReady"]
    if not states:
        states = ["Unknown"]
    if spec.get("unschedulable") is True:
        states.append("SchedulingDisabled")
    roles = set()
    for key, value in _d(_d(node.get("metadata")).get("labels")).items():
        if key.startswith("node-role.kubernetes.io/") and key[len("node-role.kubernetes.io/") :]:
            roles.add(key[len("node-role.kubernetes.io/") :])
        elif key == "kubernetes.io/role" and value:
            roles.add(str(value))
    info = _d(status.get("nodeInfo"))
    return [
        _name(node),
        ",".join(states),
        ",".join(sorted(roles)) or "<none>",
        _age(node),
        str(info.get("kubeletVersion", "")),
        _node_address(node, "InternalIP"),
        _node_address(node, "ExternalIP"),
        str(info.get("osImage") or "<unknown>"),
        str(info.get("kernelVersion") or "<unknown>"),
        str(info.get("containerRuntimeVersion") or "<unknown>"),
    ]


def _event(ev: Obj) -> Cells:
    first = since(ev.get("firstTimestamp"))
    if not ev.get("firstTimestamp"):
        first = since(ev.get("eventTime"))
    last = since(ev.get("lastTimestamp")) if ev.get("lastTimestamp") else first
    count = _int(ev.get("count"))
    series = ev.get("series")
    if isinstance(series, dict):
        last = since(series.get("lastObservedTime"))
        count = _int(series.get("count"))
    elif count == 0:
        count = 1
    involved = _d(ev.get("involvedObject"))
    kind = str(involved.get("kind", "")).lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = _d(ev.get("source"))
    component = source.get("component") or ev.get("reportingComponent") or ""
    instance = source.get("host") or ev.get("reportingInstance") or ""
    source_text = f"{component}, {instance}" if instance else str(component)
    return [
        last,
        str(ev.get("type", "")),
        str(ev.get("reason", "")),
        target,
        str(involved.get("fieldPath", "")),
        source_text,
        str(ev.get("message", "")).strip(),
        first,
        count,
        _name(ev),
    ]


def _containers(obj: Obj) -> tuple[str, str]:
    containers = [
        _d(c) for c in _l(_d(_d(_d(obj.get("spec")).get("template")).get("spec")).get("containers"))
    ]
    return ",".join(str(c.get("name", "")) for c in containers), ",".join(
        str(c.get("image", "")) for c in containers
    )


def _deployment(dep: Obj) -> Cells:
    spec, status = _d(dep.get("spec")), _d(dep.get("status"))
    names, images = _containers(dep)
    return [
        _name(dep),
        f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'))}",
        _int(status.get("updatedReplicas")),
        _int(status.get("availableReplicas")),
        _age(dep),
        names,
        images,
        selector_string(spec.get("selector")),
    ]


def _statefulset(sts: Obj) -> Cells:
    spec, status = _d(sts.get("spec")), _d(sts.get("status"))
    names, images = _containers(sts)
    return [
        _name(sts),
        f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'))}",
        _age(sts),
        names,
        images,
    ]


_PRINTERS: dict[str, Callable[[Obj], Cells]] = {
    "Service": _service,
    "Endpoints": lambda ep: [_name(ep), format_endpoints(ep), _age(ep)],
    "EndpointSlice": _endpoint_slice,
    "Node": _node,
    "Namespace": lambda ns: [_name(ns), str(_d(ns.get("status")).get("phase", "")), _age(ns)],
    "Event": _event,
    "Deployment": _deployment,
    "StatefulSet": _statefulset,
    "Scale": lambda scale: [
        _name(scale),
        _int(_d(scale.get("spec")).get("replicas")),
        _int(_d(scale.get("status")).get("replicas")),
    ],
    "Lease": lambda lease: [
        _name(lease),
        str(_d(lease.get("spec")).get("holderIdentity") or ""),
        _age(lease),
    ],
}


def row(resource: Resource, obj: Obj, include: str) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = []
    if resource.kind == "Pod":
        cells, conditions = _pod(obj)
    elif resource.kind in _PRINTERS:
        cells = _PRINTERS[resource.kind](obj)
    else:
        cells = [_name(obj), _d(obj.get("metadata")).get("creationTimestamp")]
    out: dict[str, Any] = {"cells": cells}
    if conditions:
        out["conditions"] = conditions
    if include == "Object":
        out["object"] = obj
    elif include == "Metadata":
        out["object"] = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": _d(obj.get("metadata")),
        }
    else:
        out["object"] = None
    return out


def table(
    resource: Resource,
    objects: list[Obj],
    include: str,
    version: str = "v1",
    list_meta: dict[str, Any] | None = None,
    headers: bool = True,
) -> dict[str, Any]:
    """A Table of ``objects``; ``headers=False`` leaves the column definitions out (watch
    events after the first, as upstream)."""
    return {
        "kind": "Table",
        "apiVersion": f"{TABLE_GROUP}/{version}",
        "metadata": list_meta or {},
        "columnDefinitions": list(columns(resource.kind)) if headers else [],
        "rows": [row(resource, obj, include) for obj in objects],
    }


class WatchTableEncoder:
    """Turns watch frames (one JSON event per line) into Table events: one row per event,
    column definitions on the first event only (kubectl reuses them for the rest)."""

    def __init__(self, resource: Resource, include: str, version: str) -> None:
        self.resource = resource
        self.include = include
        self.version = version
        self.headers = True

    def __call__(self, frame: bytes) -> bytes:
        event = orjson.loads(frame)
        kind = event.get("type")
        obj = event.get("object")
        if kind == "ERROR" or not isinstance(obj, dict):
            return frame
        rv = _d(obj.get("metadata")).get("resourceVersion", "")
        objects = [] if kind == "BOOKMARK" else [obj]
        event["object"] = table(
            self.resource, objects, self.include, self.version, {"resourceVersion": rv}, self.headers
        )
        if kind != "BOOKMARK":
            self.headers = False
        return orjson.dumps(event) + b"\n"


def watch_encoder(accept: str, query: Mapping[str, str], resource: Resource) -> WatchTableEncoder | None:
    version = wants_table(accept)
    if version is None:
        return None
    return WatchTableEncoder(resource, include_object(query), version)
