"""IPVS between syncs: graceful termination as upstream's graceful_termination.go (weight 0
first, deletion once a TCP real server has no connections, at once for UDP), schedulers from
the annotation, and `svcnet proxy --mode ipvs` refusing to start without the ip_vs module."""

from __future__ import annotations

import logging
from pathlib import Path

from typer.testing import CliRunner

from svcnet.cli.main import build
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.ipvs import IpvsSyncer, parse_ipvsadm, render_state
from svcnet.proxy.state import ProxyState

NODE = NodeConfig(node_name="n1", node_ips=["192.168.0.2"])
VS = ("TCP", "172.30.0.10", 80)
UDP_VS = ("UDP", "172.30.0.11", 53)


def state_with(tcp_eps: list[str], udp_eps: list[str], annotation: str | None = None):
    st = ProxyState(NODE.family, NODE.node_name)
    meta: dict = {"namespace": "ns", "name": "web"}
    if annotation:
        meta["annotations"] = {"svcnet.io/scheduler": annotation}
    web_port = {"name": "p", "port": 80, "protocol": "TCP"}
    dns_port = {"name": "d", "port": 53, "protocol": "UDP"}
    st.on_service({"kind": "Service", "metadata": meta,
                   "spec": {"clusterIP": "172.30.0.10", "ports": [web_port]}})
    st.on_service({"kind": "Service", "metadata": {"namespace": "ns", "name": "dns"},
                   "spec": {"clusterIP": "172.30.0.11", "ports": [dns_port]}})
    for name, eps, proto, port in (("web", tcp_eps, "TCP", 8080), ("dns", udp_eps, "UDP", 53)):
        st.on_endpoint_slice({"kind": "EndpointSlice", "addressType": "IPv4",
                              "metadata": {"namespace": "ns", "name": f"{name}-1",
                                           "labels": {"kubernetes.io/service-name": name}},
                              "endpoints": [{"addresses": [ip]} for ip in eps],
                              "ports": [{"name": "p" if name == "web" else "d", "port": port,
                                         "protocol": proto}]})
    st.take_changes()
    return render_state(st.svc_port_map, st.endpoints_map, NODE, "rr", st.services)


def test_removed_tcp_real_server_goes_to_weight_zero_then_is_deleted_when_idle() -> None:
    syncer = IpvsSyncer()
    first = syncer.update(state_with(["10.0.0.1", "10.0.0.2"], ["10.0.1.1", "10.0.1.2"]), {})
    _vss, rss = parse_ipvsadm("\n".join(first))
    assert rss[VS] == {"10.0.0.1:8080": 1, "10.0.0.2:8080": 1}
    # 10.0.0.2 goes away while it still holds a connection; the UDP endpoint goes too
    lines = syncer.update(state_with(["10.0.0.1"], ["10.0.1.1"]), {(VS, "10.0.0.2:8080"): 3})
    assert "-e -t 172.30.0.10:80 -r 10.0.0.2:8080 -m -w 0" in lines
    assert "-d -u 172.30.0.11:53 -r 10.0.1.2:53" in lines  # UDP: no graceful termination
    assert not any(line.startswith("-d -t") for line in lines)
    # still busy on the next sync: kept at weight 0
    assert syncer.update(state_with(["10.0.0.1"], ["10.0.1.1"]), {(VS, "10.0.0.2:8080"): 1}) == []
    # connections ended: deleted
    last = syncer.update(state_with(["10.0.0.1"], ["10.0.1.1"]), {})
    assert last == ["-d -t 172.30.0.10:80 -r 10.0.0.2:8080"]


def test_endpoint_that_comes_back_is_restored_to_weight_one() -> None:
    syncer = IpvsSyncer()
    syncer.update(state_with(["10.0.0.1", "10.0.0.2"], []), {})
    syncer.update(state_with(["10.0.0.1"], []), {(VS, "10.0.0.2:8080"): 2})
    lines = syncer.update(state_with(["10.0.0.1", "10.0.0.2"], []), {(VS, "10.0.0.2:8080"): 2})
    assert lines == ["-e -t 172.30.0.10:80 -r 10.0.0.2:8080 -m -w 1"]


def test_scheduler_annotation_and_unknown_value(caplog) -> None:
    syncer = IpvsSyncer()
    syncer.update(state_with(["10.0.0.1"], []), {})
    lines = syncer.update(state_with(["10.0.0.1"], [], annotation="mh"), {})
    assert lines == ["-E -t 172.30.0.10:80 -s mh"]
    with caplog.at_level(logging.WARNING, logger="svcnet.proxy.ipvs"):
        st = state_with(["10.0.0.1"], [], annotation="fastest")
    assert st.virtual_servers[VS].scheduler == "rr"
    assert "unknown IPVS scheduler 'fastest'" in caplog.text


def test_proxy_mode_ipvs_exits_at_once_naming_the_kernel_module(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr("svcnet.proxy.apply.ipvs.PROC_IP_VS", str(tmp_path / "ip_vs"))
    res = CliRunner().invoke(build(), ["proxy", "--mode", "ipvs", "-f", "objects.yaml", "--node-name", "n1"])
    assert res.exit_code == 1
    assert "kernel module ip_vs" in res.stderr
    assert "--mode nftables" in res.stderr
