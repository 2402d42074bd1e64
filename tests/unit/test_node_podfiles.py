"""The resolv.conf and hosts file kubelet writes for a pod (pkg/kubelet/network/dns)."""

from __future__ import annotations

from svcnet.node.podfiles import hosts_file, pod_hostname, resolv_conf


def pod(ns: str = "default", **spec: object) -> dict:
    return {"metadata": {"name": "web-0", "namespace": ns}, "spec": dict(spec)}


def test_cluster_first() -> None:
    assert resolv_conf(pod("shop"), ["10.96.0.10"]) == (
        "nameserver 10.96.0.10\n"
        "search shop.svc.cluster.local svc.cluster.local cluster.local\n"
        "options ndots:5\n"
    )


def test_host_search_domains_follow_the_cluster_ones() -> None:
    text = resolv_conf(
        pod(), ["10.96.0.10"], host_resolv="nameserver 1.1.1.1\nsearch corp.example cluster.local\n"
    )
    assert "search default.svc.cluster.local svc.cluster.local cluster.local corp.example\n" in text
    assert "1.1.1.1" not in text


def test_default_policy_and_host_network_use_the_node_file() -> None:
    host = "nameserver 1.1.1.1\nsearch corp.example\noptions timeout:2\n"
    for p in (pod(dnsPolicy="Default"), pod(hostNetwork=True)):
        assert (
            resolv_conf(p, ["10.96.0.10"], host_resolv=host)
            == "nameserver 1.1.1.1\nsearch corp.example\noptions timeout:2\n"
        )


def test_no_cluster_dns_falls_back_to_default() -> None:
    assert resolv_conf(pod(), [], host_resolv="nameserver 9.9.9.9\n") == "nameserver 9.9.9.9\n"


def test_none_with_dns_config_and_option_override() -> None:
    p = pod(
        dnsPolicy="None",
        dnsConfig={
            "nameservers": ["1.2.3.4"],
            "searches": ["a.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
        },
    )
    assert resolv_conf(p, ["10.96.0.10"]) == "nameserver 1.2.3.4\nsearch a.example\noptions ndots:2 edns0\n"
    p = pod(dnsConfig={"options": [{"name": "ndots", "value": "1"}]})
    assert resolv_conf(p, ["10.96.0.10"]).endswith("options ndots:1\n")


def test_at_most_three_nameservers() -> None:
    p = pod(dnsConfig={"nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3"]})
    assert resolv_conf(p, ["10.96.0.10"]).count("nameserver") == 3


def test_hostname_and_subdomain() -> None:
    p = pod(hostname="mysql-0", subdomain="mysql-headless")
    assert pod_hostname(p) == ("mysql-0", "mysql-0.mysql-headless.default.svc.cluster.local")
    assert "10.244.1.5\tmysql-0.mysql-headless.default.svc.cluster.local\tmysql-0\n" in hosts_file(
        p, ["10.244.1.5"]
    )
    assert "10.244.1.5\tweb-0\n" in hosts_file(pod(), ["10.244.1.5"])
    # The node's --cluster-domain, not a fixed cluster.local.
    assert pod_hostname(p, "corp.internal")[1] == "mysql-0.mysql-headless.default.svc.corp.internal"
    assert "\tmysql-0.mysql-headless.default.svc.corp.internal\tmysql-0\n" in hosts_file(
        p, ["10.244.1.5"], "corp.internal"
    )
