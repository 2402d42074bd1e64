"""nft rule sets -> a model the tracer can walk.

Reads both forms kube-proxy's nftables mode produces: the `nft -f` transaction it sends
(`add table/chain/set/map/rule/element`, `flush`, `delete`, `insert`) and what `nft list ruleset`
prints back (`table ip kube-proxy { set ... { elements = { ... } } chain ... { rules } }`). The
expressions understood are the ones kube-proxy writes and a little more: addresses, CIDRs and
ranges, protocols, ports, concatenations (`ip daddr . meta l4proto . th dport`), named and
anonymous sets, verdict maps, `numgen random mod N vmap`, `fib ... type`, `ct state/status`,
marks, interface names, nat statements and verdicts. Anything else is a parse error naming the
line.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from svcnet.netfilter.addr import Net, parse_addr, parse_net
from svcnet.netfilter.errors import RuleParseError
from svcnet.netfilter.iptables import LineIndex

FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")
PRIORITY_NAMES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
CT_STATES = {"new", "established", "related", "invalid", "untracked"}
PROTO_NUMBERS = {"6": "tcp", "17": "udp", "132": "sctp", "1": "icmp", "58": "ipv6-icmp"}
VERDICT_WORDS = {"accept", "drop", "reject", "return", "continue", "jump", "goto", "queue"}

# Selector -> value type.
FIELDS: dict[str, str] = {
    "ip saddr": "addr",
    "ip daddr": "addr",
    "ip6 saddr": "addr",
    "ip6 daddr": "addr",
    "meta l4proto": "proto",
    "ip protocol": "proto",
    "ip6 nexthdr": "proto",
    "th dport": "port",
    "th sport": "port",
    "tcp dport": "port",
    "tcp sport": "port",
    "udp dport": "port",
    "udp sport": "port",
    "sctp dport": "port",
    "sctp sport": "port",
    "fib daddr type": "fibtype",
    "fib saddr type": "fibtype",
    "ct state": "ctstate",
    "ct status": "ctstatus",
    "ct mark": "int",
    "meta mark": "int",
    "meta iifname": "ifname",
    "meta oifname": "ifname",
    "meta iif": "ifname",
    "meta oif": "ifname",
    "meta nfproto": "nfproto",
}
SHORT_FIELDS = {
    "mark": "meta mark",
    "iifname": "meta iifname",
    "oifname": "meta oifname",
    "iif": "meta iif",
    "oif": "meta oif",
    "l4proto": "meta l4proto",
}
TYPE_NAMES = {
    "ipv4_addr": "addr",
    "ipv6_addr": "addr",
    "inet_proto": "proto",
    "inet_service": "port",
    "mark": "int",
    "ifname": "ifname",
    "verdict": "verdict",
    "ct_state": "ctstate",
}

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{};,\n]|[^\s{};,"]+')


@dataclass(slots=True)
class Tok:
    text: str
    line: int


@dataclass
class Verdict:
    kind: str  # accept drop reject return continue jump goto queue
    target: str | None = None

    def __str__(self) -> str:
        return f"{self.kind} {self.target}" if self.target else self.kind


@dataclass
class NftSet:
    name: str
    key_types: list[str]
    data_type: str | None  # "verdict" for a verdict map, None for a set
    flags: set[str] = field(default_factory=set)
    exact: dict[tuple, object] = field(default_factory=dict)  # key -> data (None for sets)
    ranged: list[tuple[tuple, object]] = field(default_factory=list)  # keys with CIDRs / ranges
    dynamic: bool = False  # filled by the packet path itself (affinity): empty for a new flow
    line_no: int = 0
    # Elements as written (line number, text inside the braces), read on first lookup: a map
    # of 10,000 services costs nothing until a packet needs it.
    pending: list[tuple[int, str]] = field(default_factory=list)
    loader: Callable[[NftSet], None] | None = None

    unscanned: bool = False  # elements still to be located in the text (_FastTransaction)

    def load(self) -> None:
        if (self.pending or self.unscanned) and self.loader is not None:
            self.loader(self)

    def clear(self) -> None:
        self.pending.clear()
        self.exact.clear()
        self.ranged.clear()

    def add(self, key: tuple, data: object) -> None:
        for part in key:
            if part.__class__ is tuple and part[0] == "range":
                self.ranged.append((key, data))
                return
        self.exact[key] = data

    def remove(self, key: tuple) -> None:
        self.exact.pop(key, None)
        self.ranged = [(k, d) for k, d in self.ranged if k != key]

    def size(self) -> int:
        self.load()
        return len(self.exact) + len(self.ranged)


@dataclass
class Expr:
    """One statement of a rule."""

    kind: str  # match | vmap | numgen | verdict | nat | markset | noop | assumed
    fields: list[str] = field(default_factory=list)
    mask: tuple[str, int] | None = None  # ("and"/"or"/"xor", value) applied to the field
    op: str = "=="
    values: list[tuple] | None = None  # literal rhs: list of keys (anonymous set)
    set_ref: str | None = None
    mapping: list[tuple[tuple, Verdict]] | None = None  # anonymous vmap
    verdict: Verdict | None = None
    nat: tuple[str, str | None, int | None] | None = None  # (dnat|snat|masquerade|redirect, ip, port)
    mark: tuple[str, int] | None = None  # ("set"|"or"|"xor"|"and", value)
    modulus: int = 0
    offset: int = 0
    text: str = ""


@dataclass
class NftRule:
    table: str
    chain: str
    line_no: int
    text: str
    exprs: list[Expr]
    comment: str | None = None


class LazyNftRule:
    """A rule known by its text until the packet reaches it."""

    __slots__ = ("body", "chain", "line_no", "parser", "table", "text")

    def __init__(
        self, parser: _Parser, table: NftTable, chain: str, line_no: int, body: str, text: str
    ) -> None:
        self.parser, self.table, self.chain, self.line_no, self.body, self.text = (
            parser,
            table,
            chain,
            line_no,
            body,
            text,
        )

    def parse(self) -> NftRule:
        toks = [Tok(m.group(0), self.line_no) for m in _TOKEN.finditer(self.body)]
        return _RuleParser(self.parser, self.table, toks, self.line_no).parse(self.chain, self.text)


@dataclass
class NftChain:
    name: str
    rules: list[NftRule | LazyNftRule] = field(default_factory=list)
    hook: str | None = None
    chain_type: str | None = None
    priority: int = 0
    policy: str = "accept"
    line_no: int = 0


@dataclass
class NftTable:
    family: str
    name: str
    chains: dict[str, NftChain] = field(default_factory=dict)
    sets: dict[str, NftSet] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.family} {self.name}"


@dataclass
class NftRuleset:
    tables: dict[str, NftTable] = field(default_factory=dict)  # "family name" -> table
    # For a large transaction read by _FastTransaction: finds a chain's rules on first use.
    rule_loader: Callable[[NftTable, NftChain], list[LazyNftRule]] | None = None
    loaded: set[int] = field(default_factory=set)

    def rules_of(self, table: NftTable, chain: NftChain) -> list[NftRule | LazyNftRule]:
        if self.rule_loader is not None and id(chain) not in self.loaded:
            self.loaded.add(id(chain))
            chain.rules.extend(self.rule_loader(table, chain))
        return chain.rules

    def base_chains(self, hook: str, version: int) -> list[tuple[NftTable, NftChain]]:
        """Base chains registered on `hook` for packets of IP `version`, in priority order."""
        families = ("ip", "inet") if version == 4 else ("ip6", "inet")
        found = [
            (t, c)
            for t in self.tables.values()
            if t.family in families
            for c in t.chains.values()
            if c.hook == hook
        ]
        return sorted(found, key=lambda tc: tc[1].priority)


# Below this many lines every rule and element is read at once, so that any error is reported
# up front; above it they are read when a packet first needs them (see docs/trace.md).
LAZY_MIN_LINES = 5000


def parse_nft(text: str, lazy: bool | None = None) -> NftRuleset:
    """Parse an `nft -f` transaction or `nft list ruleset` output. RuleParseError names the line."""
    if lazy is None:
        lazy = text.count("\n") >= LAZY_MIN_LINES
    if lazy:
        reader = _FastListing if text.lstrip().startswith("table ") else _FastTransaction
        fast = reader(text).parse()
        if fast is not None:
            return fast
    parser = _Parser(text)
    ruleset = parser.parse()
    if not lazy:
        for table in ruleset.tables.values():
            for chain in table.chains.values():
                chain.rules = [r.parse() if isinstance(r, LazyNftRule) else r for r in chain.rules]
            for nset in table.sets.values():
                nset.load()
    return ruleset


class _Parser:
    """Line-oriented front end: the shapes kube-proxy writes and nft prints (`add rule ...`,
    `add element ...`, rule lines inside `chain X { }`) are stored as text and parsed when
    used; everything else goes through the token parser below, one statement at a time."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.toks: list[Tok] = []
        self.i = 0
        self.ruleset = NftRuleset()
        # (table key, chain name, line number, rule text, text shown), added at the end so
        # that a rule may name chains declared after it, as `nft list ruleset` prints them
        self.pending_rules: list[tuple[str, str, int, str, str]] = []

    def tokenize(self, first: int, last: int) -> list[Tok]:
        """Tokens of lines first..last (0-based, inclusive), newlines included."""
        toks: list[Tok] = []
        for no in range(first, last + 1):
            line = self.lines[no]
            if "#" in line:
                line = _strip_hash_comment(line)
            toks.extend(Tok(m.group(0), no + 1) for m in _TOKEN.finditer(line))
            toks.append(Tok("\n", no + 1))
        return toks

    def statement_end(self, first: int) -> int:
        """The last line of the statement starting at `first`: braces must balance."""
        depth = 0
        for no in range(first, len(self.lines)):
            depth += _brace_delta(self.lines[no])
            if depth <= 0:
                return no
        raise RuleParseError(first + 1, self.lines[first], "`{` is never closed")

    # --- token helpers -----------------------------------------------------------------
    def error(self, reason: str, tok: Tok | None = None) -> RuleParseError:
        if tok is None:
            tok = self.toks[min(self.i, len(self.toks) - 1)] if self.toks else Tok("", 0)
        line = self.lines[tok.line - 1] if 0 < tok.line <= len(self.lines) else ""
        return RuleParseError(tok.line, line, reason)

    def peek(self, k: int = 0) -> str | None:
        j = self.i + k
        return self.toks[j].text if j < len(self.toks) else None

    def next(self) -> Tok:
        if self.i >= len(self.toks):
            raise self.error("unexpected end of input")
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> Tok:
        tok = self.next()
        if tok.text != text:
            raise self.error(f"expected {text!r}, found {tok.text!r}", tok)
        return tok

    def skip_newlines(self) -> None:
        while self.peek() in ("\n", ";"):
            self.i += 1

    def word(self, what: str) -> str:
        tok = self.next()
        if tok.text in ("\n", ";", "{", "}", ","):
            raise self.error(f"expected {what}", tok)
        return _unquote(tok.text)

    # --- top level ---------------------------------------------------------------------
    def parse(self) -> NftRuleset:
        lines = self.lines
        no = 0
        while no < len(lines):
            line = lines[no].strip()
            if not line or line[0] == "#":
                no += 1
                continue
            if self.fast_command(no, line):
                no += 1
                continue
            if line.startswith("table ") and line.endswith("{"):
                no = self.table_lines(no)
                continue
            last = self.statement_end(no)
            self.toks, self.i = self.tokenize(no, last), 0
            while True:
                self.skip_newlines()
                tok = self.peek()
                if tok is None:
                    break
                if tok == "table":
                    self.table_block(self.next())
                elif tok in ("add", "create", "insert", "flush", "delete", "destroy"):
                    self.command()
                else:
                    raise self.error(f"unknown command {tok!r}")
            no = last + 1
        for key, chain_name, line_no, body, text in self.pending_rules:
            table = self.ruleset.tables.get(key)
            chain = table.chains.get(chain_name) if table else None
            if table is None or chain is None:
                what = (
                    f"table {key} does not exist"
                    if table is None
                    else (f"chain {chain_name} does not exist in table {key}")
                )
                raise RuleParseError(line_no, self.lines[line_no - 1], what)
            chain.rules.append(LazyNftRule(self, table, chain_name, line_no, body, text))
        return self.ruleset

    def fast_command(self, no: int, line: str) -> bool:
        """`add rule F T C ...`, `add element F T S { ... }`, `add chain F T C` on one line."""
        if not line.startswith("add ") or "#" in line:
            return False
        parts = line.split(None, 5)
        if len(parts) < 5 or parts[2] not in FAMILIES:
            return False
        key = f"{parts[2]} {parts[3]}"
        if parts[1] == "rule" and len(parts) == 6 and _brace_delta(line) == 0:
            self.pending_rules.append((key, parts[4], no + 1, parts[5], line))
            return True
        if parts[1] == "element" and len(parts) == 6 and parts[5].startswith("{") and parts[5].endswith("}"):
            if _brace_delta(line) != 0:
                return False
            nset = self.set_named(key, parts[4], no)
            nset.pending.append((no + 1, parts[5][1:-1]))
            return True
        if parts[1] == "chain" and len(parts) == 5:
            table = self.ruleset.tables.get(key)
            if table is None:
                raise RuleParseError(no + 1, self.lines[no], f"table {key} does not exist")
            table.chains.setdefault(parts[4], NftChain(parts[4], line_no=no + 1))
            return True
        return False

    def set_named(self, key: str, name: str, no: int) -> NftSet:
        table = self.ruleset.tables.get(key)
        nset = table.sets.get(name) if table else None
        if nset is None:
            raise RuleParseError(no + 1, self.lines[no], f"set {name} does not exist in table {key}")
        return nset

    def table_lines(self, no: int) -> int:
        """`table FAMILY NAME {` ... `}` as `nft list ruleset` prints it; returns the next line."""
        self.toks, self.i = self.tokenize(no, no), 1
        family, name = self.family_and_name()
        self.expect("{")
        table = self.table_of(family, name, create=True)
        no += 1
        while no < len(self.lines):
            line = _strip_hash_comment(self.lines[no]).strip()
            if not line:
                no += 1
            elif line == "}":
                return no + 1
            elif line.startswith(("set ", "map ")) and line.endswith("{"):
                no = self.set_lines(table, no)
            elif line.startswith("chain ") and line.endswith("{"):
                no = self.chain_lines(table, no)
            elif line.startswith(("comment ", "flags ")):
                no += 1
            else:
                raise RuleParseError(no + 1, self.lines[no], "unexpected line in table")
        raise RuleParseError(
            no, self.lines[-1] if self.lines else "", f"table {table.key} is not closed with '}}'"
        )

    def chain_lines(self, table: NftTable, no: int) -> int:
        header = _strip_hash_comment(self.lines[no]).strip()
        name = _unquote(header[len("chain ") : -1].strip())
        chain = table.chains.get(name) or NftChain(name, line_no=no + 1)
        table.chains[name] = chain
        no += 1
        while no < len(self.lines):
            line = _strip_hash_comment(self.lines[no]).strip()
            if not line:
                pass
            elif line == "}":
                return no + 1
            elif line.startswith(("type ", "policy ", "comment ", "devices ", "device ")):
                self.toks, self.i = self.tokenize(no, no), 0
                word = self.peek()
                if word == "type":
                    self.chain_spec(chain)
                else:
                    self.i += 1
                    value = self.word(word or "")
                    if word == "policy":
                        chain.policy = value
            else:
                self.pending_rules.append((table.key, name, no + 1, line, line))
            no += 1
        raise RuleParseError(no, self.lines[-1], f"chain {name} is not closed with '}}'")

    def set_lines(self, table: NftTable, no: int) -> int:
        """A set/map block: its definition through the token parser, its elements kept as
        text for later."""
        header = _strip_hash_comment(self.lines[no]).strip()
        kind, _, rest = header.partition(" ")
        name = _unquote(rest[:-1].strip())
        start = no
        body: list[Tok] = []
        elements: list[tuple[int, str]] = []
        no += 1
        while no < len(self.lines):
            line = _strip_hash_comment(self.lines[no]).strip()
            if line == "}":
                break
            if line.startswith("elements = {"):
                last = self.statement_end(no)
                text = " ".join(self.lines[n].strip() for n in range(no, last + 1))
                elements.append((no + 1, text[len("elements = {") : text.rindex("}")]))
                no = last + 1
                continue
            body.extend(self.tokenize(no, no))
            no += 1
        else:
            raise RuleParseError(start + 1, self.lines[start], f"{kind} {name} is not closed with '}}'")
        self.toks, self.i = [*body, Tok("}", no + 1)], 0
        self.set_body(table, name, Tok(kind, start + 1))
        table.sets[name].pending.extend(elements)
        return no + 1

    def family_and_name(self) -> tuple[str, str]:
        first = self.word("table family or name")
        if first in FAMILIES:
            return first, self.word("table name")
        return "ip", first

    def table_of(self, family: str, name: str, create: bool = False) -> NftTable:
        key = f"{family} {name}"
        table = self.ruleset.tables.get(key)
        if table is None:
            if not create:
                raise self.error(f"table {key} does not exist")
            table = self.ruleset.tables[key] = NftTable(family, name)
        return table

    def table_block(self, start: Tok) -> None:
        family, name = self.family_and_name()
        table = self.table_of(family, name, create=True)
        self.expect("{")
        while True:
            self.skip_newlines()
            tok = self.next()
            if tok.text == "}":
                return
            if tok.text in ("comment", "flags"):
                self.word(tok.text)
                continue
            if tok.text in ("set", "map"):
                name = self.word("set name")
                self.expect("{")
                self.set_body(table, name, tok)
            elif tok.text == "chain":
                name = self.word("chain name")
                self.expect("{")
                self.chain_body(table, name, tok)
            else:
                raise self.error(f"unexpected {tok.text!r} in table", tok)

    def chain_body(self, table: NftTable, name: str, start: Tok) -> None:
        chain = table.chains.get(name) or NftChain(name, line_no=start.line)
        table.chains[name] = chain
        while True:
            self.skip_newlines()
            tok = self.toks[self.i] if self.i < len(self.toks) else None
            if tok is None:
                raise self.error("chain is not closed with '}'")
            if tok.text == "}":
                self.i += 1
                return
            if tok.text == "type":
                self.chain_spec(chain)
                continue
            if tok.text in ("policy", "comment", "devices", "device"):
                self.i += 1
                value = self.word(tok.text)
                if tok.text == "policy":
                    chain.policy = value
                continue
            # a rule: the rest of its line, parsed when used
            while self.peek() not in ("\n", None):
                self.i += 1
            line = _strip_hash_comment(self.lines[tok.line - 1]).strip()
            self.pending_rules.append((table.key, chain.name, tok.line, line, line))

    def chain_spec(self, chain: NftChain) -> None:
        """`type filter hook prerouting [device X] priority dstnat - 10 ; [policy accept ;]`."""
        self.expect("type")
        chain.chain_type = self.word("chain type")
        self.expect("hook")
        chain.hook = self.word("hook")
        if self.peek() == "device":
            self.i += 1
            self.word("device")
        self.expect("priority")
        parts = []
        while self.peek() not in (";", "\n", "}", None):
            parts.append(self.next())
        chain.priority = self.priority(parts)
        if self.peek() == ";":
            self.i += 1
        if self.peek() == "policy":
            self.i += 1
            chain.policy = self.word("policy")

    def priority(self, parts: list[Tok]) -> int:
        text = " ".join(p.text for p in parts)
        m = re.fullmatch(r"(-?\d+)|([a-z]+)(?:\s*([+-])\s*(\d+))?", text)
        if not m:
            raise self.error(f"bad chain priority {text!r}", parts[0] if parts else None)
        if m.group(1):
            return int(m.group(1))
        base = PRIORITY_NAMES.get(m.group(2))
        if base is None:
            raise self.error(f"unknown priority name {m.group(2)!r}", parts[0])
        delta = int(m.group(4) or 0)
        return base - delta if m.group(3) == "-" else base + delta

    def set_body(self, table: NftTable, name: str, start: Tok) -> None:
        is_map = start.text == "map"
        nset = table.sets.get(name)
        pending_elements: list[Tok] | None = None
        while True:
            self.skip_newlines()
            tok = self.next()
            if tok.text == "}":
                break
            if tok.text in ("type", "typeof"):
                key_types, data_type = self.type_spec(tok.text, is_map)
                nset = NftSet(name, key_types, data_type, line_no=start.line, loader=self.load_set)
                table.sets[name] = nset
            elif tok.text == "flags":
                flags = self.comma_words()
                if nset is not None:
                    nset.flags |= set(flags)
                    nset.dynamic = nset.dynamic or "dynamic" in flags
            elif tok.text in ("timeout", "size", "comment", "gc-interval", "policy"):
                self.word(tok.text)
            elif tok.text in ("counter", "auto-merge"):
                continue
            elif tok.text == "elements":
                self.expect("=")
                self.expect("{")
                pending_elements = self.balanced()
            else:
                raise self.error(f"unexpected {tok.text!r} in {start.text}", tok)
        if nset is None:
            raise self.error(f"{start.text} {name} has no type", start)
        if pending_elements is not None:
            self.elements(nset, pending_elements)

    def comma_words(self) -> list[str]:
        words = [self.word("value")]
        while self.peek() == ",":
            self.i += 1
            words.append(self.word("value"))
        return words

    def type_spec(self, how: str, is_map: bool) -> tuple[list[str], str | None]:
        toks = []
        while self.peek() not in (";", "\n", "}", None):
            toks.append(self.next())
        words = [t.text for t in toks]
        where = toks[0] if toks else None
        data_type = None
        if ":" in words:
            cut = words.index(":")
            data_type = TYPE_NAMES.get(words[cut + 1]) if cut + 1 < len(words) else None
            if data_type is None:
                raise self.error("unsupported map data type", toks[cut])
            words = words[:cut]
        elif is_map:
            raise self.error("a map needs `: TYPE`", where)
        key_types = []
        if how == "type":
            for part in " ".join(words).split(" . "):
                kind = TYPE_NAMES.get(part.strip())
                if kind is None:
                    raise self.error(f"unsupported set type {part.strip()!r}", where)
                key_types.append(kind)
        else:
            for part in " ".join(words).split(" . "):
                field_name = SHORT_FIELDS.get(part.strip(), part.strip())
                if field_name not in FIELDS:
                    raise self.error(f"unsupported typeof expression {part.strip()!r}", where)
                key_types.append(FIELDS[field_name])
        return key_types, data_type

    def balanced(self) -> list[Tok]:
        """Tokens up to the `}` matching an already consumed `{` (newlines dropped)."""
        depth = 1
        out: list[Tok] = []
        while True:
            tok = self.next()
            if tok.text == "{":
                depth += 1
            elif tok.text == "}":
                depth -= 1
                if depth == 0:
                    return out
            if tok.text != "\n":
                out.append(tok)

    def elements(self, nset: NftSet, toks: list[Tok], delete: bool = False) -> None:
        for item in _split_commas(toks):
            if not item:
                continue
            words = [t.text for t in item]
            data: object = None
            if nset.data_type is not None:
                if ":" not in words:
                    raise self.error(f"map element without `: value` in {nset.name}", item[0])
                cut = words.index(":")
                data_toks = item[cut + 1 :]
                data = self.verdict_of(data_toks) if nset.data_type == "verdict" else data_toks[0].text
                item = item[:cut]
            key = self.key_of(nset.key_types, _strip_element_options(item), item[0] if item else None)
            if delete:
                nset.remove(key)
            else:
                nset.add(key, data)

    def load_set(self, nset: NftSet) -> None:
        """Read the elements kept as text, in the order they were added."""
        pending, nset.pending = nset.pending, []
        for line_no, text in pending:
            items = _ITEM.findall(text) if ("," in text or '"' in text) else (text,)
            for item in items:
                item = item.strip()
                if item and not self.fast_element(nset, item, line_no):
                    toks = [Tok(m.group(0), line_no) for m in _TOKEN.finditer(item)]
                    self.elements(nset, toks)

    def fast_element(self, nset: NftSet, item: str, line_no: int) -> bool:
        """`a . b . c [comment "x"] [timeout T] : goto chain` without tokens; False when the
        element needs the token parser (it then also reports errors)."""
        if '"' in item or " timeout " in item or " expires " in item or " counter" in item:
            item = _ELEMENT_OPTIONS.sub("", item)
        data: object = None
        if nset.data_type is not None:
            item, sep, data_text = item.partition(" : ")
            words = data_text.split()
            if not sep or nset.data_type != "verdict" or not words or words[0] not in VERDICT_WORDS:
                return False
            if words[0] in ("jump", "goto"):
                if len(words) != 2:
                    return False
                data = Verdict(words[0], words[1])
            elif len(words) == 1:
                data = Verdict(words[0])
            else:
                return False
        parts = item.split(" . ")
        if len(parts) != len(nset.key_types) or "{" in item:
            return False
        try:
            key = tuple(
                [_cached_value(kind, part.strip()) for kind, part in zip(nset.key_types, parts, strict=True)]
            )
        except ValueError:
            return False
        nset.add(key, data)
        return True

    def key_of(self, types: list[str], toks: list[Tok], where: Tok | None) -> tuple:
        parts = _split_dots(toks)
        if len(parts) != len(types):
            raise self.error(f"element has {len(parts)} parts, the set's type has {len(types)}", where)
        return tuple(self.value(kind, part) for kind, part in zip(types, parts, strict=True))

    def value(self, kind: str, toks: list[Tok]) -> object:
        if len(toks) != 1:
            raise self.error("expected one value", toks[0] if toks else None)
        tok = toks[0]
        text = _unquote(tok.text)
        try:
            return parse_value(kind, text)
        except ValueError as exc:
            raise self.error(f"bad {kind} value {text!r}: {exc}", tok) from None

    def verdict_of(self, toks: list[Tok]) -> Verdict:
        words = [t.text for t in toks]
        if not words or words[0] not in VERDICT_WORDS:
            raise self.error(f"expected a verdict, found {' '.join(words)!r}", toks[0] if toks else None)
        if words[0] in ("jump", "goto"):
            if len(words) != 2:
                raise self.error(f"{words[0]} needs one chain name", toks[0])
            return Verdict(words[0], words[1])
        return Verdict(words[0])

    # --- transaction commands ----------------------------------------------------------
    def command(self) -> None:
        start = self.next()
        verb = start.text
        what = self.word("object")
        if verb == "flush" and what == "ruleset":
            self.ruleset.tables.clear()
            return
        if what == "table":
            family, name = self.family_and_name()
            if verb in ("delete", "destroy"):
                self.ruleset.tables.pop(f"{family} {name}", None)
            elif verb == "flush":
                table = self.table_of(family, name)
                for chain in table.chains.values():
                    chain.rules.clear()
                self.pending_rules = [p for p in self.pending_rules if p[0] != table.key]
                for nset in table.sets.values():
                    nset.clear()
            else:
                self.table_of(family, name, create=True)
                if self.peek() == "{":
                    self.i += 1
                    self.balanced()
            return
        family, tname = self.family_and_name()
        table = self.table_of(family, tname)
        name = self.word(f"{what} name")
        if what == "chain":
            self.chain_command(verb, table, name, start)
        elif what in ("set", "map"):
            self.set_command(verb, table, name, start, what)
        elif what == "element":
            nset = table.sets.get(name)
            if nset is None:
                raise self.error(f"set {name} does not exist in table {table.key}", start)
            self.expect("{")
            self.load_set(nset)
            self.elements(nset, self.balanced(), delete=verb in ("delete", "destroy"))
        elif what == "rule":
            chain = table.chains.get(name)
            if chain is None:
                raise self.error(f"chain {name} does not exist in table {table.key}", start)
            toks = []
            while self.peek() not in ("\n", None):
                toks.append(self.next())
            text = self.lines[start.line - 1].strip()
            if verb == "insert":
                chain.rules.insert(0, self.rule(table, chain, start.line, toks, text))
            else:
                body = " ".join(t.text for t in toks)
                self.pending_rules.append((table.key, chain.name, start.line, body, text))
        else:
            raise self.error(f"unsupported object {what!r}", start)

    def chain_command(self, verb: str, table: NftTable, name: str, start: Tok) -> None:
        if verb in ("delete", "destroy"):
            chain = table.chains.get(name)
            if chain is None and verb == "delete":
                raise self.error(f"chain {name} does not exist", start)
            pending = any((p[0], p[1]) == (table.key, name) for p in self.pending_rules)
            if chain is not None and (chain.rules or pending):
                raise self.error(f"cannot delete chain {name}: it still has rules", start)
            table.chains.pop(name, None)
            return
        if verb == "flush":
            chain = table.chains.get(name)
            if chain is None:
                raise self.error(f"chain {name} does not exist", start)
            chain.rules.clear()
            self.pending_rules = [p for p in self.pending_rules if (p[0], p[1]) != (table.key, name)]
            return
        chain = table.chains.get(name)
        if chain is None:
            chain = table.chains[name] = NftChain(name, line_no=start.line)
        if self.peek() == "{":
            self.i += 1
            while True:
                self.skip_newlines()
                tok = self.peek()
                if tok == "}":
                    self.i += 1
                    break
                if tok == "type":
                    self.chain_spec(chain)
                elif tok in ("comment", "policy", "device", "devices"):
                    self.i += 1
                    value = self.word(tok)
                    if tok == "policy":
                        chain.policy = value
                else:
                    raise self.error(f"unexpected {tok!r} in chain definition")

    def set_command(self, verb: str, table: NftTable, name: str, start: Tok, what: str) -> None:
        if verb in ("delete", "destroy"):
            table.sets.pop(name, None)
            return
        if verb == "flush":
            nset = table.sets.get(name)
            if nset is None:
                raise self.error(f"{what} {name} does not exist", start)
            nset.clear()
            return
        if self.peek() != "{":
            raise self.error(f"{what} {name} needs a {{ type ... }} definition")
        self.i += 1
        if name in table.sets:  # `add` of an existing set is a no-op in nft
            self.balanced()
            return
        self.set_body(table, name, Tok(what, start.line))

    # --- rules -------------------------------------------------------------------------
    def rule(self, table: NftTable, chain: NftChain, line_no: int, toks: list[Tok], text: str) -> NftRule:
        return _RuleParser(self, table, toks, line_no).parse(chain.name, text)


