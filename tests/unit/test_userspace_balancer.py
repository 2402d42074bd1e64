"""Session affinity, passive health and draining bookkeeping; REDIRECT rule rendering; weights."""

from __future__ import annotations

import subprocess

import pytest

from svcnet.proxy.userspace.balancer import Balancer, PortBackends, connect_failed, connect_ok
from svcnet.proxy.userspace.proxier import parse_weights
from svcnet.proxy.userspace.redirect import RedirectEntry, render_iptables, render_nft
from svcnet.proxy.userspace.schedulers import Backend, PickContext, make_scheduler


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(n: int = 4, scheduler: str = "rr", affinity: float = 0.0) -> tuple[Balancer, list[Backend], Clock]:
    clock = Clock()
    bal = Balancer("ns/svc:http", make_scheduler(scheduler), affinity_timeout=affinity, clock=clock)
    bes = [Backend(f"10.0.0.{i + 1}", 80) for i in range(n)]
    bal.set_backends(bes)
    return bal, bes, clock


def test_client_ip_affinity_is_sticky_within_its_timeout_then_rescheduled():
    bal, _, clock = make(affinity=10800)
    client = PickContext("192.168.1.7", 40000)
    first = bal.choose(client)
    for i in range(20):  # rr would rotate; affinity keeps the client on its endpoint
        clock.now += 100
        assert bal.choose(PickContext("192.168.1.7", 40001 + i)) is first
        bal.choose(PickContext(f"192.168.2.{i}", 1))  # other clients move rr along
    clock.now += 10800  # no connection for a whole timeout: the entry has expired
    assert bal.choose(client) is not first


def test_affinity_entry_refreshes_on_use_and_expiry_sweeps_old_entries():
    bal, _, clock = make(affinity=10)
    first = bal.choose(PickContext("192.168.1.7"))
    for _ in range(5):
        clock.now += 9  # each use within the timeout refreshes it
        assert bal.choose(PickContext("192.168.1.7")) is first
    bal.choose(PickContext("192.168.1.8"))
    clock.now += 10
    assert bal.expire_affinity() == 2 and not bal.affinity


def test_affinity_moves_when_its_endpoint_is_removed_or_fails():
    bal, bes, clock = make(affinity=100)
    first = bal.choose(PickContext("192.168.1.7"))
    bal.set_backends([b for b in bes if b is not first])
    second = bal.choose(PickContext("192.168.1.7"))
    assert second is not first
    connect_failed(second, clock)
    third = bal.choose(PickContext("192.168.1.7"), tried=[second])
    assert third not in (first, second)
    assert bal.choose(PickContext("192.168.1.7")) is third


def test_passive_health_backs_off_exponentially_and_recovers():
    bal, bes, clock = make(2)
    bad = bes[0]
    assert connect_failed(bad, clock) == 1.0
    assert all(bal.choose(PickContext()) is bes[1] for _ in range(4))
    clock.now += 1.0
    assert connect_failed(bad, clock) == 2.0 and connect_failed(bad, clock) == 4.0
    assert bad.retries == 3
    for _ in range(10):
        connect_failed(bad, clock)
    assert bad.down_until - clock.now == 30.0  # capped
    connect_ok(bad)
    assert {bal.choose(PickContext()).key for _ in range(4)} == {b.key for b in bes}


def test_all_marked_down_are_still_tried_and_tried_ones_are_skipped():
    bal, bes, clock = make(2)
    for b in bes:
        connect_failed(b, clock)
    assert bal.choose(PickContext()) is not None
    assert bal.choose(PickContext(), tried=bes) is None


def test_choices_are_counted():
    bal, bes, _ = make()
    for _ in range(8):
        bal.choose(PickContext())
    assert [b.choices for b in bes] == [2, 2, 2, 2]


