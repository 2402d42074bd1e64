"""A container's environment as kubelet builds it: service links, downward API, $(VAR)."""

from __future__ import annotations

from svcnet.node.envvars import container_env, expand, service_env


def svc(name: str, ns: str, ip: str, ports: list[dict]) -> dict:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip, "ports": ports}}


SERVICES = [
    svc(
        "backend-svc",
        "default",
        "10.96.5.5",
        [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}],
    ),
    svc("kubernetes", "default", "10.96.0.1", [{"name": "https", "port": 443, "protocol": "TCP"}]),
    svc("other", "shop", "10.96.9.9", [{"port": 8080}]),
    svc("headless", "default", "None", [{"port": 1}]),
]


def test_service_links_of_the_namespace() -> None:
    env = service_env(SERVICES, "default")
    assert env["BACKEND_SVC_SERVICE_HOST"] == "10.96.5.5"
    assert env["BACKEND_SVC_SERVICE_PORT"] == "80"
    assert env["BACKEND_SVC_SERVICE_PORT_HTTP"] == "80"
    assert env["BACKEND_SVC_SERVICE_PORT_DNS"] == "53"
    assert env["BACKEND_SVC_PORT"] == "tcp://10.96.5.5:80"
    assert env["BACKEND_SVC_PORT_53_UDP"] == "udp://10.96.5.5:53"
    assert env["BACKEND_SVC_PORT_53_UDP_PROTO"] == "udp"
    assert env["BACKEND_SVC_PORT_53_UDP_ADDR"] == "10.96.5.5"
    assert "OTHER_SERVICE_HOST" not in env and "HEADLESS_SERVICE_HOST" not in env


def test_master_service_everywhere_and_links_can_be_disabled() -> None:
    env = service_env(SERVICES, "shop", enable_links=False)
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert "OTHER_SERVICE_HOST" not in env
    assert service_env(SERVICES, "shop")["OTHER_SERVICE_HOST"] == "10.96.9.9"


def test_expand() -> None:
    env = {"A": "x"}
    assert expand("$(A)-$(B)-$$(A)", env) == "x-$(B)-$(A)"


def test_container_env_downward_api_and_order() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"nodeName": "node-1"},
    }
    ctr = {
        "env": [
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "URL", "value": "http://$(BACKEND_SVC_SERVICE_HOST):$(BACKEND_SVC_SERVICE_PORT)/$(NS)"},
            {"name": "MYIP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ]
    }
    env = container_env(pod, ctr, SERVICES, "172.30.0.11", ["10.244.1.2"], "node-1")
    assert env["NS"] == "default" and env["APP"] == "web"
    assert env["URL"] == "http://10.96.5.5:80/default"
    assert env["MYIP"] == env["POD_IP"] == "10.244.1.2"
    assert env["NODE_NAME"] == "node-1" and env["POD_NAME"] == "p"


def test_hostname_is_the_pods_hostname() -> None:
    # spec.hostname wins over the name; cut to 63 characters without a trailing '-' or '.',
    # exactly the name the pod's UTS namespace gets (podfiles.pod_hostname).
    pod = {"metadata": {"name": "p", "namespace": "default"}, "spec": {"hostname": "h" * 62 + "-x"}}
    env = container_env(pod, {}, [], "172.30.0.11", ["10.244.1.2"], "node-1")
    assert env["HOSTNAME"] == "h" * 62
    pod = {"metadata": {"name": "web-0", "namespace": "default"}, "spec": {}}
    assert container_env(pod, {}, [], "172.30.0.11", [], "node-1")["HOSTNAME"] == "web-0"