class _RuleParser:
    """One rule's statements. Tokens come from the outer parser (errors name the line)."""

    def __init__(self, outer: _Parser, table: NftTable, toks: list[Tok], line_no: int) -> None:
        self.outer = outer
        self.table = table
        self.toks = toks
        self.i = 0
        self.line_no = line_no

    def error(self, reason: str) -> RuleParseError:
        tok = self.toks[min(self.i, len(self.toks) - 1)] if self.toks else Tok("", self.line_no)
        return self.outer.error(reason, tok)

    def peek(self, k: int = 0) -> str | None:
        j = self.i + k
        return self.toks[j].text if j < len(self.toks) else None

    def next(self) -> str:
        if self.i >= len(self.toks):
            raise self.error("rule ends too early")
        self.i += 1
        return self.toks[self.i - 1].text

    def parse(self, chain: str, text: str) -> NftRule:
        exprs: list[Expr] = []
        comment = None
        if not self.toks:
            raise self.error("empty rule")
        while self.i < len(self.toks):
            word = self.peek()
            if word == "comment":
                self.i += 1
                comment = _unquote(self.next())
            elif word == "counter":
                self.i += 1
                while self.peek() in ("packets", "bytes"):
                    self.i += 2
            elif word == "log":
                self.i += 1
                while self.peek() in ("prefix", "level", "group", "snaplen", "flags"):
                    self.i += 2
                exprs.append(Expr("noop", text="log"))
            elif word == "limit":
                start = self.i
                self.i += 1
                while self.peek() is not None and self.peek() not in VERDICT_WORDS | {"comment", "counter"}:
                    self.i += 1
                exprs.append(Expr("assumed", text=" ".join(t.text for t in self.toks[start : self.i])))
            elif word in VERDICT_WORDS:
                exprs.append(self.verdict())
            elif word in ("dnat", "snat", "masquerade", "redirect"):
                exprs.append(self.nat())
            elif word in ("update", "add", "delete") and (self.peek(1) or "").startswith("@"):
                self.i += 2
                if self.next() != "{":
                    raise self.error("expected `{` after the set")
                depth = 1
                while depth:
                    t = self.next()
                    depth += {"{": 1, "}": -1}.get(t, 0)
                exprs.append(Expr("noop", text=f"{word} set"))
            elif word == "numgen":
                exprs.append(self.numgen())
            elif self.is_mark_set():
                exprs.append(self.mark_set())
            else:
                exprs.append(self.match())
        return NftRule(self.table.key, chain, self.line_no, text, exprs, comment)

    def verdict(self) -> Expr:
        word = self.next()
        if word in ("jump", "goto"):
            target = self.next()
            if target not in self.table.chains:
                raise self.error(f"{word} to a chain that does not exist: {target}")
            return Expr("verdict", verdict=Verdict(word, target), text=f"{word} {target}")
        if word == "reject" and self.peek() == "with":
            self.i += 1
            kind = self.next()
            if kind == "tcp":
                self.next()  # reset
            else:
                if self.peek() == "type":
                    self.i += 1
                self.next()
        if word == "queue":
            while self.peek() in ("num", "flags", "to"):
                self.i += 2
        return Expr("verdict", verdict=Verdict(word), text=word)

    def nat(self) -> Expr:
        kind = self.next()
        addr: str | None = None
        port: int | None = None
        if self.peek() in ("ip", "ip6"):
            self.i += 1
        if self.peek() == "to":
            self.i += 1
            target = self.next()
            try:
                addr, port = _nat_target(target)
            except ValueError as exc:
                raise self.error(f"bad {kind} target {target!r}: {exc}") from None
        while self.peek() is not None and re.fullmatch(
            r"(random|fully-random|persistent)(,\S+)*", self.peek() or ""
        ):
            self.i += 1
        if kind == "dnat" and addr is None:
            raise self.error("dnat needs `to ADDRESS[:PORT]`")
        return Expr("nat", nat=(kind, addr, port), text=kind + (f" to {addr}" if addr else ""))

    def numgen(self) -> Expr:
        self.i += 1
        mode = self.next()
        if mode not in ("random", "inc"):
            raise self.error(f"unsupported numgen mode {mode!r}")
        if self.next() != "mod":
            raise self.error("expected `mod N` after numgen")
        try:
            modulus = int(self.next())
            offset = 0
            if self.peek() == "offset":
                self.i += 1
                offset = int(self.next())
        except ValueError:
            raise self.error("numgen modulus and offset are numbers") from None
        if modulus < 1:
            raise self.error("numgen modulus must be at least 1")
        if self.next() != "vmap":
            raise self.error("numgen is understood with `vmap` only")
        expr = Expr("numgen", modulus=modulus, offset=offset, text=f"numgen {mode} mod {modulus}")
        self.vmap_target(expr, ["int"])
        return expr

    def vmap_target(self, expr: Expr, key_types: list[str]) -> None:
        word = self.next()
        if word.startswith("@"):
            expr.set_ref = self.set_ref(word, key_types, want_map=True)
            return
        if word != "{":
            raise self.error("expected `{` or `@map` after vmap")
        expr.mapping = []
        for item in _split_commas(self.until_close()):
            words = [t.text for t in item]
            if ":" not in words:
                raise self.error("vmap element needs `key : verdict`")
            cut = words.index(":")
            key = self.outer.key_of(key_types, item[:cut], item[0])
            expr.mapping.append((key, self.outer.verdict_of(item[cut + 1 :])))

    def until_close(self) -> list[Tok]:
        depth = 1
        out: list[Tok] = []
        while True:
            if self.i >= len(self.toks):
                raise self.error("unclosed `{`")
            tok = self.toks[self.i]
            self.i += 1
            if tok.text == "{":
                depth += 1
            elif tok.text == "}":
                depth -= 1
                if depth == 0:
                    return out
            out.append(tok)

    def set_ref(self, word: str, key_types: list[str], want_map: bool) -> str:
        name = word[1:]
        nset = self.table.sets.get(name)
        if nset is None:
            raise self.error(f"set {name} does not exist in table {self.table.key}")
        if want_map and nset.data_type != "verdict":
            raise self.error(f"{name} is not a verdict map")
        if len(nset.key_types) != len(key_types):
            raise self.error(
                f"{name} has keys of {len(nset.key_types)} parts, the expression {len(key_types)}"
            )
        return name

    def is_mark_set(self) -> bool:
        w0, w1, w2 = self.peek(), self.peek(1), self.peek(2)
        return (w0 == "mark" and w1 == "set") or (w0 in ("meta", "ct") and w1 == "mark" and w2 == "set")

    def mark_set(self) -> Expr:
        start = self.i
        self.i += 2 if self.peek() == "mark" else 3
        if self.peek() == "meta":
            self.i += 1
        op, value = "set", None
        if self.peek() == "mark":
            self.i += 1
            opword = self.next()
            op = {"|": "or", "or": "or", "^": "xor", "xor": "xor", "&": "and", "and": "and"}.get(opword, "")
            if not op:
                raise self.error(f"unsupported mark operation {opword!r}")
        try:
            value = int(self.next(), 0)
        except ValueError:
            raise self.error("mark values are numbers") from None
        return Expr("markset", mark=(op, value), text=" ".join(t.text for t in self.toks[start : self.i]))

    def field(self) -> str:
        w0 = self.next()
        if w0 in SHORT_FIELDS:
            return SHORT_FIELDS[w0]
        if w0 == "fib":
            which = self.next()
            if which not in ("saddr", "daddr"):
                raise self.error("fib looks up saddr or daddr")
            while self.peek() == ".":
                self.i += 2  # `. iif` / `. oif` qualifiers do not change a local-address test
            result = self.next()
            if result != "type":
                raise self.error("only `fib ... type` is understood")
            return f"fib {which} type"
        w1 = self.next() if self.i < len(self.toks) else ""
        name = f"{w0} {w1}"
        if name not in FIELDS:
            raise self.error(f"unsupported expression {name!r}")
        return name

    def match(self) -> Expr:
        start = self.i
        fields = [self.field()]
        while self.peek() == ".":
            self.i += 1
            fields.append(self.field())
        expr = Expr("match", fields=fields)
        if self.peek() in ("&", "and", "|", "or", "^", "xor"):
            opword = self.next()
            op = {"&": "and", "|": "or", "^": "xor"}.get(opword, opword)
            try:
                expr.mask = (op, int(self.next(), 0))
            except ValueError:
                raise self.error("a mask is a number") from None
        if self.peek() in ("==", "!="):
            expr.op = self.next()
        elif self.peek() in ("<", ">", "<=", ">="):
            raise self.error("ordering comparisons are not supported")
        types = [FIELDS[f] for f in fields]
        nxt = self.peek()
        if nxt is None:
            raise self.error("expression without a value")
        if nxt == "vmap":
            self.i += 1
            expr.kind = "vmap"
            self.vmap_target(expr, types)
        elif nxt.startswith("@"):
            self.i += 1
            expr.set_ref = self.set_ref(nxt, types, want_map=False)
        elif nxt == "{":
            self.i += 1
            expr.values = [
                self.outer.key_of(types, item, item[0]) for item in _split_commas(self.until_close()) if item
            ]
        else:
            toks = [self.toks[self.i]]
            self.i += 1
            while self.peek() == "." and len(types) > 1:
                self.i += 1
                toks.append(self.toks[self.i])
                self.i += 1
            if len(types) == 1 and types[0] in ("ctstate", "ctstatus") and self.peek() == ",":
                while self.peek() == ",":  # `ct state established,related`: any of the flags
                    self.i += 1
                    toks.append(self.toks[self.i])
                    self.i += 1
                expr.values = [self.outer.key_of(types, [t], t) for t in toks]
            else:
                parts = [[t] for t in toks]
                if len(parts) != len(types):
                    raise self.error("the value does not fit the expression")
                expr.values = [tuple(self.outer.value(k, p) for k, p in zip(types, parts, strict=True))]
        expr.text = " ".join(t.text for t in self.toks[start : self.i])
        return expr


