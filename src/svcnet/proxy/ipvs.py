"""The IPVS backend's renderer: services + endpoints -> what upstream's IPVS proxier configures.

Upstream (pkg/proxy/ipvs) programs the kernel through netlink; the same state is written here
as text the standard tools read back:

- virtual and real servers in `ipvsadm-restore` form (`-A -t VIP:PORT -s SCHED [-p TIMEOUT]`,
  `-a -t VIP:PORT -r EP:PORT -m -w 1`): one virtual server per ClusterIP, external IP,
  load-balancer IP and node IP (NodePorts) and port, real servers = the endpoints the
  traffic policy allows (CategorizeEndpoints), masquerading forwarding (-m), weight 1;
- the addresses bound to the dummy interface kube-ipvs0 (ClusterIPs, external and LB IPs);
- the ipsets (`ipset restore` form) upstream keeps (KUBE-CLUSTER-IP, KUBE-LOOP-BACK,
  KUBE-NODE-PORT-TCP, KUBE-LOAD-BALANCER ...) and the iptables rules that match them;
- graceful termination (`IpvsSyncer`): a real server that goes away is first set to weight 0
  and deleted once it has no connections (TCP), at once for UDP and SCTP, as upstream's
  graceful_termination.go.

The scheduler is --ipvs-scheduler (default rr) or the service's `svcnet.io/scheduler`
annotation; an unknown scheduler is logged and the default used.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from svcnet.proxy.config import NodeConfig
from svcnet.proxy.ipnet import join_host_port, parse_cidr, parse_ip
from svcnet.proxy.model import EndpointInfo, ServicePortInfo, ServicePortName, port_order
from svcnet.proxy.topology import categorize_endpoints

log = logging.getLogger("svcnet.proxy.ipvs")

DEFAULT_SCHEDULER = "rr"
DUMMY_DEVICE = "kube-ipvs0"
SCHEDULER_ANNOTATION = "svcnet.io/scheduler"
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh")

# name, type, comment (pkg/proxy/ipvs/ipset.go)
IPSETS: tuple[tuple[str, str, str], ...] = (
    ("KUBE-LOOP-BACK", "hash:ip,port,ip",
     "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose"),
    ("KUBE-CLUSTER-IP", "hash:ip,port", "Kubernetes service cluster ip + port for masquerade purpose"),
    ("KUBE-EXTERNAL-IP", "hash:ip,port",
     "Kubernetes service external ip + port for masquerade and filter purpose"),
    ("KUBE-EXTERNAL-IP-LOCAL", "hash:ip,port",
     "Kubernetes service external ip + port with externalTrafficPolicy=local"),
    ("KUBE-LOAD-BALANCER", "hash:ip,port", "Kubernetes service lb portal"),
    ("KUBE-LOAD-BALANCER-FW", "hash:ip,port",
     "Kubernetes service load balancer ip + port for load balancer with sourceRange"),
    ("KUBE-LOAD-BALANCER-LOCAL", "hash:ip,port",
     "Kubernetes service load balancer ip + port with externalTrafficPolicy=local"),
    ("KUBE-LOAD-BALANCER-SOURCE-IP", "hash:ip,port,ip",
     "Kubernetes service load balancer ip + port + source IP for packet filter purpose"),
    ("KUBE-LOAD-BALANCER-SOURCE-CIDR", "hash:ip,port,net",
     "Kubernetes service load balancer ip + port + source cidr for packet filter purpose"),
    ("KUBE-NODE-PORT-TCP", "bitmap:port", "Kubernetes nodeport TCP port for masquerade purpose"),
    ("KUBE-NODE-PORT-LOCAL-TCP", "bitmap:port",
     "Kubernetes nodeport TCP port with externalTrafficPolicy=local"),
    ("KUBE-NODE-PORT-UDP", "bitmap:port", "Kubernetes nodeport UDP port for masquerade purpose"),
    ("KUBE-NODE-PORT-LOCAL-UDP", "bitmap:port",
     "Kubernetes nodeport UDP port with externalTrafficPolicy=local"),
    ("KUBE-NODE-PORT-SCTP-HASH", "hash:ip,port",
     "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'"),
    ("KUBE-NODE-PORT-LOCAL-SCTP-HASH", "hash:ip,port",
     "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'"),
    ("KUBE-HEALTH-CHECK-NODE-PORT", "bitmap:port", "Kubernetes health check node port"),
    ("KUBE-IPVS-IPS", "hash:ip", "Addresses on the ipvs interface"),
)
IPSET_COMMENTS = {name: comment for name, _t, comment in IPSETS}

# (set, table, from chain, to, match type, protocol): ipsetWithIptablesChain
IPSET_CHAINS: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("KUBE-LOOP-BACK", "nat", "KUBE-POSTROUTING", "MASQUERADE", "dst,dst,src", ""),
    ("KUBE-LOAD-BALANCER", "nat", "KUBE-SERVICES", "KUBE-LOAD-BALANCER", "dst,dst", ""),
    ("KUBE-LOAD-BALANCER-LOCAL", "nat", "KUBE-LOAD-BALANCER", "RETURN", "dst,dst", ""),
    ("KUBE-NODE-PORT-LOCAL-TCP", "nat", "KUBE-NODE-PORT", "RETURN", "dst", "tcp"),
    ("KUBE-NODE-PORT-TCP", "nat", "KUBE-NODE-PORT", "KUBE-MARK-MASQ", "dst", "tcp"),
    ("KUBE-NODE-PORT-LOCAL-UDP", "nat", "KUBE-NODE-PORT", "RETURN", "dst", "udp"),
    ("KUBE-NODE-PORT-UDP", "nat", "KUBE-NODE-PORT", "KUBE-MARK-MASQ", "dst", "udp"),
    ("KUBE-NODE-PORT-LOCAL-SCTP-HASH", "nat", "KUBE-NODE-PORT", "RETURN", "dst,dst", "sctp"),
    ("KUBE-NODE-PORT-SCTP-HASH", "nat", "KUBE-NODE-PORT", "KUBE-MARK-MASQ", "dst,dst", "sctp"),
    ("KUBE-LOAD-BALANCER-FW", "filter", "KUBE-PROXY-FIREWALL", "KUBE-SOURCE-RANGES-FIREWALL", "dst,dst", ""),
    ("KUBE-LOAD-BALANCER-SOURCE-CIDR", "filter", "KUBE-SOURCE-RANGES-FIREWALL", "RETURN", "dst,dst,src", ""),
    ("KUBE-LOAD-BALANCER-SOURCE-IP", "filter", "KUBE-SOURCE-RANGES-FIREWALL", "RETURN", "dst,dst,src", ""),
)

PROTO_FLAG = {"TCP": "-t", "UDP": "-u", "SCTP": "--sctp-service"}


@dataclass(frozen=True, order=True)
class VirtualServer:
    protocol: str  # TCP | UDP | SCTP
    address: str
    port: int
    scheduler: str = DEFAULT_SCHEDULER
    persistent_timeout: int = 0  # ClientIP affinity: -p SECONDS

    @property
    def service_arg(self) -> str:
        return f"{PROTO_FLAG[self.protocol]} {join_host_port(self.address, self.port)}"

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.protocol, self.address, self.port)

    def add_line(self) -> str:
        line = f"-A {self.service_arg} -s {self.scheduler}"
        if self.persistent_timeout:
            line += f" -p {self.persistent_timeout}"
        return line


@dataclass
class IpvsState:
    virtual_servers: dict[tuple[str, str, int], VirtualServer] = field(default_factory=dict)
    real_servers: dict[tuple[str, str, int], dict[str, int]] = field(default_factory=dict)  # rs -> weight
    bound_addresses: set[str] = field(default_factory=set)
    ipsets: dict[str, set[str]] = field(default_factory=lambda: {name: set() for name, _t, _c in IPSETS})
    iptables: str = ""

    def ipvsadm_text(self) -> str:
        out: list[str] = []
        for key in sorted(self.virtual_servers):
            vs = self.virtual_servers[key]
            out.append(vs.add_line())
            for rs, weight in sorted(self.real_servers.get(key, {}).items()):
                out.append(f"-a {vs.service_arg} -r {rs} -m -w {weight}")
        return "\n".join(out) + ("\n" if out else "")

    def ipset_text(self, ipv6: bool = False) -> str:
        family = "inet6" if ipv6 else "inet"
        out: list[str] = []
        for name, set_type, _comment in IPSETS:
            full = ipset_name(name, ipv6)
            if set_type.startswith("bitmap:"):
                out.append(f"create {full} {set_type} range 0-65535 comment")
            else:
                out.append(f"create {full} {set_type} family {family} hashsize 1024 maxelem 65536 comment")
            out.append(f"flush {full}")
            for entry in sorted(self.ipsets[name]):
                out.append(f"add {full} {entry}")
        return "\n".join(out) + "\n"

    def addresses_text(self) -> str:
        return "".join(f"{a}\n" for a in sorted(self.bound_addresses))


def ipset_name(name: str, ipv6: bool) -> str:
    """The IPv6 proxier's sets are KUBE-6-... (ipset names have at most 31 characters)."""
    return ("KUBE-6-" + name.removeprefix("KUBE-"))[:31] if ipv6 else name


