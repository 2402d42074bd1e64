"""The iptables proxier's sync flow against a fake iptables, the runner, and the health servers."""

from __future__ import annotations

import asyncio
import logging
import re
import socket

import aiohttp
import pytest
from prometheus_client import generate_latest

from svcnet.proxy.apply.fake import FakeIPTables
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.conntrack import Conntrack
from svcnet.proxy.healthcheck import ProxierHealth, ServiceHealthServers
from svcnet.proxy.metrics import ProxyMetrics
from svcnet.proxy.proxier import IptablesProxier
from svcnet.proxy.runner import BoundedFrequencyRunner


class RecordingConntrack(Conntrack):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def _delete(self, *args):
        self.calls.append(list(args))


def svc(name, ip, protocol="TCP"):
    return {"kind": "Service", "metadata": {"namespace": "ns", "name": name},
            "spec": {"clusterIP": ip, "ports": [{"name": "p", "port": 53, "protocol": protocol}]}}


def eps(name, *ips, protocol="TCP", node=""):
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"namespace": "ns", "name": f"{name}-1",
                         "labels": {"kubernetes.io/service-name": name}},
            "endpoints": [{"addresses": [ip], "nodeName": node} for ip in ips],
            "ports": [{"name": "p", "port": 5353, "protocol": protocol}]}


def make_proxier():
    ipt = FakeIPTables()
    metrics = ProxyMetrics()
    health = ProxierHealth(60)
    px = IptablesProxier(NodeConfig(node_name="n1", node_ips=["192.168.0.2"], cluster_cidrs=["10.0.0.0/8"]),
                         ipt, metrics, health, conntrack=RecordingConntrack(), sync_period=30)
    retries = []
    px.retry = retries.append
    return px, ipt, metrics, health, retries


def metric(metrics, name):
    text = generate_latest(metrics.registry).decode()
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


async def test_no_sync_until_initialized_then_full_then_partial() -> None:
    px, ipt, metrics, health, _ = make_proxier()
    px.state.on_service(svc("a", "172.30.0.1"))
    await px.sync()
    assert ipt.restores == [] and not health.healthy()
    px.state.services_synced = px.state.slices_synced = True
    px.state.on_endpoint_slice(eps("a", "10.0.0.1"))
    px.state.on_service(svc("b", "172.30.0.2"))
    px.state.on_endpoint_slice(eps("b", "10.0.0.2"))
    await px.sync()
    assert len(ipt.restores) == 1 and health.healthy()
    assert ("nat", "PREROUTING", ("-m", "comment", "--comment", "kubernetes service portals", "-j",
                                  "KUBE-SERVICES")) in ipt.ensured
    assert metric(metrics, "kubeproxy_sync_full_proxy_rules_duration_seconds_count") == 1
    # a partial sync: only b's chains, and no jump rules re-ensured
    ensured = len(ipt.ensured)
    px.state.on_endpoint_slice(eps("b", "10.0.0.3"))
    await px.sync()
    text = ipt.restores[-1]
    assert "ns/b:p" in text and '"ns/a:p -> ' not in text and "-X KUBE-SEP-" in text
    assert '"ns/a:p cluster IP" -m tcp' in text  # KUBE-SERVICES still written in full
    assert len(ipt.ensured) == ensured
    assert metric(metrics, "kubeproxy_sync_partial_proxy_rules_duration_seconds_count") == 1


async def test_failed_partial_restore_is_logged_and_followed_by_full_resync(caplog) -> None:
    caplog.set_level(logging.ERROR)
    px, ipt, metrics, _, retries = make_proxier()
    px.state.replace_all([svc("a", "172.30.0.1"), svc("b", "172.30.0.2")], [eps("a", "10.0.0.1")], [])
    await px.sync()
    ipt.fail_next = True
    px.state.on_endpoint_slice(eps("b", "10.0.0.9"))
    await px.sync()
    assert "Failed to execute iptables-restore (partial sync)" in caplog.text
    assert "3: " in caplog.text and "<-- here" in caplog.text  # the offending line is shown
    assert retries == [30]
    assert metric(metrics, "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total") == 1
    assert px.need_full_sync
    await px.sync()  # nothing changed since, but the next sync is full and writes every service
    assert '"ns/a:p -> 10.0.0.1:5353"' in ipt.restores[-1] and '"ns/b:p -> 10.0.0.9:5353"' in ipt.restores[-1]
    assert not px.need_full_sync