def test_pool_keeps_endpoints_with_open_connections_draining():
    pool = PortBackends()
    a, b = pool.get("10.0.0.1", 80, 1), pool.get("10.0.0.2", 80, 1)
    pool.replace([a, b])
    pool.add_conn(a, "conn-1")
    assert pool.replace([b]) == [a]  # b had nothing open: just gone when removed later
    assert a.key in pool.draining
    pool.remove_conn(a, "conn-1")
    assert a.key not in pool.draining and pool.all() == [b]
    # an endpoint that comes back while draining is the same object, counters and all
    pool.add_conn(b, "conn-2")
    b.connections = 7
    pool.replace([])
    again = pool.get("10.0.0.2", 80, 3)
    assert again is b and again.weight == 3 and b.key not in pool.draining


def test_parse_weights():
    assert parse_weights("10.0.0.1=3, web-0 = 2,,bad,x=-1,y=z") == {"10.0.0.1": 3, "web-0": 2}


ENTRIES = [RedirectEntry("10.96.0.10", 80, "tcp", 40001, "default/web:http"),
           RedirectEntry("10.96.0.10", 53, "udp", 40002, "default/dns:dns"),
           RedirectEntry("fd00::10", 80, "tcp", 40003, "default/web6:http")]


def test_render_iptables_redirects_in_both_portal_chains():
    text = render_iptables(ENTRIES)
    assert text.splitlines() == [
        "*nat", ":KUBE-PORTALS-CONTAINER - [0:0]", ":KUBE-PORTALS-HOST - [0:0]",
        '-A KUBE-PORTALS-CONTAINER -m comment --comment "default/dns:dns" -p udp -m udp -d 10.96.0.10/32 '
        "--dport 53 -j REDIRECT --to-ports 40002",
        '-A KUBE-PORTALS-CONTAINER -m comment --comment "default/web:http" -p tcp -m tcp -d 10.96.0.10/32 '
        "--dport 80 -j REDIRECT --to-ports 40001",
        '-A KUBE-PORTALS-HOST -m comment --comment "default/dns:dns" -p udp -m udp -d 10.96.0.10/32 '
        "--dport 53 -j REDIRECT --to-ports 40002",
        '-A KUBE-PORTALS-HOST -m comment --comment "default/web:http" -p tcp -m tcp -d 10.96.0.10/32 '
        "--dport 80 -j REDIRECT --to-ports 40001",
        "COMMIT"]
    assert "fd00::10/128" in render_iptables(ENTRIES, ipv6=True)


def test_render_nft_replaces_its_own_table():
    text = render_nft(ENTRIES)
    assert text.startswith("add table ip svcnet-userspace\ndelete table ip svcnet-userspace\n")
    assert 'ip daddr 10.96.0.10 tcp dport 80 redirect to :40001 comment "default/web:http"' in text
    assert "fd00::10" not in text
    assert text.count("type nat hook") == 2
    # every rule in both chains (traffic arriving at the node, and traffic the node sends)
    assert text.count("tcp dport 80 redirect to :40001") == 2
    assert text.count("udp dport 53 redirect to :40002") == 2
    v6 = render_nft(ENTRIES, ipv6=True)
    assert v6.count('ip6 daddr fd00::10 tcp dport 80 redirect to :40003 comment "default/web6:http"') == 2
    assert "10.96.0.10" not in v6


def test_rendered_rules_are_accepted_by_nft_check():
    """`nft -c` parses and checks the ruleset without applying it (needs root for netlink)."""
    try:
        res = subprocess.run(["nft", "-c", "-f", "-"], input=render_nft(ENTRIES), capture_output=True,
                             text=True, timeout=10)
    except FileNotFoundError:
        pytest.skip("nft is not installed")
    if res.returncode != 0 and "Operation not permitted" in res.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN")
    assert res.returncode == 0, res.stderr


def test_each_draining_period_counts_separately():
    pool = PortBackends()
    a = pool.get("10.0.0.1", 80, 1)
    pool.replace([a])
    pool.add_conn(a, "c")
    pool.replace([])
    first = pool.drain_epoch[a.key]
    pool.replace([pool.get("10.0.0.1", 80, 1)])  # back while its connection is still open
    assert a.key not in pool.draining
    pool.replace([])
    assert pool.drain_epoch[a.key] == first + 1  # a timer armed for the first period is stale
