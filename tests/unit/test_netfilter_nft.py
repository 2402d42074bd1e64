# ruff: noqa: E501  (nft prints rules on one line each)
"""The nft parser: `nft list ruleset` output, transactions, malformed input named by line,
jump cycles."""

from __future__ import annotations

import pytest

from svcnet.netfilter.api import Node, trace_text
from svcnet.netfilter.errors import RuleParseError, TraceError
from svcnet.netfilter.nft import Verdict, parse_nft
from svcnet.netfilter.trace import Packet

NODE = Node(["192.168.0.2"])

# What `nft list ruleset` (nftables 1.0.6) printed for a small kube-proxy table.
LISTED = """table ip kube-proxy {
	comment "rules for kube-proxy"
	set cluster-ips {
		type ipv4_addr
		comment "Active ClusterIPs"
		elements = { 172.30.0.41 }
	}

	set nodeport-ips {
		type ipv4_addr
		comment "IPs that accept NodePort traffic"
		elements = { 192.168.0.2 }
	}

	map firewall-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		comment "destinations that are subject to LoadBalancerSourceRanges"
	}

	map no-endpoint-nodeports {
		type inet_proto . inet_service : verdict
		comment "vmap to drop or reject packets to service nodeports with no endpoints"
	}

	map no-endpoint-services {
		type ipv4_addr . inet_proto . inet_service : verdict
		comment "vmap to drop or reject packets to services with no endpoints"
		elements = { 172.30.0.46 . tcp . 80 comment "ns6/svc6:p80" : goto reject-chain }
	}

	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"
		elements = { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
	}

	map service-nodeports {
		type inet_proto . inet_service : verdict
		comment "NodePort traffic"
		elements = { tcp . 3001 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
	}

	set affinity-XXXX {
		type ipv4_addr
		size 65535
		flags dynamic,timeout
		timeout 3h
	}

	chain cluster-ips-check {
		ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"
		ip daddr 172.30.0.0/16 drop comment "Drop traffic to unallocated ClusterIPs"
	}

	chain filter-prerouting-pre-dnat {
		type filter hook prerouting priority dstnat - 10; policy accept;
		ct state new jump firewall-check
	}

	chain filter-output-pre-dnat {
		type filter hook output priority -110; policy accept;
		ct state new jump firewall-check
	}

	chain filter-forward {
		type filter hook forward priority filter; policy accept;
		ct state new jump service-endpoints-check
		ct state new jump cluster-ips-check
	}

	chain filter-input {
		type filter hook input priority filter; policy accept;
		ct state new jump nodeport-endpoints-check
		ct state new jump service-endpoints-check
	}

	chain filter-output {
		type filter hook output priority filter; policy accept;
		ct state new jump service-endpoints-check
		ct state new jump cluster-ips-check
	}

	chain firewall-check {
		ip daddr . meta l4proto . th dport vmap @firewall-ips
	}

	chain mark-for-masquerade {
		meta mark set meta mark | 0x00004000
	}

	chain masquerading {
		meta mark & 0x00004000 == 0x00000000 return
		meta mark set meta mark ^ 0x00004000
		masquerade fully-random
	}

	chain nat-output {
		type nat hook output priority -100; policy accept;
		jump services
	}

	chain nat-postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		jump masquerading
	}

	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		jump services
	}

	chain nodeport-endpoints-check {
		ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports
	}

	chain reject-chain {
		comment "helper for @no-endpoint-services / @no-endpoint-nodeports"
		reject
	}

	chain services {
		ip daddr . meta l4proto . th dport vmap @service-ips
		ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
	}

	chain service-endpoints-check {
		ip daddr . meta l4proto . th dport vmap @no-endpoint-services
	}

	chain service-ULMVA6XW-ns1/svc1/tcp/p80 {
		ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
		numgen random mod 2 vmap { 0 : goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80, 1 : goto endpoint-ZCZBVNAZ-ns1/svc1/tcp/p80__10.180.0.2/80 }
		ip saddr @affinity-XXXX goto endpoint-ZCZBVNAZ-ns1/svc1/tcp/p80__10.180.0.2/80
	}

	chain endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 {
		ip saddr 10.180.0.1 jump mark-for-masquerade
		meta l4proto tcp dnat to 10.180.0.1:80
	}

	chain endpoint-ZCZBVNAZ-ns1/svc1/tcp/p80__10.180.0.2/80 {
		ip saddr 10.180.0.2 jump mark-for-masquerade
		meta l4proto tcp dnat to 10.180.0.2:80
		update @affinity-XXXX { ip saddr }
	}
}
"""


