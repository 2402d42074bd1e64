"""iptables-save / iptables-restore text -> a rule-set model the tracer can walk.

Reads both what `iptables-save [-c]` prints from a live node and what kube-proxy hands to
`iptables-restore --noflush` (chain lines flush an existing chain, as with --noflush; `-N`, `-X`,
`-F`, `-A`, `-I`, `-D`, `-P` commands; `[p:b]` counters before rules). Every option of the match
modules and targets kube-proxy writes is understood and its value checked; options of other
modules are kept verbatim and reported as not evaluated by the tracer.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field

from svcnet.netfilter.addr import Net, parse_addr, parse_net
from svcnet.netfilter.errors import RuleParseError

BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}

# Targets provided by the kernel rather than by a user chain. Anything else must be a chain.
TERMINAL_TARGETS = {"ACCEPT", "DROP", "REJECT", "DNAT", "SNAT", "MASQUERADE", "REDIRECT", "QUEUE", "NFQUEUE"}
EXTENSION_TARGETS = TERMINAL_TARGETS | {
    "RETURN",
    "MARK",
    "CONNMARK",
    "LOG",
    "NFLOG",
    "ULOG",
    "TRACE",
    "CT",
    "NOTRACK",
    "CHECKSUM",
    "TCPMSS",
    "TPROXY",
    "DSCP",
    "TOS",
    "TTL",
    "HL",
    "SECMARK",
    "CONNSECMARK",
    "CLASSIFY",
    "AUDIT",
    "SET",
    "IDLETIMER",
    "LED",
    "RATEEST",
    "TEE",
    "SYNPROXY",
    "HMARK",
    "CLUSTERIP",
    "NETMAP",
    "DNPT",
    "SNPT",
    "ECN",
    "MIRROR",
}

PROTO_NUMBERS = {"6": "tcp", "17": "udp", "132": "sctp", "1": "icmp", "58": "ipv6-icmp", "0": "all"}
CT_STATES = {"NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED", "SNAT", "DNAT"}

# Option tables: option -> (canonical name, number of value words).
_MODULE_OPTIONS: dict[str, dict[str, tuple[str, int]]] = {
    "comment": {"--comment": ("comment", 1)},
    "addrtype": {
        "--src-type": ("src-type", 1),
        "--dst-type": ("dst-type", 1),
        "--limit-iface-in": ("limit-iface-in", 0),
        "--limit-iface-out": ("limit-iface-out", 0),
    },
    "conntrack": {"--ctstate": ("ctstate", 1), "--ctstatus": ("ctstatus", 1)},
    "state": {"--state": ("ctstate", 1)},
    "mark": {"--mark": ("mark", 1)},
    "statistic": {
        "--mode": ("mode", 1),
        "--probability": ("probability", 1),
        "--every": ("every", 1),
        "--packet": ("packet", 1),
    },
    "recent": {
        "--name": ("name", 1),
        "--set": ("set", 0),
        "--rcheck": ("rcheck", 0),
        "--update": ("update", 0),
        "--remove": ("remove", 0),
        "--seconds": ("seconds", 1),
        "--reap": ("reap", 0),
        "--hitcount": ("hitcount", 1),
        "--rttl": ("rttl", 0),
        "--mask": ("mask", 1),
        "--rsource": ("rsource", 0),
        "--rdest": ("rdest", 0),
    },
    "multiport": {
        "--dports": ("dports", 1),
        "--destination-ports": ("dports", 1),
        "--sports": ("sports", 1),
        "--source-ports": ("sports", 1),
        "--ports": ("ports", 1),
    },
    "nfacct": {"--nfacct-name": ("nfacct-name", 1)},
}
_L4_OPTIONS = {
    "--dport": ("dport", 1),
    "--destination-port": ("dport", 1),
    "--sport": ("sport", 1),
    "--source-port": ("sport", 1),
}
_MODULE_OPTIONS["tcp"] = {**_L4_OPTIONS, "--tcp-flags": ("tcp-flags", 2), "--syn": ("syn", 0)}
_MODULE_OPTIONS["udp"] = dict(_L4_OPTIONS)
_MODULE_OPTIONS["sctp"] = dict(_L4_OPTIONS)

_TARGET_OPTIONS: dict[str, dict[str, tuple[str, int]]] = {
    "DNAT": {"--to-destination": ("to", 1), "--random": ("random", 0), "--persistent": ("persistent", 0)},
    "SNAT": {
        "--to-source": ("to", 1),
        "--random": ("random", 0),
        "--random-fully": ("random-fully", 0),
        "--persistent": ("persistent", 0),
    },
    "MASQUERADE": {
        "--to-ports": ("to-ports", 1),
        "--random": ("random", 0),
        "--random-fully": ("random-fully", 0),
    },
    "REDIRECT": {"--to-ports": ("to-ports", 1), "--random": ("random", 0)},
    "MARK": {
        "--set-xmark": ("set-xmark", 1),
        "--set-mark": ("set-mark", 1),
        "--or-mark": ("or-mark", 1),
        "--and-mark": ("and-mark", 1),
        "--xor-mark": ("xor-mark", 1),
    },
    "REJECT": {"--reject-with": ("reject-with", 1)},
}

_GENERIC = {
    "-p": "proto",
    "--protocol": "proto",
    "-s": "src",
    "--source": "src",
    "--src": "src",
    "-d": "dst",
    "--destination": "dst",
    "--dst": "dst",
    "-i": "in",
    "--in-interface": "in",
    "-o": "out",
    "--out-interface": "out",
}

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\S+')
_COUNTERS = re.compile(r"^\[(\d+):(\d+)\]\s+")
_CHAIN_LINE = re.compile(r"^:(\S+)\s+(\S+)(?:\s+\[(\d+):(\d+)\])?\s*$")


@dataclass(slots=True)
class Match:
    """One condition of a rule. `kind` selects how the tracer evaluates it; `text` is the
    option as written (for explanations)."""

    kind: str
    negated: bool
    value: object
    text: str


class Rule:
    """One `-A` rule, its options parsed. A rule read lazily from a large dump finds its line
    number only when asked."""

    __slots__ = (
        "_line_no",
        "_lines",
        "_pos",
        "chain",
        "comment",
        "goto",
        "matches",
        "table",
        "target",
        "target_opts",
        "text",
    )

    def __init__(
        self,
        table: str,
        chain: str,
        line_no: int | None,
        text: str,
        *,
        pos: int = -1,
        lines: LineIndex | None = None,
    ) -> None:
        self.table = table
        self.chain = chain
        self.text = text  # the rule as written, e.g. `-A KUBE-SERVICES -m comment ... -j KUBE-SVC-X`
        self.matches: list[Match] = []
        self.target: str | None = None
        self.goto = False
        self.target_opts: dict[str, object] = {}
        self.comment: str | None = None
        self._line_no = line_no
        self._pos = pos
        self._lines = lines

    @property
    def line_no(self) -> int:
        if self._line_no is None:
            assert self._lines is not None
            self._line_no = self._lines.line_of(self._pos)
        return self._line_no

    def __repr__(self) -> str:
        return f"Rule({self.table} line {self.line_no}: {self.text})"


def parse_rule_text(rule: Rule) -> Rule:
    """Fill in the options of a rule created with its text only."""
    try:
        words = tokenize(rule.text)
    except ValueError as exc:
        raise RuleParseError(rule.line_no, rule.text, str(exc)) from None
    _parse_rule_spec(rule, words[2:], rule.line_no, rule.text)
    return rule


class LineIndex:
    """Line numbers of offsets in a large text without counting from the start every time."""

    _BLOCK = 1 << 18

    def __init__(self, text: str, first: int = 1) -> None:
        self.text = text
        self.first = first
        self.starts: list[int] = []

    def line_of(self, pos: int) -> int:
        if not self.starts:  # counted once, on the first question
            self.starts.append(self.first)
            for base in range(0, len(self.text), self._BLOCK):
                self.starts.append(self.starts[-1] + self.text.count("\n", base, base + self._BLOCK))
        block = pos // self._BLOCK
        return self.starts[block] + self.text.count("\n", block * self._BLOCK, pos)


class Chain:
    """A chain and its rules; a chain of a large dump reads its rules when first walked."""

    __slots__ = ("_line_no", "_loader", "_rules", "name", "policy")

    def __init__(
        self,
        name: str,
        policy: str | None,
        rules: list[Rule] | None = None,
        line_no: int = 0,
        loader: Callable[[Chain], list[Rule]] | None = None,
    ) -> None:
        self.name = name
        self.policy = policy  # ACCEPT/DROP for built-in chains, None for user chains
        self._rules = rules if rules is not None or loader else []
        self._loader = loader
        self._line_no: int | Callable[[], int] = line_no

    @property
    def rules(self) -> list[Rule]:
        if self._rules is None:
            assert self._loader is not None
            self._rules = self._loader(self)
        return self._rules

    @property
    def line_no(self) -> int:
        if callable(self._line_no):
            self._line_no = self._line_no()
        return self._line_no

    @line_no.setter
    def line_no(self, value: int) -> None:
        self._line_no = value


@dataclass(slots=True)
class Table:
    name: str
    chains: MutableMapping[str, Chain] = field(default_factory=dict)


@dataclass
class IptablesRuleset:
    tables: dict[str, Table] = field(default_factory=dict)

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)

    def chain(self, table: str, chain: str) -> Chain | None:
        t = self.tables.get(table)
        return t.chains.get(chain) if t else None

    def rule_count(self) -> int:
        return sum(len(c.rules) for t in self.tables.values() for c in t.chains.values())


def tokenize(text: str) -> list[str]:
    """Split a rule into words; "quoted strings" (iptables-save escapes inner quotes) are one
    word, quotes removed."""
    words = []
    for tok in _TOKEN.findall(text):
        if tok.startswith('"'):
            if len(tok) < 2 or not tok.endswith('"') or (tok.endswith('\\"') and not tok.endswith('\\\\"')):
                raise ValueError("unterminated quote")
            tok = tok[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        elif '"' in tok:
            raise ValueError(f"stray quote in {tok!r}")
        words.append(tok)
    return words


def parse_iptables(text: str) -> IptablesRuleset:
    """Parse iptables-save or iptables-restore text. RuleParseError names the offending line."""
    return _Parser().parse(text)


class _Parser:
    def __init__(self) -> None:
        self.ruleset = IptablesRuleset()
        self.table: Table | None = None
        self.table_line = 0
        self.jumps: list[tuple[Rule, str]] = []  # (rule, text) to check targets at COMMIT

    def parse(self, text: str) -> IptablesRuleset:
        for line_no, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                self._line(line_no, line)
            except RuleParseError:
                raise
            except ValueError as exc:
                raise RuleParseError(line_no, line, str(exc)) from None
        if self.table is not None:
            raise RuleParseError(self.table_line, f"*{self.table.name}", "table has no COMMIT line")
        return self.ruleset

    # --- lines -------------------------------------------------------------------------
    def _line(self, line_no: int, line: str) -> None:
        head = line[0]
        if head == "*":
            if self.table is not None:
                raise RuleParseError(line_no, line, f"table {self.table.name!r} was not COMMITted")
            name = line[1:].strip()
            if name not in BUILTIN_CHAINS:
                raise RuleParseError(line_no, line, f"unknown table {name!r}")
            self.table = self.ruleset.tables.get(name) or Table(name)
            self.ruleset.tables[name] = self.table
            for builtin in BUILTIN_CHAINS[name]:
                self.table.chains.setdefault(builtin, Chain(builtin, "ACCEPT"))
            self.table_line = line_no
            return
        if self.table is None:
            raise RuleParseError(line_no, line, "line outside a table (missing *nat, *filter, ...)")
        if line == "COMMIT":
            self._check_targets()
            self.table = None
            return
        if head == ":":
            self._chain_line(line_no, line)
            return
        match = _COUNTERS.match(line)
        if match:
            line = line[match.end() :]
        words = tokenize(line)
        cmd = words[0]
        if cmd in ("-A", "--append", "-I", "--insert"):
            self._add_rule(line_no, line, words)
        elif cmd in ("-N", "--new-chain"):
            self._need(words, 2, line_no, line)
            if words[1] in self.table.chains:
                raise RuleParseError(line_no, line, f"chain {words[1]!r} already exists")
            self.table.chains[words[1]] = Chain(words[1], None, line_no=line_no)
        elif cmd in ("-X", "--delete-chain"):
            self._delete_chains(line_no, line, words[1:])
        elif cmd in ("-F", "--flush"):
            for chain in self._chains_named(line_no, line, words[1:]):
                chain.rules.clear()
        elif cmd in ("-P", "--policy"):
            self._need(words, 3, line_no, line)
            chain = self._existing(line_no, line, words[1])
            if chain.policy is None or words[2] not in ("ACCEPT", "DROP"):
                raise RuleParseError(line_no, line, "a policy is ACCEPT or DROP, on a built-in chain")
            chain.policy = words[2]
        elif cmd in ("-D", "--delete"):
            self._delete_rule(line_no, line, words)
        else:
            raise RuleParseError(line_no, line, f"unknown command {cmd!r}")

    def _need(self, words: list[str], n: int, line_no: int, line: str) -> None:
        if len(words) < n:
            raise RuleParseError(line_no, line, "missing argument")

    def _existing(self, line_no: int, line: str, name: str) -> Chain:
        assert self.table is not None
        chain = self.table.chains.get(name)
        if chain is None:
            raise RuleParseError(line_no, line, f"chain {name!r} does not exist in table {self.table.name!r}")
        return chain

    def _chains_named(self, line_no: int, line: str, names: list[str]) -> list[Chain]:
        assert self.table is not None
        if not names:
            return list(self.table.chains.values())
        return [self._existing(line_no, line, names[0])]

    def _chain_line(self, line_no: int, line: str) -> None:
        assert self.table is not None
        m = _CHAIN_LINE.match(line)
        if not m:
            raise RuleParseError(line_no, line, "malformed chain line (expected `:CHAIN POLICY [p:b]`)")
        name, policy = m.group(1), m.group(2)
        builtin = name in BUILTIN_CHAINS[self.table.name]
        if builtin and policy not in ("ACCEPT", "DROP"):
            raise RuleParseError(line_no, line, f"built-in chain {name} needs policy ACCEPT or DROP")
        if not builtin and policy != "-":
            raise RuleParseError(line_no, line, f"user chain {name} cannot have policy {policy}")
        chain = self.table.chains.get(name)
        if chain is None:
            self.table.chains[name] = Chain(name, policy if builtin else None, line_no=line_no)
        else:  # restore semantics (with --noflush too): a chain line flushes the chain
            chain.rules.clear()
            chain.line_no = line_no
            if builtin:
                chain.policy = policy

    def _delete_chains(self, line_no: int, line: str, names: list[str]) -> None:
        assert self.table is not None
        targets = names[:1] or [n for n, c in self.table.chains.items() if c.policy is None]
        for name in targets:
            chain = self._existing(line_no, line, name)
            if chain.policy is not None:
                raise RuleParseError(line_no, line, f"cannot delete built-in chain {name}")
            if chain.rules:
                raise RuleParseError(line_no, line, f"cannot delete chain {name!r}: it still has rules")
            del self.table.chains[name]

    def _delete_rule(self, line_no: int, line: str, words: list[str]) -> None:
        self._need(words, 3, line_no, line)
        chain = self._existing(line_no, line, words[1])
        if len(words) == 3 and words[2].isdigit():
            index = int(words[2]) - 1
            if not 0 <= index < len(chain.rules):
                raise RuleParseError(line_no, line, "rule number out of range")
            del chain.rules[index]
            return
        spec = " ".join(words[2:])
        for i, rule in enumerate(chain.rules):
            if " ".join(tokenize(rule.text)[2:]) == spec:
                del chain.rules[i]
                return
        raise RuleParseError(line_no, line, "no such rule to delete")

    def _add_rule(self, line_no: int, line: str, words: list[str]) -> None:
        assert self.table is not None
        self._need(words, 2, line_no, line)
        chain = self._existing(line_no, line, words[1])
        position = len(chain.rules)
        rest = words[2:]
        insert = words[0] in ("-I", "--insert")
        if insert:
            position = 0
            if rest and rest[0].isdigit():
                position = int(rest[0]) - 1
                rest = rest[1:]
                if not 0 <= position <= len(chain.rules):
                    raise RuleParseError(line_no, line, "rule number out of range")
        text = line if not insert else f"-A {words[1]} " + " ".join(_quote(w) for w in rest)
        rule = Rule(self.table.name, chain.name, line_no, text)
        _parse_rule_spec(rule, rest, line_no, line)
        if rule.target and rule.target not in EXTENSION_TARGETS:
            self.jumps.append((rule, line))
        chain.rules.insert(position, rule)

    def _check_targets(self) -> None:
        assert self.table is not None
        for rule, line in self.jumps:
            if rule.target not in self.table.chains:
                raise RuleParseError(
                    rule.line_no, line, f"jump to a chain that does not exist: {rule.target}"
                )
        self.jumps.clear()


def _quote(word: str) -> str:
    return f'"{word}"' if (" " in word or not word) else word


def _parse_rule_spec(rule: Rule, words: list[str], line_no: int, line: str) -> None:
    modules: list[str] = []
    proto: str | None = None
    negate = False
    i = 0
    n = len(words)

    def values(count: int, opt: str) -> list[str]:
        nonlocal i
        got = words[i + 1 : i + 1 + count]
        if len(got) < count:
            raise RuleParseError(line_no, line, f"option {opt} needs a value")
        i += count
        return got

    while i < n:
        word = words[i]
        if word == "!":
            if negate:
                raise RuleParseError(line_no, line, "double negation")
            negate = True
            i += 1
            continue
        if word in ("-m", "--match"):
            (module,) = values(1, word)
            modules.append(module)
        elif word in _GENERIC:
            kind = _GENERIC[word]
            (value,) = values(1, word)
            if kind == "proto":
                proto = PROTO_NUMBERS.get(value, value.lower())
                rule.matches.append(Match("proto", negate, proto, f"-p {value}"))
            elif kind in ("src", "dst"):
                nets = tuple(_net(v, line_no, line) for v in value.split(","))
                rule.matches.append(Match(kind, negate, nets, f"{word} {value}"))
            else:
                rule.matches.append(Match(kind, negate, value, f"{word} {value}"))
        elif word in ("-f", "--fragment"):
            rule.matches.append(Match("fragment", negate, None, "-f"))
        elif word in ("-j", "--jump", "-g", "--goto"):
            if rule.target is not None:
                raise RuleParseError(line_no, line, "more than one target")
            (rule.target,) = values(1, word)
            rule.goto = word in ("-g", "--goto")
        elif word in ("-c", "--set-counters"):
            values(2, word)
        elif word.startswith("-"):
            i = _module_or_target_option(rule, words, i, modules, proto, negate, line_no, line)
            negate = False
            continue
        else:
            raise RuleParseError(line_no, line, f"unexpected word {word!r}")
        if negate and word not in _GENERIC and word not in ("-f", "--fragment"):
            raise RuleParseError(line_no, line, f"`!` cannot negate {word}")
        negate = False
        i += 1
    if negate:
        raise RuleParseError(line_no, line, "`!` at the end of the rule")


def _module_or_target_option(
    rule: Rule,
    words: list[str],
    i: int,
    modules: list[str],
    proto: str | None,
    negate: bool,
    line_no: int,
    line: str,
) -> int:
    """Consume one module or target option starting at words[i]; return the next index."""
    opt = words[i]
    if rule.target in _TARGET_OPTIONS and opt in _TARGET_OPTIONS[rule.target]:
        name, count = _TARGET_OPTIONS[rule.target][opt]
        vals = words[i + 1 : i + 1 + count]
        if len(vals) < count:
            raise RuleParseError(line_no, line, f"option {opt} needs a value")
        rule.target_opts[name] = _target_value(rule.target, name, vals[0] if vals else True, line_no, line)
        return i + 1 + count
    search = list(reversed(modules))
    if proto in ("tcp", "udp", "sctp") and proto not in search:
        search.append(proto)  # `-p tcp --dport 80` loads the tcp match implicitly
    for module in search:
        spec = _MODULE_OPTIONS.get(module, {}).get(opt)
        if spec is None:
            continue
        name, count = spec
        vals = words[i + 1 : i + 1 + count]
        if len(vals) < count:
            raise RuleParseError(line_no, line, f"option {opt} needs a value")
        _add_module_match(rule, module, name, negate, vals, opt, line_no, line)
        return i + 1 + count
    # An option of a module or target the tracer does not model: keep it as written.
    j = i + 1
    while j < len(words) and not words[j].startswith("-") and words[j] != "!":
        j += 1
    text = " ".join(_quote(w) for w in words[i:j])
    owner = (
        rule.target if rule.target and not any(opt in _MODULE_OPTIONS.get(m, {}) for m in modules) else None
    )
    if owner and rule.target in EXTENSION_TARGETS:
        key = opt.lstrip("-")
        if any(name == key for name, _count in _TARGET_OPTIONS.get(rule.target, {}).values()):
            # `-xor-mark` is not `--xor-mark` (iptables reads it as short options and refuses
            # it); kept under the modelled name, its unconverted value would reach the tracer
            raise RuleParseError(line_no, line, f"unknown option {opt}")
        rule.target_opts[key] = " ".join(words[i + 1 : j]) or True
    else:
        if not modules and not owner:
            raise RuleParseError(line_no, line, f"unknown option {opt}")
        rule.matches.append(
            Match("unknown", negate, modules[-1] if modules else owner, ("! " if negate else "") + text)
        )
    return j


def _add_module_match(
    rule: Rule, module: str, name: str, negate: bool, vals: list[str], opt: str, line_no: int, line: str
) -> None:
    text = ("! " if negate else "") + " ".join([opt, *(_quote(v) for v in vals)])
    value: object = vals[0] if vals else True
    try:
        if name == "comment":
            rule.comment = vals[0]
        elif name in ("src-type", "dst-type"):
            value = frozenset(t.upper() for t in vals[0].split(","))
        elif name == "ctstate":
            states = frozenset(s.upper() for s in vals[0].split(","))
            if not states <= CT_STATES:
                raise ValueError(f"unknown conntrack state in {vals[0]!r}")
            value = states
        elif name == "ctstatus":
            value = frozenset(s.upper() for s in vals[0].split(","))
        elif name == "mark":
            value = _mark(vals[0])
        elif name == "probability":
            value = float(vals[0])
            if not 0.0 <= value <= 1.0:
                raise ValueError("probability must be between 0 and 1")
        elif name in ("every", "packet", "seconds", "hitcount"):
            value = int(vals[0])
            if name == "every" and value < 1:
                raise ValueError("--every must be at least 1")
        elif name in ("dport", "sport"):
            value = _port_range(vals[0])
        elif name in ("dports", "sports", "ports"):
            value = tuple(_port_range(p) for p in vals[0].split(","))
        elif name == "tcp-flags":
            value = (frozenset(vals[0].upper().split(",")), frozenset(vals[1].upper().split(",")))
        elif name == "mode" and vals[0] not in ("random", "nth"):
            raise ValueError(f"unknown statistic mode {vals[0]!r}")
    except ValueError as exc:
        raise RuleParseError(line_no, line, f"bad value for {opt}: {exc}") from None
    rule.matches.append(Match(f"{module}:{name}", negate, value, text))


def _target_value(target: str, name: str, value: object, line_no: int, line: str) -> object:
    try:
        if name == "to" and isinstance(value, str):
            return _nat_to(value)
        if target == "MARK" and isinstance(value, str):
            return _mark(value)
    except ValueError as exc:
        raise RuleParseError(line_no, line, f"bad value for {target} {name}: {exc}") from None
    return value


def _net(text: str, line_no: int, line: str) -> Net:
    try:
        return parse_net(text)
    except ValueError:
        raise RuleParseError(line_no, line, f"invalid address {text!r}") from None


def _mark(text: str) -> tuple[int, int]:
    value, _, mask = text.partition("/")
    v = int(value, 0)
    m = int(mask, 0) if mask else 0xFFFFFFFF
    if not (0 <= v <= 0xFFFFFFFF and 0 <= m <= 0xFFFFFFFF):
        raise ValueError("mark out of range")
    return v, m


def _port(text: str) -> int:
    if text.isdigit():
        port = int(text)
    else:
        try:
            port = socket.getservbyname(text)
        except OSError:
            raise ValueError(f"unknown port {text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    return port


def _port_range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    low = _port(lo) if lo else 0
    high = (_port(hi) if hi else 65535) if sep else low
    if low > high:
        raise ValueError(f"empty port range {text!r}")
    return low, high


def _nat_to(text: str) -> tuple[str, int | None]:
    """`10.0.0.1:80`, `10.0.0.1-10.0.0.9:80-90`, `[2001:db8::1]:80` -> (first address, first port)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    host = host.split("-")[0]
    parse_addr(host)
    port = _port(port_text.split("-")[0]) if port_text else None
    return host, port


def parse_rule(table: str, line: str, line_no: int = 0) -> Rule:
    """Parse one `-A CHAIN ...` line outside a dump (for rules a tool installs by itself)."""
    try:
        words = tokenize(line)
    except ValueError as exc:
        raise RuleParseError(line_no, line, str(exc)) from None
    if len(words) < 2 or words[0] != "-A":
        raise RuleParseError(line_no, line, "expected `-A CHAIN ...`")
    rule = Rule(table, words[1], line_no, line)
    _parse_rule_spec(rule, words[2:], line_no, line)
    return rule