def parse_value(kind: str, text: str) -> object:
    """One component of a key, normalised so that packet values compare equal to it."""
    if kind == "addr":
        if text.count(".") == 3 and "/" not in text and "-" not in text:
            o1, o2, o3, o4 = text.split(".")  # the common case, without ipaddress
            if o1.isdigit() and o2.isdigit() and o3.isdigit() and o4.isdigit():
                a, b, c, d = int(o1), int(o2), int(o3), int(o4)
                if a <= 255 and b <= 255 and c <= 255 and d <= 255:
                    return (4, (a << 24) | (b << 16) | (c << 8) | d)
        if "-" in text and "/" not in text:
            lo, hi = text.split("-", 1)
            return ("range", parse_addr(lo), parse_addr(hi))
        net: Net = parse_net(text)
        bits = 32 if net[0] == 4 else 128
        if net[2] == (1 << bits) - 1:
            return (net[0], net[1])
        return ("range", (net[0], net[1]), (net[0], net[1] | (~net[2] & ((1 << bits) - 1))))
    if kind == "proto":
        return PROTO_NUMBERS.get(text, text.lower())
    if kind == "port":
        if "-" in text:
            lo, hi = text.split("-", 1)
            return ("range", _port(lo), _port(hi))
        return _port(text)
    if kind in ("int",):
        return int(text, 0)
    if kind == "ctstate":
        if text not in CT_STATES:
            raise ValueError("unknown conntrack state")
        return text
    if kind in ("fibtype", "ctstatus", "nfproto", "ifname"):
        return text
    raise ValueError(f"unsupported type {kind}")