def test_parses_nft_list_ruleset_output():
    rs = parse_nft(LISTED)
    table = rs.tables["ip kube-proxy"]
    assert table.sets["service-ips"].key_types == ["addr", "proto", "port"]
    assert table.sets["service-ips"].exact == {
        ((4, 0xAC1E0029), "tcp", 80): Verdict("goto", "service-ULMVA6XW-ns1/svc1/tcp/p80")
    }
    assert table.sets["no-endpoint-services"].exact[((4, 0xAC1E002E), "tcp", 80)] == Verdict(
        "goto", "reject-chain"
    )
    assert table.sets["affinity-XXXX"].dynamic
    chain = table.chains["filter-prerouting-pre-dnat"]
    assert (chain.chain_type, chain.hook, chain.priority, chain.policy) == (
        "filter",
        "prerouting",
        -110,
        "accept",
    )
    assert table.chains["nat-postrouting"].priority == 100
    rule = table.chains["masquerading"].rules[0]
    assert rule.text == "meta mark & 0x00004000 == 0x00000000 return"
    assert rule.line_no == LISTED.splitlines().index("\t\tmeta mark & 0x00004000 == 0x00000000 return") + 1


def test_traces_nft_list_ruleset_output():
    r = trace_text("nftables", LISTED, Packet("10.180.0.1", "172.30.0.41", 80), NODE)
    assert (r.verdict, r.endpoints, r.masquerade) == ("DNAT", ["10.180.0.1:80", "10.180.0.2:80"], True)
    assert trace_text("nftables", LISTED, Packet("10.0.0.2", "172.30.0.41", 80), NODE).masquerade is False
    assert trace_text("nftables", LISTED, Packet("10.0.0.2", "172.30.0.46", 80), NODE).verdict == "REJECT"
    assert trace_text("nftables", LISTED, Packet("10.0.0.2", "172.30.9.9", 80), NODE).verdict == "DROP"


T = "add table ip t\nadd chain ip t c { type nat hook prerouting priority dstnat ; }\n"


@pytest.mark.parametrize(
    ("text", "line_no", "reason"),
    [
        (T + "add rule ip t c ip daddr 10.0.0.300 drop\n", 3, "bad addr value"),
        (T + "add rule ip t c jump nowhere\n", 3, "chain that does not exist: nowhere"),
        (T + "add rule ip t c ip frobnicate 1 drop\n", 3, "unsupported expression 'ip frobnicate'"),
        (T + "add rule ip t c tcp dport 99999 drop\n", 3, "port out of range"),
        (T + "add rule ip t c ip daddr @missing drop\n", 3, "set missing does not exist"),
        (T + "add rule ip t nochain drop\n", 3, "chain nochain does not exist"),
        (T + "add element ip t nope { 1.2.3.4 }\n", 3, "set nope does not exist"),
        (T + "flush chain ip t nochain\n", 3, "chain nochain does not exist"),
        (T + "add chain ip t a\nadd rule ip t a drop\ndelete chain ip t a\n", 5, "still has rules"),
        # of several rules naming missing chains, the first in the text is reported
        (T + "add chain ip t a\nadd rule ip t a drop\nadd rule ip t x drop\nadd rule ip t y drop\n"
         "add rule ip t x drop\n", 5, "chain x does not exist"),
        (
            T
            + "add map ip t m { type ipv4_addr . inet_service : verdict ; }\nadd element ip t m { 1.2.3.4 : drop }\n",
            4,
            "1 parts",
        ),
        (T + "add rule ip t c numgen random mod 0 vmap { 0 : drop }\n", 3, "modulus"),
        (T + "frobnicate\n", 3, "unknown command"),
        (
            "table ip t {\n  chain c {\n    type nat hook prerouting priority sideways; policy accept;\n  }\n}\n",
            3,
            "unknown priority name",
        ),
        ("table ip t {\n  chain c {\n    ip daddr 1.2.3.4 dnat\n  }\n}\n", 3, "dnat needs"),
    ],
)
def test_malformed_line_is_named(text, line_no, reason):
    with pytest.raises(RuleParseError) as info:
        parse_nft(text)
    assert info.value.line_no == line_no
    assert reason in str(info.value)
    assert info.value.line == text.splitlines()[line_no - 1]


