"""The load-balancer IP controller in a server started with `--lb-pool`: addresses from the
pool in status.loadBalancer.ingress, pending with an AllocationFailed Event when the pool is
exhausted, released on delete and type change, other loadBalancerClasses left alone."""

from __future__ import annotations

from test_controllers import eventually

from svcnet.apiserver.launcher import start_api_server
from svcnet.client.api import ApiClient


def lb(name: str, **spec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], **spec},
    }


async def ingress(api: ApiClient, name: str) -> list[str]:
    svc = await api.get("services", name, "default")
    return [i["ip"] for i in (svc.get("status", {}).get("loadBalancer", {}).get("ingress") or [])]


async def test_pool_assignment_exhaustion_and_release(tmp_path) -> None:
    # 192.0.2.0/30 has two usable addresses: .1 and .2
    server = start_api_server(tmp_path / "data", extra_args=["--lb-pool", "192.0.2.0/30"])
    try:
        async with ApiClient.from_kubeconfig(str(server.kubeconfig_path)) as api:
            await api.create("services", lb("a"), "default")
            assert await eventually(lambda: ingress(api, "a")) == ["192.0.2.1"]
            await api.create("services", lb("b"), "default")
            assert await eventually(lambda: ingress(api, "b")) == ["192.0.2.2"]
            svc_b = await api.get("services", "b", "default")
            assert svc_b["status"]["loadBalancer"]["ingress"] == [{"ip": "192.0.2.2", "ipMode": "VIP"}]

            await api.create("services", lb("c"), "default")
            await api.create("services", lb("other", loadBalancerClass="example.com/metal"), "default")

            async def failed():
                events = (await api.list("events", "default", field_selector="involvedObject.name=c"))[
                    "items"
                ]
                return [e for e in events if e["reason"] == "AllocationFailed"]

            event = (await eventually(failed))[0]
            assert event["type"] == "Warning" and "no available IPs" in event["message"]
            assert await ingress(api, "c") == []  # kubectl shows <pending>

            # b stops being a LoadBalancer: its address is released and c gets it.
            svc_b["spec"]["type"] = "ClusterIP"
            for key in ("allocateLoadBalancerNodePorts", "externalTrafficPolicy"):
                svc_b["spec"].pop(key, None)
            for port in svc_b["spec"]["ports"]:
                port.pop("nodePort", None)
            changed = await api.update("services", svc_b, "default")
            assert not changed.get("status", {}).get("loadBalancer", {}).get("ingress")
            assert await eventually(lambda: ingress(api, "c")) == ["192.0.2.2"]

            # a is deleted: a new Service gets its address.
            await api.delete("services", "a", "default")
            await api.create("services", lb("d"), "default")
            assert await eventually(lambda: ingress(api, "d")) == ["192.0.2.1"]
            # Another class's Service was never touched.
            assert await ingress(api, "other") == []
    finally:
        server.stop()
