"""Incremental nftables syncs: after the first (full) transaction only what changed is sent,
the kernel-side table (an in-memory nft stand-in that enforces nft's ordering rules) always
ends up as a fresh full sync would leave it, stale chains are flushed then deleted after the
delay, and a refused transaction changes nothing and is followed by a full resync."""

from __future__ import annotations

import logging
import random

import pytest

from svcnet.proxy.apply.nft import FakeNft, NftError
from svcnet.proxy.config import NodeConfig
from svcnet.proxy.healthcheck import ProxierHealth
from svcnet.proxy.metrics import ProxyMetrics
from svcnet.proxy.nftables import STALE_CHAIN_DELAY, NftablesSyncer, is_service_chain_name
from svcnet.proxy.nftables_proxier import NftablesProxier
from svcnet.proxy.state import ProxyState

NODE = dict(node_name="test-node", node_ips=["192.168.0.2"], cluster_cidrs=["10.0.0.0/8"],
            service_cidrs=["172.30.0.0/16"], short_masquerade_mark=True)


def service(i: int, affinity: bool = False, node_port: int = 0) -> dict:
    port: dict = {"name": "p80", "port": 80, "protocol": "TCP"}
    if node_port:
        port["nodePort"] = node_port
    spec: dict = {"type": "NodePort" if node_port else "ClusterIP",
                  "clusterIP": f"172.30.{i // 250}.{i % 250 + 1}", "ports": [port]}
    if affinity:
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 60}}
    return {"kind": "Service", "metadata": {"namespace": "ns", "name": f"svc{i}"}, "spec": spec}


def endpoint_slice(i: int, *ips: str) -> dict:
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"namespace": "ns", "name": f"svc{i}-1",
                         "labels": {"kubernetes.io/service-name": f"svc{i}"}},
            "endpoints": [{"addresses": [ip]} for ip in ips],
            "ports": [{"name": "p80", "port": 80, "protocol": "TCP"}]}


def ep_ip(i: int, k: int) -> str:
    return f"10.{1 + i // 250}.{i % 250}.{k + 1}"


class Harness:
    def __init__(self) -> None:
        self.node = NodeConfig(**NODE)
        self.state = ProxyState(self.node.family, self.node.node_name)
        self.syncer = NftablesSyncer(self.node)
        self.nft = FakeNft("ip")
        self.now = 0.0
        self.pass_ports = True

    def sync(self, full: bool = False) -> str:
        changes = self.state.take_changes()
        # the proxier hands over the changed ports; without them the syncer finds them itself
        plan = self.syncer.plan(self.state.svc_port_map, self.state.endpoints_map,
                                changed=None if full else changes.updated_services, now=self.now,
                                changed_ports=changes.updated_ports if self.pass_ports else None)
        self.nft.run(plan.text)
        self.syncer.commit(plan)
        return plan.text

    def fresh_full_dump(self) -> str:
        """What a brand-new proxy would leave in the kernel for the same objects."""
        fresh = FakeNft("ip")
        fresh.run(NftablesSyncer(self.node).plan(self.state.svc_port_map, self.state.endpoints_map).text)
        return fresh.dump()


def without_stale(dump: str, stale: set[str]) -> str:
    return "\n".join(line for line in dump.splitlines()
                     if not any(line == f"add chain ip kube-proxy {c}" for c in stale)) + "\n"


def test_one_endpoint_added_among_1000_services_sends_a_few_lines() -> None:
    h = Harness()
    for i in range(1000):
        h.state.on_service(service(i))
        h.state.on_endpoint_slice(endpoint_slice(i, ep_ip(i, 0)))
    first = h.sync()
    assert first.count("\n") > 5000  # the first sync is the whole table
    h.state.on_endpoint_slice(endpoint_slice(500, ep_ip(500, 0), ep_ip(500, 1)))
    tx = h.sync()
    lines = tx.splitlines()
    assert 0 < len(lines) <= 10, tx
    # only svc500's new endpoint chain and its service chain (with the two-way numgen vmap)
    assert all("ns/svc500/" in line for line in lines), tx
    assert any("numgen random mod 2 vmap" in line for line in lines)
    assert any(f"dnat to {ep_ip(500, 1)}:80" in line for line in lines)
    assert not any("flush map" in line or "flush set" in line for line in lines)
    assert h.nft.dump() == h.fresh_full_dump()