def test_transaction_flush_delete_and_insert():
    text = T + (
        "add chain ip t a\nadd rule ip t c jump a\nadd rule ip t a dnat to 10.0.0.1\n"
        "flush chain ip t a\nadd rule ip t a dnat to 10.0.0.2:81\n"
        "add set ip t s { type ipv4_addr ; }\nadd element ip t s { 10.9.0.1, 10.9.0.2 }\n"
        "delete element ip t s { 10.9.0.1 }\ninsert rule ip t c ip saddr @s drop\n"
    )
    rs = parse_nft(text)
    assert [str(e.verdict) for r in rs.tables["ip t"].chains["a"].rules for e in r.exprs if e.verdict] == []
    assert trace_text("nftables", text, Packet("10.0.0.9", "10.1.1.1", 80), NODE).endpoints == ["10.0.0.2:81"]
    assert trace_text("nftables", text, Packet("10.9.0.2", "10.1.1.1", 80), NODE).verdict == "DROP"
    assert trace_text("nftables", text, Packet("10.9.0.1", "10.1.1.1", 80), NODE).verdict == "DNAT"


def test_jump_cycle_is_reported():
    text = (
        T
        + "add chain ip t a\nadd chain ip t b\nadd rule ip t c jump a\nadd rule ip t a jump b\nadd rule ip t b jump a\n"
    )
    with pytest.raises(TraceError, match="jump cycle in table ip t: a -> b -> a"):
        trace_text("nftables", text, Packet("10.0.0.2", "10.1.1.1", 80), NODE)


def test_sets_ranges_marks_and_numgen_offsets():
    text = T + (
        "add chain ip t post { type nat hook postrouting priority srcnat ; }\n"
        "add set ip t nets { type ipv4_addr ; flags interval ; elements = { 10.1.0.0/16, 10.3.0.1-10.3.0.9 } }\n"
        "add rule ip t c ip saddr @nets meta mark set 0x10\n"
        "add rule ip t c th dport { 80, 8000-8999 } numgen inc mod 4 offset 1 vmap { 1 : goto x, 2 : goto x, 4 : goto y }\n"
        "add chain ip t x\nadd chain ip t y\nadd rule ip t x dnat to 10.2.0.1\nadd rule ip t y dnat to 10.2.0.2\n"
        "add rule ip t post mark and 0x10 != 0 masquerade\n"
    )
    r = trace_text("nftables", text, Packet("10.3.0.5", "10.1.1.1", 8080), NODE)
    assert (r.verdict, r.endpoints, r.masquerade) == ("DNAT", ["10.2.0.1:8080", "10.2.0.2:8080"], True)
    assert [round(p, 6) for p in r.probabilities] == [0.5, 0.25]
    r = trace_text("nftables", text, Packet("10.4.0.5", "10.1.1.1", 8080), NODE)
    assert r.masquerade is False
    assert trace_text("nftables", text, Packet("10.4.0.5", "10.1.1.1", 9000), NODE).verdict == "NONE"


