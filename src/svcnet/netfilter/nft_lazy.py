"""Reading a large nft rule set without walking every line in Python.

A large `nft -f` transaction is mostly one-line `add chain`, `add rule` and `add element`
statements; an `nft list ruleset` dump is table blocks of chain and set blocks. Both are read
here: the few statements or blocks that declare tables, sets, maps and base chains are parsed,
and a chain's rules or a map's elements are located with one C-level search over the text the
first time something names them. A text this reader does not handle (flush, delete, insert,
unusual layout) goes to the line-by-line parser in nft.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from svcnet.netfilter.errors import RuleParseError
from svcnet.netfilter.iptables import LineIndex
from svcnet.netfilter.nft import (
    _TOKEN,
    CHAIN_ATTRIBUTES,
    FAMILIES,
    LAZY_MIN_LINES,
    LazyNftRule,
    NftChain,
    NftRuleset,
    NftSet,
    NftTable,
    Tok,
    _brace_delta,
    _Parser,
    _strip_hash_comment,
    _unquote,
    parse_nft,
)


def load_nft(text: str, lazy: bool | None = None) -> NftRuleset:
    """Parse nft text; a large transaction or listing is read lazily (see the module docstring)."""
    if lazy is None:
        lazy = text.count("\n") >= LAZY_MIN_LINES
    if lazy:
        reader = _FastListing if text.lstrip().startswith("table ") else _FastTransaction
        fast = reader(text).parse()
        if fast is not None:
            return fast
    return parse_nft(text, lazy=lazy)


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
            table.chains = _LazyDict(lambda name, table=table: self.find_chain(table, name))
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
            if line.startswith(CHAIN_ATTRIBUTES):
                parser.chain_attribute(chain, no - 1)  # block() put the line in parser.lines
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