def scheduler_for(service: dict | None, default: str) -> str:
    annotations = ((service or {}).get("metadata") or {}).get("annotations") or {}
    value = annotations.get(SCHEDULER_ANNOTATION)
    if value is None:
        return default
    if value not in SCHEDULERS:
        ns = (service or {}).get("metadata", {}).get("namespace")
        name = (service or {}).get("metadata", {}).get("name")
        log.warning("service %s/%s: unknown IPVS scheduler %r in %s (known: %s); using %s", ns, name, value,
                    SCHEDULER_ANNOTATION, ", ".join(SCHEDULERS), default)
        return default
    return value


def _entry(ip: str, proto: str, port: int, extra: str = "") -> str:
    # ipset's hash:ip,port entry text: "IP,proto:port[,IP2|NET]"; IPv6 addresses as they are
    return f"{ip},{proto}:{port}" + (f",{extra}" if extra else "")


def render_state(svc_port_map: Mapping[ServicePortName, ServicePortInfo],
                 endpoints_map: Mapping[ServicePortName, Sequence[EndpointInfo]],
                 node: NodeConfig, scheduler: str = DEFAULT_SCHEDULER,
                 services: Mapping[tuple[str, str], dict] | None = None) -> IpvsState:
    """The IPVS state of one full sync."""
    st = IpvsState()
    sets = st.ipsets
    node_ips = _nodeport_ips(node)
    for spn in sorted(svc_port_map, key=port_order):
        svc = svc_port_map[spn]
        proto = svc.protocol.lower()
        sched = scheduler_for((services or {}).get(spn.service), scheduler)
        timeout = svc.sticky_max_age_seconds if svc.session_affinity_client_ip else 0
        cluster_eps, local_eps, _reachable, _has = categorize_endpoints(
            endpoints_map.get(spn, ()), svc, node.node_name, node.node_labels)
        internal = local_eps if svc.internal_policy_local else cluster_eps
        external = local_eps if svc.external_policy_local else cluster_eps

        def add_vs(address: str, port: int, eps: Sequence[EndpointInfo], bind: bool,
                   protocol: str = svc.protocol, sched: str = sched, timeout: int = timeout) -> None:
            vs = VirtualServer(protocol, address, port, sched, timeout)
            st.virtual_servers[vs.key] = vs
            st.real_servers[vs.key] = {ep.endpoint_string: 1 for ep in eps}
            if bind:
                st.bound_addresses.add(address)

        for ep in endpoints_map.get(spn, ()):
            if ep.is_local:
                sets["KUBE-LOOP-BACK"].add(_entry(ep.ip, proto, ep.port, ep.ip))
        sets["KUBE-CLUSTER-IP"].add(_entry(svc.cluster_ip, proto, svc.port))
        add_vs(svc.cluster_ip, svc.port, internal, bind=True)
        for ext_ip in svc.external_ips:
            name = "KUBE-EXTERNAL-IP-LOCAL" if svc.external_policy_local else "KUBE-EXTERNAL-IP"
            sets[name].add(_entry(ext_ip, proto, svc.port))
            add_vs(ext_ip, svc.port, external, bind=True)
        for lb_ip in svc.load_balancer_vips:
            entry = _entry(lb_ip, proto, svc.port)
            sets["KUBE-LOAD-BALANCER"].add(entry)
            if svc.external_policy_local:
                sets["KUBE-LOAD-BALANCER-LOCAL"].add(entry)
            if svc.load_balancer_source_ranges:
                sets["KUBE-LOAD-BALANCER-FW"].add(entry)
                allow_from_node = False
                primary = parse_ip(node.primary_node_ip or "") if node.primary_node_ip else None
                for cidr in svc.load_balancer_source_ranges:
                    sets["KUBE-LOAD-BALANCER-SOURCE-CIDR"].add(_entry(lb_ip, proto, svc.port, cidr))
                    net = parse_cidr(cidr)
                    if primary is not None and net is not None and primary in net:
                        allow_from_node = True
                if allow_from_node:
                    sets["KUBE-LOAD-BALANCER-SOURCE-IP"].add(_entry(lb_ip, proto, svc.port, lb_ip))
            add_vs(lb_ip, svc.port, external, bind=True)
        if svc.node_port:
            if svc.protocol == "SCTP":
                for ip in node_ips:
                    entry = _entry(ip, proto, svc.node_port)
                    sets["KUBE-NODE-PORT-SCTP-HASH"].add(entry)
                    if svc.external_policy_local:
                        sets["KUBE-NODE-PORT-LOCAL-SCTP-HASH"].add(entry)
            else:
                sets[f"KUBE-NODE-PORT-{svc.protocol}"].add(str(svc.node_port))
                if svc.external_policy_local:
                    sets[f"KUBE-NODE-PORT-LOCAL-{svc.protocol}"].add(str(svc.node_port))
            for ip in node_ips:
                add_vs(ip, svc.node_port, external, bind=False)
        if svc.health_check_node_port:
            sets["KUBE-HEALTH-CHECK-NODE-PORT"].add(str(svc.health_check_node_port))
    sets["KUBE-IPVS-IPS"] = set(st.bound_addresses)
    st.iptables = render_iptables(st, node)
    return st


