# ruff: noqa: E501  (rule lines are kept whole)
"""Mutated rule sets never crash the parsers or the tracer: every outcome is an answer, a
RuleParseError naming a line, or a TraceError."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svcnet.netfilter.api import Node, trace_text
from svcnet.netfilter.errors import RuleParseError, TraceError
from svcnet.netfilter.trace import Packet

IPTABLES = """*filter
:KUBE-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
-A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SEP-A - [0:0]
:KUBE-SEP-B - [0:0]
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-A
-A KUBE-SVC-A -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-A -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-A
-A KUBE-SVC-A -m recent --name KUBE-SEP-B --rcheck --seconds 10800 --reap -j KUBE-SEP-B
-A KUBE-SVC-A -j KUBE-SEP-B
-A KUBE-SEP-A -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-A -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-B -m recent --name KUBE-SEP-B --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -m multiport --dports 30000:30100 -j KUBE-SVC-A
COMMIT
"""

NFT = """table ip t {
\tset s {
\t\ttype ipv4_addr
\t\tflags interval
\t\telements = { 10.1.0.0/16, 10.2.0.1-10.2.0.9 }
\t}
\tmap m {
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\telements = { 172.30.0.41 . tcp . 80 comment "x" : goto svc }
\t}
\tchain pre {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tip daddr . meta l4proto . th dport vmap @m
\t}
\tchain svc {
\t\tip saddr != @s mark set mark or 0x4000
\t\tnumgen random mod 2 vmap { 0 : goto a, 1 : goto b }
\t}
\tchain a {
\t\tmeta l4proto tcp dnat to 10.180.0.1:80
\t}
\tchain b {
\t\tfib saddr type local jump a
\t\tmeta l4proto tcp dnat to 10.180.0.2:80
\t}
\tchain post {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tmark and 0x4000 == 0 return
\t\tmasquerade fully-random
\t}
}
"""

WORDS = [
    "!",
    "{",
    "}",
    ":",
    ".",
    ",",
    "@",
    "vmap",
    "goto",
    "jump",
    '"',
    "/",
    "-",
    "99999",
    "tcp",
    "::",
    ";",
    "-j",
    "-m",
    "--dport",
    "-A",
    "COMMIT",
    "*nat",
    "0x",
    "[0:0]",
    "comment",
    "\n",
    "\t",
    "mod",
    "#",
]


def mutate(text: str, seed: int) -> str:
    rnd = random.Random(seed)
    lines = text.split("\n")
    for _ in range(rnd.randint(1, 3)):
        i = rnd.randrange(len(lines))
        line = lines[i]
        roll = rnd.random()
        if roll < 0.35 and line:
            at = rnd.randrange(len(line))
            lines[i] = line[:at] + line[at + rnd.randint(1, 6) :]
        elif roll < 0.75:
            at = rnd.randrange(len(line) + 1)
            lines[i] = line[:at] + rnd.choice(WORDS) + line[at:]
        elif roll < 0.9:
            words = line.split(" ")
            rnd.shuffle(words)
            lines[i] = " ".join(words)
        else:
            lines.insert(i, lines[rnd.randrange(len(lines))])
    return "\n".join(lines)


PACKETS = [
    Packet("10.0.0.2", "172.30.0.41", 80),
    Packet("10.180.0.1", "172.30.0.41", 80),
    Packet("203.0.113.2", "192.168.0.2", 30050),
    Packet("192.168.0.2", "172.30.0.46", 80),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["iptables", "nftables"]), st.integers(min_value=0, max_value=2**32))
def test_mutated_rule_sets_get_an_answer_or_a_named_error(mode, seed):
    text = mutate(IPTABLES if mode == "iptables" else NFT, seed)
    for packet in PACKETS:
        try:
            result = trace_text(mode, text, packet, Node(["192.168.0.2"]))
        except RuleParseError as exc:
            assert exc.line_no >= 0 and f"line {exc.line_no}" in str(exc)
            return
        except TraceError:
            return
        assert result.verdict in ("DNAT", "ACCEPT", "DROP", "REJECT", "NONE")


def test_the_unmutated_rule_sets_trace():
    r = trace_text("iptables", IPTABLES, PACKETS[0], Node(["192.168.0.2"]))
    assert (r.verdict, r.endpoints) == ("DNAT", ["10.180.0.1:80", "10.180.0.2:80"])
    r = trace_text("nftables", NFT, PACKETS[0], Node(["192.168.0.2"]))
    assert (r.verdict, r.endpoints, r.masquerade) == ("DNAT", ["10.180.0.1:80", "10.180.0.2:80"], True)