async def test_udp_conntrack_cleanup_after_sync() -> None:
    px, _, _, _, _ = make_proxier()
    px.state.replace_all([svc("dns", "172.30.0.10", "UDP")], [eps("dns", "10.0.0.1", protocol="UDP")], [])
    await px.sync()
    assert ["--orig-dst", "172.30.0.10"] in px.conntrack.calls  # newly active UDP service
    px.conntrack.calls.clear()
    px.state.on_endpoint_slice(eps("dns", "10.0.0.2", protocol="UDP"))
    await px.sync()
    assert px.conntrack.calls == [["--orig-dst", "172.30.0.10", "--dst-nat", "10.0.0.1"]]


async def test_runner_batches_bursts_and_keeps_min_interval() -> None:
    runs = []

    async def fn():
        runs.append(asyncio.get_running_loop().time())

    runner = BoundedFrequencyRunner("t", fn, min_interval=0.3, max_interval=3600)
    runner.start()
    try:
        runner.run()
        await _until(lambda: len(runs) == 1)
        for _ in range(20):  # a burst right after a run: coalesced into one run
            runner.run()
        await _until(lambda: len(runs) == 2)
        await asyncio.sleep(0.2)
        assert len(runs) == 2
        assert runs[1] - runs[0] >= 0.29  # completion-to-start interval honoured
    finally:
        await runner.stop()


async def _until(cond, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_health_check_node_port_server() -> None:
    health = ProxierHealth(60)
    health.updated()
    servers = ServiceHealthServers(health, host="127.0.0.1")
    port = _free_port()
    try:
        await servers.sync_services({("ns", "lb"): port})
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/") as r:
                assert r.status == 503
                assert (await r.json())["localEndpoints"] == 0
            servers.sync_endpoints({("ns", "lb"): 2})
            async with s.get(f"http://127.0.0.1:{port}/anything") as r:
                assert r.status == 200
                body = await r.json()
                assert body == {"service": {"namespace": "ns", "name": "lb"}, "localEndpoints": 2,
                                "serviceProxyHealthy": True}
        await servers.sync_services({})
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/"):
                pass
    finally:
        await servers.close()


async def test_proxier_healthz_semantics() -> None:
    health = ProxierHealth(0.05)
    assert not health.healthy()  # never synced
    health.updated()
    assert health.healthy()
    health.queued_update()
    await asyncio.sleep(0.1)
    assert not health.healthy()  # an update has waited longer than the timeout
    health.updated()
    assert health.healthy()


async def test_network_programming_latency_from_trigger_annotation() -> None:
    from datetime import UTC, datetime

    px, _, metrics, _, _ = make_proxier()
    px.state.replace_all([svc("a", "172.30.0.1")], [], [])
    await px.sync()
    sl = eps("a", "10.0.0.1")
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    sl["metadata"]["annotations"] = {"endpoints.kubernetes.io/last-change-trigger-time": stamp}
    px.state.on_endpoint_slice(sl)
    await px.sync()
    assert metric(metrics, "kubeproxy_network_programming_duration_seconds_count") == 1
    # measured from the annotation's time (microseconds in the stamp), not from any other moment
    assert 0 < metric(metrics, "kubeproxy_network_programming_duration_seconds_sum") < 5


async def test_healthz_is_503_for_a_node_being_deleted_livez_stays_200() -> None:
    health = ProxierHealth(60)
    health.updated()
    health.node_eligible = False
    assert (await health.healthz(None)).status == 503
    livez = await health.livez(None)
    assert livez.status == 200 and '"nodeEligible": false' in livez.text


async def test_node_label_change_is_a_full_sync_that_follows_the_zone() -> None:
    px, ipt, _, _, _ = make_proxier()
    px.state.services_synced = px.state.slices_synced = True
    px.state.on_service(svc("a", "172.30.0.1"))
    slice_obj = eps("a", "10.0.0.1", "10.0.0.2")
    slice_obj["endpoints"][0]["hints"] = {"forZones": [{"name": "za"}]}
    slice_obj["endpoints"][1]["hints"] = {"forZones": [{"name": "zb"}]}
    px.state.on_endpoint_slice(slice_obj)
    await px.sync()
    assert "10.0.0.1:5353" in ipt.restores[-1] and "10.0.0.2:5353" in ipt.restores[-1]  # no zone yet
    px.state.on_node({"kind": "Node", "metadata": {"name": "n1",
                                                   "labels": {"topology.kubernetes.io/zone": "zb"}}})
    await px.sync()
    assert px.last_sync_full and px.node.node_labels == {"topology.kubernetes.io/zone": "zb"}
    assert "10.0.0.2:5353" in ipt.restores[-1] and "10.0.0.1:5353" not in ipt.restores[-1]
