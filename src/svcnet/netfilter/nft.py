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
from functools import lru_cache

from svcnet.netfilter.addr import Net, parse_addr, parse_net
from svcnet.netfilter.errors import RuleParseError
from svcnet.netfilter.nft_model import (
    CT_STATES,
    FAMILIES,
    FIELDS,
    PRIORITY_NAMES,
    PROTO_NUMBERS,
    SHORT_FIELDS,
    TYPE_NAMES,
    VERDICT_WORDS,
    Expr,
    NftChain,
    NftRule,
    NftRuleset,
    NftSet,
    NftTable,
    Tok,
    Verdict,
)

__all__ = [
    "FAMILIES",
    "LAZY_MIN_LINES",
    "Expr",
    "LazyNftRule",
    "NftChain",
    "NftRule",
    "NftRuleset",
    "NftSet",
    "NftTable",
    "Tok",
    "Verdict",
    "parse_nft",
    "parse_value",
]

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{};,\n]|[^\s{};,"]+')


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


# Below this many lines every rule and element is read at once, so that any error is reported
# up front; above it they are read when a packet first needs them (see docs/trace.md).
LAZY_MIN_LINES = 5000
# the lines of a chain block that are not rules
CHAIN_ATTRIBUTES = ("type ", "policy ", "comment ", "devices ", "device ")


def parse_nft(text: str, lazy: bool | None = None) -> NftRuleset:
    """Parse an `nft -f` transaction or `nft list ruleset` output. RuleParseError names the line."""
    if lazy is None:
        lazy = text.count("\n") >= LAZY_MIN_LINES
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
        # (table key, chain name) -> [(line number, rule text, text shown)], added at the end
        # so that a rule may name chains declared after it, as `nft list ruleset` prints them.
        # Keyed by chain: a transaction flushes every chain it writes (60k at 10k services),
        # and each flush drops that chain's pending rules.
        self.pending_rules: dict[tuple[str, str], list[tuple[int, str, str]]] = {}

    def pend_rule(self, key: str, chain: str, line_no: int, body: str, text: str) -> None:
        self.pending_rules.setdefault((key, chain), []).append((line_no, body, text))

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
                    self.next()  # `table`
                    self.table_block()
                elif tok in ("add", "create", "insert", "flush", "delete", "destroy"):
                    self.command()
                else:
                    raise self.error(f"unknown command {tok!r}")
            no = last + 1
        # Chains come in the order of their first pending rule (a flushed chain's entry is
        # dropped, so one added again comes later): the first missing one is the first in the text.
        for (key, chain_name), rules in self.pending_rules.items():
            table = self.ruleset.tables.get(key)
            chain = table.chains.get(chain_name) if table else None
            if table is None or chain is None:
                what = (
                    f"table {key} does not exist"
                    if table is None
                    else (f"chain {chain_name} does not exist in table {key}")
                )
                line_no = rules[0][0]
                raise RuleParseError(line_no, self.lines[line_no - 1], what)
            chain.rules.extend(LazyNftRule(self, table, chain_name, line_no, body, text)
                               for line_no, body, text in rules)
        return self.ruleset

    def fast_command(self, no: int, line: str) -> bool:
        """`add rule F T C ...`, `add element F T S { ... }`, `add chain F T C` and `flush chain
        F T C` (of an existing chain: errors take the token path) on one line."""
        if line.startswith("flush chain ") and "#" not in line:
            parts = line.split()
            table = self.ruleset.tables.get(f"{parts[2]} {parts[3]}") if len(parts) == 5 else None
            chain = table.chains.get(parts[4]) if table is not None else None
            if chain is None:
                return False
            chain.rules.clear()
            self.pending_rules.pop((table.key, chain.name), None)
            return True
        if not line.startswith("add ") or "#" in line:
            return False
        parts = line.split(None, 5)
        if len(parts) < 5 or parts[2] not in FAMILIES:
            return False
        key = f"{parts[2]} {parts[3]}"
        if parts[1] == "rule" and len(parts) == 6 and _brace_delta(line) == 0:
            self.pend_rule(key, parts[4], no + 1, parts[5], line)
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
            elif line.startswith(CHAIN_ATTRIBUTES):
                self.chain_attribute(chain, no)
            else:
                self.pend_rule(table.key, name, no + 1, line, line)
            no += 1
        raise RuleParseError(no, self.lines[-1], f"chain {name} is not closed with '}}'")

    def chain_attribute(self, chain: NftChain, no: int) -> None:
        """Line `no` (0-based) of a chain block, one of CHAIN_ATTRIBUTES: type/hook/priority
        and policy are kept, the others read and dropped."""
        self.toks, self.i = self.tokenize(no, no), 0
        word = self.peek()
        if word == "type":
            self.chain_spec(chain)
        else:
            self.i += 1
            value = self.word(word or "")
            if word == "policy":
                chain.policy = value

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

    def table_block(self) -> None:
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
            self.pend_rule(table.key, chain.name, tok.line, line, line)

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
                if item and not self.fast_element(nset, item):
                    toks = [Tok(m.group(0), line_no) for m in _TOKEN.finditer(item)]
                    self.elements(nset, toks)

    def fast_element(self, nset: NftSet, item: str) -> bool:
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
                for pending in [p for p in self.pending_rules if p[0] == table.key]:
                    del self.pending_rules[pending]
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
                self.pend_rule(table.key, chain.name, start.line, body, text)
        else:
            raise self.error(f"unsupported object {what!r}", start)

    def chain_command(self, verb: str, table: NftTable, name: str, start: Tok) -> None:
        if verb in ("delete", "destroy"):
            chain = table.chains.get(name)
            if chain is None and verb == "delete":
                raise self.error(f"chain {name} does not exist", start)
            if chain is not None and (chain.rules or self.pending_rules.get((table.key, name))):
                raise self.error(f"cannot delete chain {name}: it still has rules", start)
            table.chains.pop(name, None)
            return
        if verb == "flush":
            chain = table.chains.get(name)
            if chain is None:
                raise self.error(f"chain {name} does not exist", start)
            chain.rules.clear()
            self.pending_rules.pop((table.key, name), None)
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