def _nodeport_ips(node: NodeConfig) -> list[str]:
    ips = node.nodeport_ips() if node.nodeport_addresses else [ip for ip in node.node_ips if parse_ip(ip)]
    fam_ips = []
    for ip in ips:
        addr = parse_ip(ip)
        if addr is not None and (addr.version == 6) == node.is_ipv6 and not addr.is_loopback:
            fam_ips.append(str(addr))
    return fam_ips


def render_iptables(st: IpvsState, node: NodeConfig) -> str:
    """The iptables-restore input of IPVS mode (writeIptablesRules): rules that match the ipsets."""
    ipv6 = node.is_ipv6
    mark = node.masquerade_mark
    sets = st.ipsets

    def ms(name: str, match: str) -> str:
        return f"-m set --match-set {ipset_name(name, ipv6)} {match}"

    def comment(name: str) -> str:
        return f'-m comment --comment "{IPSET_COMMENTS[name]}"'

    nat_chains = ["KUBE-SERVICES", "KUBE-POSTROUTING", "KUBE-NODE-PORT", "KUBE-LOAD-BALANCER",
                  "KUBE-MARK-MASQ"]
    filter_chains = ["KUBE-FORWARD", "KUBE-NODE-PORT", "KUBE-PROXY-FIREWALL", "KUBE-SOURCE-RANGES-FIREWALL",
                     "KUBE-IPVS-FILTER", "KUBE-IPVS-OUT-FILTER"]
    nat: list[str] = []
    flt: list[str] = []
    for set_name, table, src, dst, match, proto in IPSET_CHAINS:
        if not sets[set_name]:
            continue
        p = f"-p {proto} " if proto else ""
        line = f"-A {src} {p}{comment(set_name)} {ms(set_name, match)} -j {dst}"
        (nat if table == "nat" else flt).append(line)
    if sets["KUBE-CLUSTER-IP"]:
        base = f"-A KUBE-SERVICES {comment('KUBE-CLUSTER-IP')} {ms('KUBE-CLUSTER-IP', 'dst,dst')}"
        if node.masquerade_all:
            nat.append(f"{base} -j KUBE-MARK-MASQ")
        elif node.local_cidr:
            nat.append(f"{base} ! -s {node.local_cidr} -j KUBE-MARK-MASQ")
        else:
            # the service VIPs sit on kube-ipvs0, so node-originated traffic may carry a VIP source
            nat.append(f"-A KUBE-SERVICES {comment('KUBE-CLUSTER-IP')} {ms('KUBE-CLUSTER-IP', 'src,dst')} "
                       "-j KUBE-MARK-MASQ")
    for set_name in ("KUBE-EXTERNAL-IP", "KUBE-EXTERNAL-IP-LOCAL"):
        if not sets[set_name]:
            continue
        c, m = comment(set_name), ms(set_name, "dst,dst")
        if set_name == "KUBE-EXTERNAL-IP":
            nat.append(f"-A KUBE-SERVICES {c} {m} -j KUBE-MARK-MASQ")
        nat.append(f"-A KUBE-SERVICES {c} {m} -m physdev ! --physdev-is-in "
                   "-m addrtype ! --src-type LOCAL -j ACCEPT")
        nat.append(f"-A KUBE-SERVICES {c} {m} -m addrtype --dst-type LOCAL -j ACCEPT")
    if sets["KUBE-LOAD-BALANCER"]:
        nat.append("-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ")
    if any(sets[n] for n in ("KUBE-NODE-PORT-TCP", "KUBE-NODE-PORT-UDP", "KUBE-NODE-PORT-SCTP-HASH")):
        nat.append("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT")
    if sets["KUBE-CLUSTER-IP"]:
        nat.append(f"-A KUBE-SERVICES {ms('KUBE-CLUSTER-IP', 'dst,dst')} -j ACCEPT")
    if sets["KUBE-LOAD-BALANCER"]:
        nat.append(f"-A KUBE-SERVICES {ms('KUBE-LOAD-BALANCER', 'dst,dst')} -j ACCEPT")
    nat.append(f"-A KUBE-POSTROUTING -m mark ! --mark {mark}/{mark} -j RETURN")
    nat.append(f"-A KUBE-POSTROUTING -j MARK --xor-mark {mark}")
    nat.append('-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
               "-j MASQUERADE --random-fully")
    nat.append(f"-A KUBE-MARK-MASQ -j MARK --or-mark {mark}")
    if sets["KUBE-LOAD-BALANCER-FW"]:
        flt.append('-A KUBE-SOURCE-RANGES-FIREWALL -j DROP')
    if sets["KUBE-HEALTH-CHECK-NODE-PORT"]:
        flt.append(f"-A KUBE-NODE-PORT {comment('KUBE-HEALTH-CHECK-NODE-PORT')} "
                   f"{ms('KUBE-HEALTH-CHECK-NODE-PORT', 'dst')} -j ACCEPT")
    flt.append("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP")
    flt.append('-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" '
               f"-m mark --mark {mark}/{mark} -j ACCEPT")
    flt.append('-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" '
               "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    # KUBE-IPVS-FILTER: only service addresses and ports may be reached on kube-ipvs0's addresses
    for set_name, match in (("KUBE-LOAD-BALANCER", "dst,dst"), ("KUBE-CLUSTER-IP", "dst,dst"),
                            ("KUBE-EXTERNAL-IP", "dst,dst"), ("KUBE-EXTERNAL-IP-LOCAL", "dst,dst"),
                            ("KUBE-HEALTH-CHECK-NODE-PORT", "dst")):
        flt.append(f"-A KUBE-IPVS-FILTER {ms(set_name, match)} -j RETURN")
    flt.append(f"-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW {ms('KUBE-IPVS-IPS', 'dst')} -j REJECT")
    parts = ["*filter", *(f":{c} - [0:0]" for c in filter_chains), *flt, "COMMIT",
             "*nat", *(f":{c} - [0:0]" for c in nat_chains), *nat, "COMMIT", ""]
    return "\n".join(parts)


def render_text(st: IpvsState, node: NodeConfig) -> str:
    """All of one sync as one document, sections marked with comment lines."""
    return ("# ipvsadm-restore\n" + st.ipvsadm_text()
            + f"# addresses on {DUMMY_DEVICE}\n" + st.addresses_text()
            + "# ipset restore\n" + st.ipset_text(node.is_ipv6)
            + "# iptables-restore --noflush\n" + st.iptables)


def render_full(svc_port_map, endpoints_map, node: NodeConfig) -> str:
    """A full IPVS sync with the default scheduler (the generic render dispatch)."""
    return render_text(render_state(svc_port_map, endpoints_map, node), node)


def render_snapshot(snapshot, node: NodeConfig, scheduler: str = DEFAULT_SCHEDULER) -> str:
    """`svcnet proxy render --mode ipvs`: with --ipvs-scheduler and per-service annotations."""
    from svcnet.proxy.render import state_from_snapshot

    state = state_from_snapshot(snapshot, node)
    st = render_state(state.svc_port_map, state.endpoints_map, node, scheduler, state.services)
    return render_text(st, node)


# --- parsing back (tests, tools) ---

VsKey = tuple[str, str, int]


def parse_ipvsadm(text: str) -> tuple[dict[VsKey, VirtualServer], dict[VsKey, dict[str, int]]]:
    """Read `ipvsadm-restore` lines (-A/-a as written above) back into servers."""
    flags = {v: k for k, v in PROTO_FLAG.items()}
    vss: dict[tuple[str, str, int], VirtualServer] = {}
    rss: dict[tuple, dict[str, int]] = {}
    for no, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] not in ("-A", "-a") or words[1] not in flags:
            raise ValueError(f"line {no}: not an ipvsadm-restore line: {line!r}")
        proto = flags[words[1]]
        host, _, port = words[2].rpartition(":")
        key = (proto, host.strip("[]"), int(port))
        opts = dict(zip(words[3::2], words[4::2], strict=False))
        if words[0] == "-A":
            vss[key] = VirtualServer(proto, key[1], key[2], opts.get("-s", DEFAULT_SCHEDULER),
                                     int(opts.get("-p", 0)))
        else:
            if key not in vss:
                raise ValueError(f"line {no}: real server for an undeclared virtual server: {line!r}")
            rest = words[3:]
            rs = rest[rest.index("-r") + 1]
            weight = int(rest[rest.index("-w") + 1]) if "-w" in rest else 1
            rss.setdefault(key, {})[rs] = weight
    return vss, rss