def test_no_change_sends_nothing() -> None:
    h = Harness()
    h.state.on_service(service(1))
    h.state.on_endpoint_slice(endpoint_slice(1, ep_ip(1, 0)))
    h.sync()
    assert h.sync() == ""


def test_random_changes_keep_the_table_equal_to_a_full_sync() -> None:
    rng = random.Random(7)
    h = Harness()
    live: dict[int, list[str]] = {}
    for step in range(60):
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(40)
            action = rng.random()
            if action < 0.2 and i in live:
                h.state.on_service(service(i), deleted=True)
                live.pop(i)
            elif action < 0.35:
                h.state.on_service(service(i, affinity=rng.random() < 0.5,
                                           node_port=30000 + i if rng.random() < 0.3 else 0))
                live.setdefault(i, [])
            else:
                eps = [ep_ip(i, k) for k in rng.sample(range(6), rng.randint(0, 3))]
                if i not in live:
                    h.state.on_service(service(i))
                live[i] = eps
                h.state.on_endpoint_slice(endpoint_slice(i, *eps))
        h.now = step * 0.5
        h.pass_ports = step % 2 == 0
        h.sync()  # FakeNft refuses anything out of order (a goto before its chain, a busy delete)
        stale = set(h.syncer.stale_chains)
        assert without_stale(h.nft.dump(), stale) == h.fresh_full_dump(), f"step {step}"
        for chain in stale:
            assert h.nft.table.chains[chain][1] == [], "stale chains are flushed at once"
        # the index partial syncs keep of the ports per service is the mirror's, and no larger
        by_service: dict = {}
        for spn in h.syncer.outputs:
            by_service.setdefault(spn.service, set()).add(spn)
        assert h.syncer.by_service == by_service, f"step {step}"


def test_stale_chains_are_deleted_after_the_delay() -> None:
    h = Harness()
    h.state.on_service(service(1))
    h.state.on_endpoint_slice(endpoint_slice(1, ep_ip(1, 0), ep_ip(1, 1)))
    h.sync()
    h.state.on_endpoint_slice(endpoint_slice(1, ep_ip(1, 0)))
    tx = h.sync()
    gone = [c for c in h.syncer.stale_chains]
    assert len(gone) == 1 and ep_ip(1, 1) in gone[0]
    assert f"flush chain ip kube-proxy {gone[0]}" in tx
    assert gone[0] in h.nft.table.chains  # still there, empty
    h.now += STALE_CHAIN_DELAY / 2
    assert "delete chain" not in h.sync()
    h.now += STALE_CHAIN_DELAY
    assert h.sync() == f"delete chain ip kube-proxy {gone[0]}\n"
    assert gone[0] not in h.nft.table.chains
    assert not any(is_service_chain_name(c) and c not in h.syncer.chains for c in h.nft.table.chains)


def test_removed_affinity_sets_are_deleted_at_once() -> None:
    h = Harness()
    h.state.on_service(service(1, affinity=True))
    h.state.on_endpoint_slice(endpoint_slice(1, ep_ip(1, 0)))
    h.sync()
    assert any(s.startswith("affinity-") for s in h.nft.table.sets)
    h.state.on_service(service(1))
    tx = h.sync()
    assert "delete set ip kube-proxy affinity-" in tx
    assert not any(s.startswith("affinity-") for s in h.nft.table.sets)