def _port(text: str) -> int:
    if text.isdigit():
        value = int(text)
    else:
        try:
            value = socket.getservbyname(text)
        except OSError:
            raise ValueError("not a port") from None
    if not 0 <= value <= 65535:
        raise ValueError("port out of range")
    return value


def _nat_target(text: str) -> tuple[str | None, int | None]:
    if text.startswith(":"):
        return None, _port(text[1:])
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = _port(rest[1:]) if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = _port(p.split("-")[0])
    else:
        host, port = text, None
    host = host.split("-")[0]
    parse_addr(host)
    return host, port


class _SparseLines(dict):
    """The lines of a large text that were looked at, by index, for error messages."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> str:
        return self.get(index, "")


class _LazyDict(dict):
    """Chains (or sets) of one table: those already read, plus ones located in the text (with
    one search) the first time something names them."""

    def __init__(self, finder: Callable[[str], object]) -> None:
        super().__init__()
        self.finder = finder
        self.absent: set[str] = set()
        self.busy: set[str] = set()

    def _find(self, name: str) -> object:
        if name in self.absent or name in self.busy:
            return None
        self.busy.add(name)  # the finder may look the name up while building it
        try:
            found = self.finder(name)
        finally:
            self.busy.discard(name)
        if found is None:
            self.absent.add(name)
        else:
            dict.__setitem__(self, name, found)
        return found

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name) or (isinstance(name, str) and self._find(name) is not None)

    def get(self, name: str, default: object = None) -> object:  # type: ignore[override]
        found = dict.get(self, name)
        if found is None:
            found = self._find(name)
        return default if found is None else found

    def __getitem__(self, name: str) -> object:
        found = self.get(name)
        if found is None:
            raise KeyError(name)
        return found


_ChainDict = _LazyDict


# Lines other than `add rule`, `add element` and `add chain` (found at C speed); chains
# declared with a `{ type ... hook ... }` body are searched for separately.
_OTHER_LINE = re.compile(r"\n(?!add rule |add element |add chain |[ \t]*(?:\n|$)|[ \t]*#)")
_CHAIN_WITH_BODY = re.compile(r"\nadd chain [^\n{]*\{")


class _FastTransaction:
    """A large `nft -f` transaction read without walking its lines one by one: the few
    statements that declare tables, sets, maps and base chains go through the token parser;
    `add chain`, `add rule` and `add element` lines are located with one C-level search per
    chain or set, when a packet needs them. Anything else (flush, delete, insert, `table {`
    blocks) returns None, and the line-by-line parser reads the text instead."""

    def __init__(self, text: str) -> None:
        self.t = text
        self.index = LineIndex(text)
        self.parser = _Parser("")
        self.parser.lines = _SparseLines(text.count("\n") + 1)  # type: ignore[assignment]

    def line_at(self, pos: int) -> tuple[int, str]:
        """(line number, text) of the line starting at offset `pos`."""
        end = self.t.find("\n", pos)
        text = self.t[pos : end if end >= 0 else len(self.t)]
        no = self.index.line_of(pos)
        self.parser.lines[no - 1] = text
        return no, text

    def parse(self) -> NftRuleset | None:
        t = self.t
        starts = [m.start() + 1 for m in _OTHER_LINE.finditer(t)]
        starts += [m.start() + 1 for m in _CHAIN_WITH_BODY.finditer(t)]
        first_end = t.find("\n")
        first = "\n" + t[: first_end if first_end >= 0 else len(t)]
        if _OTHER_LINE.match(first) or _CHAIN_WITH_BODY.match(first):
            starts.append(0)
        starts.sort()
        if len(starts) > 5000:
            return None
        parser = self.parser
        consumed = -1
        for pos in starts:
            if pos <= consumed:
                continue  # a continuation line of the previous statement
            no, line = self.line_at(pos)
            words = line.split()
            if words[:1] != ["add"] or words[1:2] == ["rule"]:
                return None  # flush/delete/insert/`table {`, or a rule over several lines
            # the statement runs on while its braces are open
            lines_text = [line]
            depth = _brace_delta(line)
            end = pos + len(line)
            while depth > 0:
                if end >= len(t):
                    raise RuleParseError(no, line, "`{` is never closed")
                _, more = self.line_at(end + 1)
                lines_text.append(more)
                depth += _brace_delta(more)
                end += 1 + len(more)
            consumed = end
            toks: list[Tok] = []
            for k, text in enumerate(lines_text):
                toks.extend(Tok(m.group(0), no + k) for m in _TOKEN.finditer(_strip_hash_comment(text)))
                toks.append(Tok("\n", no + k))
            parser.toks, parser.i = toks, 0
            while True:
                parser.skip_newlines()
                if parser.peek() is None:
                    break
                parser.command()
        ruleset = parser.ruleset
        for table in ruleset.tables.values():
            declared = table.chains
            table.chains = _ChainDict(lambda name, table=table: self.find_chain(table, name))
            dict.update(table.chains, declared)
            for nset in table.sets.values():
                nset.loader = lambda nset, table=table: self.load_elements(table, nset)
                nset.unscanned = True
        ruleset.rule_loader = self.load_rules
        return ruleset

    def find_chain(self, table: NftTable, name: str) -> NftChain | None:
        needle = f"\nadd chain {table.family} {table.name} {name}"
        pos = self.t.find(needle)
        while pos >= 0:
            after = pos + len(needle)
            if after >= len(self.t) or self.t[after] in "\n \t":
                no, _ = self.line_at(pos + 1)
                return NftChain(name, line_no=no)
            pos = self.t.find(needle, after)
        return None

    def load_rules(self, table: NftTable, chain: NftChain) -> list[LazyNftRule]:
        prefix = f"add rule {table.family} {table.name} {chain.name} "
        needle = "\n" + prefix
        rules = []
        pos = self.t.find(needle)
        while pos >= 0:
            no, line = self.line_at(pos + 1)
            rules.append(LazyNftRule(self.parser, table, chain.name, no, line[len(prefix) :], line.strip()))
            pos = self.t.find(needle, pos + 1 + len(line))
        return rules

    def load_elements(self, table: NftTable, nset: NftSet) -> None:
        t = self.t
        needle = f"\nadd element {table.family} {table.name} {nset.name} {{"
        found = []
        pos = t.find(needle)
        no = self.index.line_of(pos + 1) if pos >= 0 else 0
        last = pos
        while pos >= 0:
            no += t.count("\n", last, pos)  # counted as we go: one pass over the text
            end = t.find("\n", pos + 1)
            line = t[pos + 1 : end if end >= 0 else len(t)]
            self.parser.lines[no - 1] = line
            found.append((no, line[len(needle) - 1 :].rstrip()[:-1]))
            last = pos
            pos = t.find(needle, pos + 1 + len(line))
        nset.loader = self.parser.load_set
        nset.unscanned = False
        nset.pending[:0] = found
        self.parser.load_set(nset)


# `nft list ruleset` output: only table blocks at the left margin, and inside a table only
# set/map/chain blocks, comments and flags one tab in. Anything else: the line parser.
_LISTING_OUTSIDE = re.compile(
    r"\n(?!\t|table \S+ \S+ \{[ \t]*(?:\n|$)|\}[ \t]*(?:\n|$)|[ \t]*(?:\n|$)|[ \t]*#)"
)
_LISTING_TABLE_LEVEL = re.compile(
    r"\n\t(?!set \S+ \{|map \S+ \{|chain \S+ \{|comment |flags |\}|\t|[ \t]*(?:\n|$))"
)
_LISTING_HOOK = re.compile(r"\n\t\ttype \S+ hook ")


class _FastListing:
    """A large `nft list ruleset` dump read block by block: a chain or set block is located
    with one search when something names it (base chains up front, found by their `type ...
    hook` line), and its rules and elements are parsed when a packet needs them."""

    def __init__(self, text: str) -> None:
        self.t = "\n" + text if not text.startswith("\n") else text
        self.shift = 1 if not text.startswith("\n") else 0
        self.index = LineIndex(self.t, first=1 - self.shift)
        self.parser = _Parser("")
        self.parser.lines = _SparseLines(text.count("\n") + 1)  # type: ignore[assignment]

    def line_no(self, pos: int) -> int:
        return self.index.line_of(pos)

    def parse(self) -> NftRuleset | None:
        t = self.t
        if _LISTING_OUTSIDE.search(t) or _LISTING_TABLE_LEVEL.search(t):
            return None
        ruleset = self.parser.ruleset
        pos = t.find("\ntable ")
        if pos < 0:
            return None
        spans: list[tuple[NftTable, int, int]] = []
        while pos >= 0:
            head_end = t.find("\n", pos + 1)
            words = t[pos + 1 : head_end].split()
            if len(words) != 4 or words[1] not in FAMILIES:
                return None
            end = t.find("\n}", head_end)
            if end < 0:
                return None
            table = self.parser.table_of(words[1], words[2], create=True)
            spans.append((table, head_end, end))
            pos = t.find("\ntable ", end + 2)
        for table, start, end in spans:
            table.chains = _LazyDict(lambda name, tb=table, a=start, b=end: self.find_chain(tb, name, a, b))
            table.sets = _LazyDict(lambda name, tb=table, a=start, b=end: self.find_set(tb, name, a, b))
            for m in _LISTING_HOOK.finditer(t, start, end):
                header = t.rfind("\n\tchain ", start, m.start())
                name = t[header + len("\n\tchain ") : t.find(" {", header)]
                table.chains.get(_unquote(name))
        return ruleset

    def _header(self, needle: str, start: int, end: int) -> int:
        """Offset of a block header line `needle` (possibly followed by `# handle N`)."""
        pos = self.t.find(needle, start, end)
        while pos >= 0 and self.t[pos + len(needle) : pos + len(needle) + 1] not in ("\n", " ", ""):
            pos = self.t.find(needle, pos + 1, end)
        return pos

    def block(self, header: int, end: int) -> tuple[int, list[tuple[int, str]]]:
        """(line number of the header, [(line number, text)] of the block's inner lines)."""
        t = self.t
        close = t.find("\n\t}", header + 1, end + 1)
        if close < 0:
            raise RuleParseError(
                self.line_no(header + 1), t[header + 1 : t.find("\n", header + 1)], "block is not closed"
            )
        first = self.line_no(header + 1)
        body = t[t.find("\n", header + 1) + 1 : close].split("\n")
        lines = [(first + 1 + k, line) for k, line in enumerate(body)]
        for no, line in lines:
            self.parser.lines[no - 1] = line
        self.parser.lines[first - 1] = t[header + 1 : t.find("\n", header + 1)]
        return first, lines

    def find_chain(self, table: NftTable, name: str, start: int, end: int) -> NftChain | None:
        header = self._header(f"\n\tchain {name} {{", start, end)
        if header < 0:
            return None
        first, lines = self.block(header, end)
        chain = NftChain(name, line_no=first)
        parser = self.parser
        for no, raw in lines:
            line = _strip_hash_comment(raw).strip()
            if not line:
                continue
            if line.startswith(("type ", "policy ", "comment ", "devices ", "device ")):
                parser.toks = [Tok(m.group(0), no) for m in _TOKEN.finditer(line)] + [Tok("\n", no)]
                parser.i = 0
                word = parser.peek()
                if word == "type":
                    parser.chain_spec(chain)
                else:
                    parser.i += 1
                    value = parser.word(word or "")
                    if word == "policy":
                        chain.policy = value
            else:
                chain.rules.append(LazyNftRule(parser, table, name, no, line, line))
        return chain

    def find_set(self, table: NftTable, name: str, start: int, end: int) -> NftSet | None:
        header = -1
        kind = "set"
        for kind in ("set", "map"):
            header = self._header(f"\n\t{kind} {name} {{", start, end)
            if header >= 0:
                break
        if header < 0:
            return None
        first, lines = self.block(header, end)
        toks: list[Tok] = []
        elements: list[tuple[int, str]] = []
        k = 0
        while k < len(lines):
            no, raw = lines[k]
            line = _strip_hash_comment(raw).strip()
            if line.startswith("elements = {"):
                parts = [line]
                depth = _brace_delta(line)
                while depth > 0 and k + 1 < len(lines):
                    k += 1
                    more = lines[k][1].strip()
                    parts.append(more)
                    depth += _brace_delta(more)
                text = " ".join(parts)
                elements.append((no, text[len("elements = {") : text.rindex("}")]))
            elif line:
                toks.extend(Tok(m.group(0), no) for m in _TOKEN.finditer(line))
                toks.append(Tok("\n", no))
            k += 1
        parser = self.parser
        parser.toks, parser.i = [*toks, Tok("}", first + len(lines) + 1)], 0
        parser.set_body(table, name, Tok(kind, first))
        nset = dict.get(table.sets, name)
        if nset is None:
            raise RuleParseError(first, parser.lines[first - 1], f"{kind} {name} has no type")
        dict.pop(table.sets, name, None)  # the lazy dict records it when this returns
        nset.pending.extend(elements)
        return nset


@lru_cache(maxsize=4096)
def _cached_value(kind: str, text: str) -> object:
    return parse_value(kind, text)


_ITEM = re.compile(r'(?:[^,"]|"(?:[^"\\]|\\.)*")+')
_ELEMENT_OPTIONS = re.compile(
    r'\s+(?:comment\s+"(?:[^"\\]|\\.)*"|timeout\s+\S+|expires\s+\S+|counter(?:\s+packets\s+\d+\s+bytes\s+\d+)?)'
)


def _brace_delta(line: str) -> int:
    if '"' in line:
        line = re.sub(r'"(?:[^"\\]|\\.)*"', "", line)
    return line.count("{") - line.count("}")


def _strip_hash_comment(line: str) -> str:
    """Drop a `# ...` comment (nft -a prints `# handle N`), not a `#` inside quotes."""
    if "#" not in line:
        return line
    if '"' not in line:
        return line.split("#", 1)[0]
    out, quoted = [], False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif ch == "#" and not quoted:
            break
        out.append(ch)
    return "".join(out)


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1].replace('\\"', '"')
    return text


def _split_commas(toks: list[Tok]) -> list[list[Tok]]:
    items: list[list[Tok]] = [[]]
    depth = 0
    for tok in toks:
        if tok.text == "{":
            depth += 1
        elif tok.text == "}":
            depth -= 1
        if tok.text == "," and depth == 0:
            items.append([])
        elif tok.text != "\n":
            items[-1].append(tok)
    return items


def _split_dots(toks: list[Tok]) -> list[list[Tok]]:
    parts: list[list[Tok]] = [[]]
    for tok in toks:
        if tok.text == ".":
            parts.append([])
        else:
            parts[-1].append(tok)
    return parts


def _strip_element_options(toks: list[Tok]) -> list[Tok]:
    """Drop per-element `comment "..."`, `timeout 3h`, `expires 1m`, `counter ...`."""
    out: list[Tok] = []
    i = 0
    while i < len(toks):
        word = toks[i].text
        if word in ("comment", "timeout", "expires"):
            i += 2
        elif word == "counter":
            i += 1
            while i < len(toks) and toks[i].text in ("packets", "bytes"):
                i += 2
        else:
            out.append(toks[i])
            i += 1
    return out
