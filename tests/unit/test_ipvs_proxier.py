"""The IPVS proxier against a stand-in kernel (this machine has no IPVS): a restart adopts the
servers the kernel holds, a leftover server with open connections drains at weight 0 before it
is deleted, and /proc/net/ip_vs is read for the connection counts."""

from __future__ import annotations

from svcnet.proxy.config import NodeConfig
from svcnet.proxy.daemon import DaemonOptions, ProxyDaemon
from svcnet.proxy.healthcheck import ProxierHealth
from svcnet.proxy.ipvs import IpvsState, VirtualServer, parse_ipvsadm
from svcnet.proxy.ipvs_proxier import IpvsProxier, parse_proc_ip_vs
from svcnet.proxy.metrics import ProxyMetrics

PROC = """IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
TCP  0A60000A:0050 rr
  -> 0AF4000B:1F90      Masq    1      2          1
  -> 0AF4000C:1F90      Masq    0      0          0
UDP  0A60000B:0035 rr
  -> 0AF4000B:0035      Masq    1      0          4
TCP  [fd00:0096:0000:0000:0000:0000:0000:0021]:0050 sh persistent 300
  -> [fd00:0010:0244:0000:0000:0000:0000:0011]:1F90      Masq    1      1          0
"""


def test_proc_ip_vs_connection_counts() -> None:
    conns = parse_proc_ip_vs(PROC)
    assert conns[(("TCP", "10.96.0.10", 80), "10.244.0.11:8080")] == 3
    assert conns[(("TCP", "10.96.0.10", 80), "10.244.0.12:8080")] == 0
    assert conns[(("UDP", "10.96.0.11", 53), "10.244.0.11:53")] == 4
    assert conns[(("TCP", "fd00:96::21", 80), "[fd00:10:244::11]:8080")] == 1


class FakeKernel:
    """Keeps virtual/real servers as ipvsadm edits leave them."""

    def __init__(self, saved: str = "") -> None:
        vss, rss = parse_ipvsadm(saved)
        self.vss: dict = dict(vss)
        self.rss: dict = {k: dict(v) for k, v in rss.items()}
        self.conns: dict = {}
        self.addresses: set[str] = set()
        self.edits: list[list[str]] = []
        self.ipsets = self.iptables = ""

    def saved_servers(self) -> str:
        return IpvsState(virtual_servers=self.vss, real_servers=self.rss).ipvsadm_text()

    def connections(self) -> dict:
        return dict(self.conns)

    def bind_addresses(self, addresses: set[str]) -> None:
        self.addresses = set(addresses)

    def restore_ipsets(self, text: str) -> None:
        self.ipsets = text

    def restore_iptables(self, text: str) -> None:
        self.iptables = text

    def edit_servers(self, lines: list[str]) -> None:
        self.edits.append(lines)
        for line in lines:
            words = line.split()
            op = words[0]
            host, _, port = words[2].rpartition(":")
            key = ({"-t": "TCP", "-u": "UDP"}[words[1]], host.strip("[]"), int(port))
            if op in ("-A", "-E"):
                assert (op == "-A") != (key in self.vss), line
                self.vss[key] = VirtualServer(key[0], key[1], key[2], words[words.index("-s") + 1])
                self.rss.setdefault(key, {})
            elif op == "-D":
                assert not self.rss.get(key), f"deleting {key} with real servers"
                del self.vss[key]
                self.rss.pop(key, None)
            else:
                rs = words[words.index("-r") + 1]
                if op == "-d":
                    del self.rss[key][rs]
                else:
                    assert (op == "-a") != (rs in self.rss[key]), line
                    self.rss[key][rs] = int(words[words.index("-w") + 1])


def proxier(kernel: FakeKernel) -> IpvsProxier:
    px = IpvsProxier(NodeConfig(node_name="n1", node_ips=["192.168.0.2"], cluster_cidrs=["10.244.0.0/16"]),
                     kernel, ProxyMetrics(), ProxierHealth(60), scheduler="lc")  # type: ignore[arg-type]
    px.retry = lambda _d: None
    px.state.services_synced = px.state.slices_synced = True
    px.state.on_service({"kind": "Service", "metadata": {"namespace": "ns", "name": "web"},
                         "spec": {"clusterIP": "10.96.0.10",
                                  "ports": [{"name": "p", "port": 80, "protocol": "TCP"}]}})
    px.state.on_endpoint_slice({"kind": "EndpointSlice", "addressType": "IPv4",
                                "metadata": {"namespace": "ns", "name": "web-1",
                                             "labels": {"kubernetes.io/service-name": "web"}},
                                "endpoints": [{"addresses": ["10.244.0.11"]}],
                                "ports": [{"name": "p", "port": 8080, "protocol": "TCP"}]})
    return px


async def test_restart_adopts_kernel_servers_and_drains_leftovers() -> None:
    leftover = "-A -t 10.96.0.99:80 -s rr\n-a -t 10.96.0.99:80 -r 10.244.0.50:8080 -m -w 1\n"
    web = "-A -t 10.96.0.10:80 -s lc\n-a -t 10.96.0.10:80 -r 10.244.0.11:8080 -m -w 1\n"
    kernel = FakeKernel(leftover + web)
    kernel.conns = {(("TCP", "10.96.0.99", 80), "10.244.0.50:8080"): 2}
    px = proxier(kernel)
    await px.sync()
    # web was already right: untouched; the leftover drains at weight 0
    assert kernel.edits[-1] == ["-e -t 10.96.0.99:80 -r 10.244.0.50:8080 -m -w 0"]
    assert kernel.rss[("TCP", "10.96.0.10", 80)] == {"10.244.0.11:8080": 1}
    assert "10.96.0.10" in kernel.addresses and "10.96.0.99" not in kernel.addresses
    assert "add KUBE-CLUSTER-IP 10.96.0.10,tcp:80" in kernel.ipsets
    assert "--match-set KUBE-CLUSTER-IP dst,dst ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ" in kernel.iptables
    kernel.conns = {}
    await px.sync()  # connections ended: the real server, then its virtual server, go
    assert kernel.edits[-1] == ["-d -t 10.96.0.99:80 -r 10.244.0.50:8080", "-D -t 10.96.0.99:80"]
    assert set(kernel.vss) == {("TCP", "10.96.0.10", 80)}


async def test_failed_edit_is_retried_from_the_kernel_state() -> None:
    kernel = FakeKernel()
    px = proxier(kernel)
    calls = {"n": 0}
    real_edit = kernel.edit_servers

    def flaky(lines: list[str]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("ipvsadm-restore: Memory allocation problem")
        real_edit(lines)

    kernel.edit_servers = flaky  # type: ignore[method-assign]
    await px.sync()
    assert kernel.vss == {} and not px.started
    await px.sync()
    assert kernel.rss[("TCP", "10.96.0.10", 80)] == {"10.244.0.11:8080": 1}


def test_daemon_builds_ipvs_proxiers() -> None:
    opts = DaemonOptions(mode="ipvs", node=NodeConfig(node_name="n1", node_ips=["192.168.0.2"]),
                         ipvs_scheduler="sh")
    d = ProxyDaemon(opts, ipvs=FakeKernel())
    assert isinstance(d.proxier, IpvsProxier) and d.proxier.scheduler == "sh"