def parse_ipset(text: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "create":
            out.setdefault(words[1], set())
        elif words[0] == "add":
            out.setdefault(words[1], set()).add(words[2])
        elif words[0] != "flush":
            raise ValueError(f"not an ipset restore line: {line!r}")
    return out


def split_sections(text: str) -> dict[str, str]:
    """The sections of render_text's document, by their heading."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("# ") and line[2:] in ("ipvsadm-restore", f"addresses on {DUMMY_DEVICE}",
                                                   "ipset restore", "iptables-restore --noflush"):
            current = line[2:]
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return {k: "\n".join(v) + "\n" for k, v in out.items()}


# --- graceful termination between syncs ---

class IpvsSyncer:
    """Turns successive IPVS states into ipvsadm-restore edits, as upstream's proxier does:
    new virtual/real servers are added, removed real servers go to weight 0 first and are
    deleted once they have no connections (UDP/SCTP at once), removed virtual servers deleted."""

    def __init__(self) -> None:
        self.current: IpvsState | None = None
        self.terminating: dict[tuple[tuple[str, str, int], str], VirtualServer] = {}
        self.removed_vs: dict[tuple[str, str, int], VirtualServer] = {}  # kept for terminating RS

    def update(self, new: IpvsState, connections: Mapping[tuple[tuple[str, str, int], str], int]
               ) -> list[str]:
        """ipvsadm lines that move the kernel from the last state to `new`. `connections` gives
        active+inactive connections per (virtual server key, real server)."""
        old = self.current or IpvsState()
        lines: list[str] = []
        for key, vs in sorted(new.virtual_servers.items()):
            before = old.virtual_servers.get(key)
            if before is None:
                lines.append(vs.add_line())
            elif before != vs:
                lines.append(vs.add_line().replace("-A ", "-E ", 1))
            for rs, weight in sorted(new.real_servers.get(key, {}).items()):
                had = old.real_servers.get(key, {}).get(rs)
                was_terminating = self.terminating.pop((key, rs), None) is not None
                if had is None and not was_terminating:
                    lines.append(f"-a {vs.service_arg} -r {rs} -m -w {weight}")
                elif had != weight or was_terminating:
                    lines.append(f"-e {vs.service_arg} -r {rs} -m -w {weight}")
        for key, vs in sorted(old.virtual_servers.items()):
            new_rs = new.real_servers.get(key, {}) if key in new.virtual_servers else {}
            for rs in sorted(old.real_servers.get(key, {})):
                if rs in new_rs:
                    continue
                if vs.protocol != "TCP":
                    lines.append(f"-d {vs.service_arg} -r {rs}")  # UDP/SCTP: no graceful termination
                else:
                    lines.append(f"-e {vs.service_arg} -r {rs} -m -w 0")
                    self.terminating[(key, rs)] = vs
        for (key, rs), vs in sorted(self.terminating.items()):
            if connections.get((key, rs), 0) == 0:
                lines.append(f"-d {vs.service_arg} -r {rs}")
                del self.terminating[(key, rs)]
        for key, vs in old.virtual_servers.items():
            if key not in new.virtual_servers:
                self.removed_vs[key] = vs
        for key, vs in sorted(self.removed_vs.items()):
            if key in new.virtual_servers:
                del self.removed_vs[key]
            elif not any(k == key for k, _ in self.terminating):
                lines.append(f"-D {vs.service_arg}")
                del self.removed_vs[key]
        self.current = new
        return lines
