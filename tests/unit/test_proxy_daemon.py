"""The proxy daemon fed by informers from a real `svcnet server` (iptables faked in memory)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import pytest

from svcnet.proxy.apply.fake import FakeIPTables
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.conntrack import Conntrack
from svcnet.proxy.daemon import DaemonOptions, ProxyDaemon, daemon_families


class NoConntrack(Conntrack):
    def _delete(self, *args: str) -> None:
        self.calls.append(list(args))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _until(cond, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory):
    from svcnet.apiserver.launcher import start_api_server

    server = start_api_server(Path(tmp_path_factory.mktemp("proxy-daemon")) / "data")
    try:
        yield server
    finally:
        server.stop()


async def test_daemon_syncs_from_informers_and_serves_health_and_metrics(api_server) -> None:
    from kubernetes import client

    api = api_server.python_client()
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    svc = await asyncio.to_thread(core.create_namespaced_service, "default", {
        "metadata": {"name": "web"}, "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    cluster_ip = svc.spec.cluster_ip

    def endpoint_slice(ip: str) -> dict:
        return {"metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4", "endpoints": [{"addresses": [ip]}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}

    await asyncio.to_thread(discovery.create_namespaced_endpoint_slice, "default", endpoint_slice("10.0.0.1"))
    healthz, metrics = _free_port(), _free_port()
    ipt = FakeIPTables()
    node = NodeConfig(node_name="n1", node_ips=["192.168.0.2"], cluster_cidrs=["10.0.0.0/8"])
    opts = DaemonOptions(kubeconfig=str(api_server.kubeconfig_path), min_sync_period=0.05, node=node,
                         healthz_bind_address=f"127.0.0.1:{healthz}",
                         metrics_bind_address=f"127.0.0.1:{metrics}")
    daemon = ProxyDaemon(opts, ipt=ipt, conntrack=NoConntrack())
    task = asyncio.create_task(daemon.run(install_signal_handlers=False))
    try:
        await _until(lambda: any("10.0.0.1:8080" in t for t in ipt.restores), what="first sync")
        assert f"-d {cluster_ip} --dport 80" in ipt.restores[-1]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{healthz}/healthz") as r:
                assert r.status == 200
            # an endpoint change arrives by watch and becomes a partial sync
            await asyncio.to_thread(discovery.replace_namespaced_endpoint_slice, "web-1", "default",
                                    endpoint_slice("10.0.0.2"))
            await _until(lambda: "10.0.0.2:8080" in ipt.restores[-1], what="partial sync")
            assert "-X KUBE-SEP-" in ipt.restores[-1]
            async with http.get(f"http://127.0.0.1:{metrics}/metrics") as r:
                text = await r.text()
            assert 'kubeproxy_sync_partial_proxy_rules_duration_seconds_count{ip_family="IPv4"} 1.0' in text
            assert "kubeproxy_sync_proxy_rules_last_timestamp_seconds" in text
            # a service deleted through the API disappears from the rules
            await asyncio.to_thread(core.delete_namespaced_service, "web", "default")
            await _until(lambda: cluster_ip not in ipt.restores[-1], what="service removal")
    finally:
        daemon.stop()
        assert await asyncio.wait_for(task, 10) == 0


def test_dual_stack_node_gets_a_proxier_per_family_primary_first() -> None:
    assert daemon_families(NodeConfig(node_ips=["192.168.0.2"])) == ["IPv4"]
    assert daemon_families(NodeConfig(node_ips=[], family="IPv6")) == ["IPv6"]
    assert daemon_families(NodeConfig(node_ips=["2001:db8::1", "192.168.0.2"])) == ["IPv6", "IPv4"]
    node = NodeConfig(node_name="n", node_ips=["192.168.0.2", "2001:db8::1"],
                      cluster_cidrs=["10.0.0.0/8", "fd00:10::/64"])
    daemon = ProxyDaemon(DaemonOptions(node=node), ipt=FakeIPTables(), conntrack=NoConntrack())
    assert [p.node.family for p in daemon.proxiers] == ["IPv4", "IPv6"]
    assert [p.node.local_cidr for p in daemon.proxiers] == ["10.0.0.0/8", "fd00:10::/64"]
    assert daemon.proxiers[1].service_health is None  # health-check ports served once


async def test_file_daemon_survives_a_malformed_objects_file(tmp_path: Path, caplog) -> None:
    import logging

    import yaml

    caplog.set_level(logging.ERROR)
    objects = tmp_path / "objects.yaml"

    def write(text: str) -> None:
        tmp = tmp_path / "objects.tmp"
        tmp.write_text(text)
        tmp.replace(objects)

    def docs(ip: str) -> str:
        return yaml.safe_dump_all([
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
             "spec": {"clusterIP": "172.30.0.5", "ports": [{"name": "http", "port": 80}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
             "metadata": {"name": "web-1", "namespace": "default",
                          "labels": {"kubernetes.io/service-name": "web"}},
             "endpoints": [{"addresses": [ip]}], "ports": [{"name": "http", "port": 8080}]}])

    write(docs("10.0.0.1"))
    ipt = FakeIPTables()
    opts = DaemonOptions(files=[str(objects)], min_sync_period=0.05, file_poll_interval=0.05,
                         node=NodeConfig(node_name="n1", node_ips=["192.168.0.2"]),
                         healthz_bind_address=f"127.0.0.1:{_free_port()}", metrics_bind_address="")
    daemon = ProxyDaemon(opts, ipt=ipt, conntrack=NoConntrack())
    task = asyncio.create_task(daemon.run(install_signal_handlers=False))
    try:
        await _until(lambda: any("10.0.0.1:8080" in t for t in ipt.restores), what="first sync")
        syncs = len(ipt.restores)
        write("kind: Service\nmetadata: [broken\n")
        await _until(lambda: "not reloading objects" in caplog.text, what="reload error")
        assert str(objects) in caplog.text and "document 1" in caplog.text
        assert len(ipt.restores) == syncs and not task.done()  # rules and daemon untouched
        write(docs("10.0.0.2"))
        await _until(lambda: "10.0.0.2:8080" in ipt.restores[-1], what="sync after the fix")
    finally:
        daemon.stop()
        assert await asyncio.wait_for(task, 10) == 0