def big_transaction(services: int = 500) -> str:
    """kube-proxy-shaped nft transaction, large enough for the lazy reader."""
    from svcnet.netfilter.nft import LAZY_MIN_LINES

    out = [T, "add map ip t service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }\n"]
    out.append("add rule ip t c ip daddr . meta l4proto . th dport vmap @service-ips\n")
    for i in range(services):
        eps = []
        for e in range(4):
            chain = f"endpoint-{i}-{e}"
            eps.append(chain)
            out.append(
                f"add chain ip t {chain}\nadd rule ip t {chain} meta l4proto tcp dnat to 10.1.{i % 250}.{e}:8080\n"
            )
        vmap = " , ".join(f"{k} : goto {c}" for k, c in enumerate(eps))
        out.append(f"add chain ip t svc-{i}\nadd rule ip t svc-{i} numgen random mod 4 vmap {{ {vmap} }}\n")
        out.append(
            f'add element ip t service-ips {{ 172.30.{i // 250}.{i % 250 + 1} . tcp . 80 comment "s{i}" : goto svc-{i} }}\n'
        )
    text = "".join(out)
    assert text.count("\n") > LAZY_MIN_LINES
    return text


def test_large_rule_sets_are_read_lazily_with_the_same_answers():
    from svcnet.netfilter.nft import LazyNftRule
    from svcnet.netfilter.nft_lazy import load_nft

    text = big_transaction()
    lazy = load_nft(text)
    assert lazy.rule_loader is not None  # the fast reader took it
    table = lazy.tables["ip t"]
    assert not table.sets["service-ips"].exact  # elements not read yet
    assert all(isinstance(r, LazyNftRule) for r in lazy.rules_of(table, table.chains["svc-7"]))
    eager = parse_nft(text, lazy=False)
    assert (
        lazy.tables["ip t"].sets["service-ips"].size()
        == eager.tables["ip t"].sets["service-ips"].size()
        == 500
    )
    for i in (0, 5, 299, 499):
        r = trace_text("nftables", text, Packet("10.0.0.2", f"172.30.{i // 250}.{i % 250 + 1}", 80), NODE)
        assert r.endpoints == [f"10.1.{i % 250}.{e}:8080" for e in range(4)]
        assert [round(p, 6) for p in r.probabilities] == [0.25] * 4
    assert trace_text("nftables", text, Packet("10.0.0.2", "172.30.9.9", 80), NODE).verdict == "NONE"


def test_large_malformed_rule_is_named_when_reached():
    text = big_transaction()
    lines = text.splitlines()
    bad = lines.index("add rule ip t endpoint-5-2 meta l4proto tcp dnat to 10.1.5.2:8080")
    lines[bad] = "add rule ip t endpoint-5-2 meta l4proto tcp dnat to 10.1.5.300:8080"
    with pytest.raises(RuleParseError) as info:
        trace_text("nftables", "\n".join(lines) + "\n", Packet("10.0.0.2", "172.30.0.6", 80), NODE)
    assert info.value.line_no == bad + 1 and "10.1.5.300" in str(info.value)


def test_large_transaction_with_flush_is_read_in_order():
    # flush/delete need the line-by-line reader: the answer must take the flush into account
    text = big_transaction() + (
        "flush chain ip t endpoint-5-2\nadd rule ip t endpoint-5-2 meta l4proto tcp dnat to 10.9.9.9:1\n"
    )
    r = trace_text("nftables", text, Packet("10.0.0.2", "172.30.0.6", 80), NODE)
    assert r.endpoints == ["10.1.5.0:8080", "10.1.5.1:8080", "10.9.9.9:1", "10.1.5.3:8080"]
