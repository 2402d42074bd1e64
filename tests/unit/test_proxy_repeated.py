"""Partial syncs (KEP-3453) step by step, against upstream's TestSyncProxyRulesRepeated.

The same sequence of changes as upstream's test is played through the proxier (with the
in-memory iptables fake); after each sync the restore input must equal upstream's expectation
for that step (golden/iptables/repeated/NN-*.expected, compared after upstream's rule sort).
"""

from __future__ import annotations

from pathlib import Path

from svcnet.proxy.apply.fake import FakeIPTables
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.healthcheck import ProxierHealth
from svcnet.proxy.iptables import sort_restore_text
from svcnet.proxy.metrics import ProxyMetrics
from svcnet.proxy.proxier import IptablesProxier

STEPS = Path(__file__).parent / "golden" / "iptables" / "repeated"


def service(ns: str, name: str, ip: str, port_name: str, port: int) -> dict:
    return {"kind": "Service", "metadata": {"namespace": ns, "name": name},
            "spec": {"type": "ClusterIP", "clusterIP": ip,
                     "ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}}


def endpoint_slice(ns: str, name: str, port_name: str, port: int, *ips: str) -> dict:
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"namespace": ns, "name": f"{name}-1",
                         "labels": {"kubernetes.io/service-name": name}},
            "endpoints": [{"addresses": [ip]} for ip in ips],
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}


async def test_repeated_syncs_match_upstream_step_by_step() -> None:
    ipt = FakeIPTables()
    node = NodeConfig(node_name="test-node", node_ips=["192.168.0.2"], cluster_cidrs=["10.0.0.0/8"],
                      short_masquerade_mark=True, random_fully=False)
    px = IptablesProxier(node, ipt, ProxyMetrics(), ProxierHealth(60))
    st = px.state
    st.services_synced = st.slices_synced = True

    async def step(name: str) -> None:
        await px.sync()
        expected = (STEPS / f"{name}.expected").read_text()
        assert sort_restore_text(ipt.restores[-1]) == sort_restore_text(expected), name

    svc2 = service("ns2", "svc2", "172.30.0.42", "p8080", 8080)
    st.on_service(service("ns1", "svc1", "172.30.0.41", "p80", 80))
    st.on_service(svc2)
    st.on_endpoint_slice(endpoint_slice("ns1", "svc1", "p80", 80, "10.0.1.1"))
    st.on_endpoint_slice(endpoint_slice("ns2", "svc2", "p8080", 8080, "10.0.2.1"))
    await step("01-initial")

    st.on_service(service("ns3", "svc3", "172.30.0.43", "p80", 80))
    st.on_endpoint_slice(endpoint_slice("ns3", "svc3", "p80", 80, "10.0.3.1"))
    await step("02-add-svc3")

    st.on_service(svc2, deleted=True)
    await step("03-delete-svc2")

    svc4 = service("ns4", "svc4", "172.30.0.44", "p80", 80)
    st.on_service(svc4)
    await step("04-add-svc4-no-endpoints")

    st.on_endpoint_slice(endpoint_slice("ns4", "svc4", "p80", 80, "10.0.4.1"))
    await step("05-add-svc4-endpoints")

    st.on_endpoint_slice(endpoint_slice("ns3", "svc3", "p80", 80, "10.0.3.2"))
    await step("06-change-svc3-endpoint")

    st.on_endpoint_slice(endpoint_slice("ns3", "svc3", "p80", 80, "10.0.3.2", "10.0.3.3"))
    await step("07-add-svc3-endpoint")

    await step("08-no-changes")

    # upstream makes this partial restore fail (a dangling jump); the retry is a full resync
    ipt.fail_next = True
    st.on_service(svc4, deleted=True)
    await px.sync()
    assert px.need_full_sync
    await step("09-full-resync-after-failed-partial")
    assert not px.need_full_sync