async def test_refused_transaction_changes_nothing_and_is_followed_by_a_full_resync(caplog) -> None:
    nft = FakeNft("ip")
    px = NftablesProxier(NodeConfig(**NODE), nft, ProxyMetrics(), ProxierHealth(60), sync_period=0.01)
    retries: list[float] = []
    px.retry = retries.append
    st = px.state
    st.services_synced = st.slices_synced = True
    st.on_service(service(1))
    st.on_endpoint_slice(endpoint_slice(1, ep_ip(1, 0)))
    await px.sync()
    before = nft.dump()
    st.on_endpoint_slice(endpoint_slice(1, ep_ip(1, 0), ep_ip(1, 1)))
    nft.fail_next = "Error: Could not process rule: No such file or directory"
    with caplog.at_level(logging.ERROR, logger="svcnet.proxy"):
        await px.sync()
    assert nft.dump() == before  # atomic: nothing changed
    assert "Could not process rule: No such file or directory" in caplog.text
    assert retries == [0.01] and px.need_full_sync
    await px.sync()  # the retry
    assert px.last_sync_full
    assert px.last_transaction.startswith("add table ip kube-proxy")
    assert f"dnat to {ep_ip(1, 1)}:80" in px.last_transaction
    assert nft.dump().count("dnat to") == 2


def test_an_unusable_service_is_skipped_and_the_rest_synced(caplog) -> None:
    h = Harness()
    bad = service(2)
    bad["spec"]["clusterIP"] = "not-an-ip"
    bad_port = service(3)
    bad_port["spec"]["ports"][0]["protocol"] = "ICMP"
    for obj in (service(1), bad, bad_port):
        h.state.on_service(obj)
    h.state.on_endpoint_slice(endpoint_slice(1, ep_ip(1, 0)))
    with caplog.at_level(logging.WARNING, logger="svcnet.proxy"):
        tx = h.sync()
    assert "ns/svc2" in caplog.text and "ns/svc3" in caplog.text
    assert "172.30.0.2 . tcp . 80" in tx
    assert "not-an-ip" not in tx and "ns/svc3/" not in tx


async def test_full_resync_after_a_failure_cleans_up_what_the_kernel_still_holds(monkeypatch) -> None:
    monkeypatch.setattr("svcnet.proxy.nftables.STALE_CHAIN_DELAY", 0.0)
    nft = FakeNft("ip")
    px = NftablesProxier(NodeConfig(**NODE), nft, ProxyMetrics(), ProxierHealth(60))
    px.retry = lambda _delay: None
    st = px.state
    st.services_synced = st.slices_synced = True
    for i in (1, 2):
        st.on_service(service(i, affinity=True))
        st.on_endpoint_slice(endpoint_slice(i, ep_ip(i, 0), ep_ip(i, 1)))
    await px.sync()
    st.on_service(service(1), deleted=True)  # its chains must go, but this transaction fails
    nft.fail_next = "Error: Could not process rule: Device or resource busy"
    await px.sync()
    assert any("ns/svc1/" in c for c in nft.table.chains)
    await px.sync()  # full: reads what the kernel holds, flushes svc1's chains, deletes its sets
    assert px.last_sync_full
    assert not any("ns/svc1/" in s for s in nft.table.sets)
    assert all(nft.table.chains[c][1] == [] for c in nft.table.chains if "ns/svc1/" in c)
    await px.sync()  # the stale chains' delay has passed: deleted
    assert not any("ns/svc1/" in c for c in nft.table.chains)
    assert any("ns/svc2/" in c for c in nft.table.chains)


def test_incremental_transactions_avoid_statements_that_make_nft_read_the_whole_table() -> None:
    """`add rule` and `add element` make nft 1.0.x dump every chain and set of the table before
    it evaluates them (70-90 ms at 10k services); the incremental forms need only the table."""
    h = Harness()
    for i in range(20):
        h.state.on_service(service(i))
        h.state.on_endpoint_slice(endpoint_slice(i, ep_ip(i, 0)))
    first = h.sync()
    assert "add rule " in first and "add element " in first  # the first sync is upstream's text
    h.state.on_endpoint_slice(endpoint_slice(3, ep_ip(3, 0), ep_ip(3, 1)))
    tx = h.sync()
    assert "add rule " not in tx and "add element " not in tx, tx
    assert f"dnat to {ep_ip(3, 1)}:80 ; }}" in tx  # the endpoint chain's rules as a block
    assert h.nft.dump() == h.fresh_full_dump()
    for i in (20, 21):  # two new services: their elements in one statement per container
        h.state.on_service(service(i, node_port=30000 + i))
        h.state.on_endpoint_slice(endpoint_slice(i, ep_ip(i, 0)))
    tx = h.sync()
    assert "add rule " not in tx and "add element " not in tx, tx
    adds = [line for line in tx.splitlines() if line.startswith("add map ip kube-proxy service-ips ")]
    assert len(adds) == 1 and "elements = { " in adds[0] and adds[0].count(" : goto service-") == 2, tx
    assert h.nft.dump() == h.fresh_full_dump()
    h.state.on_service(service(21), deleted=True)  # deletions keep `delete element`
    tx = h.sync()
    assert "delete element ip kube-proxy service-ips {" in tx, tx
    assert without_stale(h.nft.dump(), set(h.syncer.stale_chains)) == h.fresh_full_dump()


def test_an_element_added_then_taken_back_in_one_transaction_is_never_sent() -> None:
    from svcnet.proxy.nftables import FamilyWords, Tx, container_specs

    words = FamilyWords.of(NodeConfig(**NODE))
    tx = Tx("ip", incremental=True, specs=container_specs(words))
    tx.add_element("cluster-ips", "172.30.0.9", "", None)
    tx.delete_element("cluster-ips", "172.30.0.9")
    tx.delete_element("cluster-ips", "172.30.0.8")
    assert tx.text() == "delete element ip kube-proxy cluster-ips { 172.30.0.8 }\n"


def test_the_stand_in_reads_chain_and_set_blocks_as_nft_does() -> None:
    nft = FakeNft("ip")
    nft.run("add table ip kube-proxy\n"
            "add chain ip kube-proxy a\n"
            'add chain ip kube-proxy b { ip saddr 10.0.0.1 jump a ; counter comment "x ; y" ; }\n'
            'add map ip kube-proxy m { type ipv4_addr : verdict ; comment "c" ; '
            'elements = { 10.0.0.1 comment "k" : goto b , 10.0.0.2 : jump a } ; }\n')
    assert nft.table is not None
    assert nft.table.chains["b"][1] == ["ip saddr 10.0.0.1 jump a", 'counter comment "x ; y"']
    assert nft.table.sets["m"].spec == '{ type ipv4_addr : verdict ; comment "c" ; }'
    assert nft.table.sets["m"].elements == {"10.0.0.1": ' comment "k" : goto b', "10.0.0.2": " : jump a"}
    before = nft.dump()
    for bad in ("add chain ip kube-proxy c { jump nowhere ; }\n",  # a rule naming a missing chain
                "add map ip kube-proxy m { type ipv4_addr : verdict ; elements = { 10.0.0.3 : goto x } ; }\n",
                "add map ip kube-proxy m { type ipv4_addr : verdict ; flags interval ; }\n"):
        with pytest.raises(NftError):
            nft.run(bad)
        assert nft.dump() == before  # refused whole


def test_no_local_endpoint_counts_follow_partial_syncs() -> None:
    h = Harness()

    def local_service(i: int) -> dict:
        svc = service(i, node_port=30000 + i)
        svc["spec"].update(internalTrafficPolicy="Local", externalTrafficPolicy="Local")
        return svc

    def fresh_counts() -> tuple[int, int]:
        plan = NftablesSyncer(h.node).plan(h.state.svc_port_map, h.state.endpoints_map)
        return plan.no_local_internal, plan.no_local_external

    for i in range(3):
        h.state.on_service(local_service(i))
        h.state.on_endpoint_slice(endpoint_slice(i, ep_ip(i, 0)))  # on another node
    h.sync()
    assert (h.syncer.no_local_internal, h.syncer.no_local_external) == (3, 3)
    local = endpoint_slice(1, ep_ip(1, 0))
    local["endpoints"][0]["nodeName"] = "test-node"
    h.state.on_endpoint_slice(local)
    h.sync()
    assert (h.syncer.no_local_internal, h.syncer.no_local_external) == (2, 2) == fresh_counts()
    h.state.on_service(local_service(2), deleted=True)
    h.sync()
    assert (h.syncer.no_local_internal, h.syncer.no_local_external) == (1, 1) == fresh_counts()
