"""Every scheduler of the user-space proxy, with the semantics IPVS documents (man ipvsadm).

A scheduler picks one `Backend` for a new connection. Backends are shared, live objects: the
forwarder updates `active` / `inactive` as connections open, half-close and end, so the
least-connection family always sees the current load. A scheduler only ever looks at the
backends of one service port; `update()` gives it a new set when endpoints change.

`pick(ctx, usable)` returns a backend for which `usable(backend)` is true, or None. `usable`
is how the caller excludes backends that are marked down by passive health checks or were
already tried for this connection; schedulers with a fixed table (dh, sh, mh) then fall back
to the next entry of their table, as IPVS's sh-fallback / mh-fallback flags do, so a source
stays where it was as long as its backend is usable.

IPVS terms kept here: weight 0 means "quiesced" (no new connections); a connection's
"overhead" is `active * 256 + inactive` (ip_vs_dest_conn_overhead); inactive connections are
the ones that have half-closed (the proxy's analogue of IPVS's FIN_WAIT/TIME_WAIT entries).
"""

from __future__ import annotations

import hashlib
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import reduce

from svcnet.proxy.ipnet import join_host_port

DEFAULT_SCHEDULER = "random"
# IPVS's default Maglev table size (CONFIG_IP_VS_MH_TAB_INDEX=12): a prime well above 100 x N.
DEFAULT_MAGLEV_TABLE_SIZE = 4093
HASH_TABLE_SIZE = 256  # IPVS dh/sh: 1 << IP_VS_{DH,SH}_TAB_BITS


@dataclass(eq=False)
class Backend:
    """One endpoint (ip:port) as the schedulers and the forwarder see it."""

    ip: str
    port: int
    weight: int = 1
    active: int = 0
    inactive: int = 0
    # passive health: no new connections before `down_until` (monotonic seconds)
    down_until: float = 0.0
    failures: int = 0
    # counters exposed as metrics
    connections: int = 0
    choices: int = 0
    retries: int = 0
    bytes_in: int = 0  # client -> backend
    bytes_out: int = 0  # backend -> client
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = join_host_port(self.ip, self.port)

    @property
    def overhead(self) -> int:
        return (self.active << 8) + self.inactive

    def __repr__(self) -> str:
        return f"Backend({self.key} w={self.weight} a={self.active} i={self.inactive})"


@dataclass(frozen=True)
class PickContext:
    client_ip: str = ""
    client_port: int = 0
    dest_ip: str = ""  # the service address the client connected to
    dest_port: int = 0


Usable = Callable[[Backend], bool]


def _all(_b: Backend) -> bool:
    return True


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same in every process (Python's hash() is salted)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class Scheduler(ABC):
    name = ""

    def __init__(self) -> None:
        self.backends: list[Backend] = []

    def update(self, backends: Sequence[Backend]) -> None:
        """New backend set (order matters for rr/wrr/dh/sh, as the order of `ipvsadm -a`)."""
        self.backends = list(backends)

    def candidates(self, usable: Usable) -> list[Backend]:
        return [b for b in self.backends if b.weight > 0 and usable(b)]

    def first_usable(self, usable: Usable) -> Backend | None:
        """The table schedulers' last resort: the first usable server in list order."""
        return next((b for b in self.backends if b.weight > 0 and usable(b)), None)

    @abstractmethod
    def pick(self, ctx: PickContext, usable: Usable = _all) -> Backend | None: ...


class RandomScheduler(Scheduler):
    """What iptables mode does: every usable endpoint with equal probability."""

    name = "random"

    def __init__(self, rng: random.Random | None = None) -> None:
        super().__init__()
        self.rng = rng or random.Random()

    def pick(self, ctx: PickContext, usable: Usable = _all) -> Backend | None:
        cands = self.candidates(usable)
        return self.rng.choice(cands) if cands else None


class RoundRobinScheduler(Scheduler):
    """rr: the next usable server after the last one chosen (ip_vs_rr)."""

    name = "rr"

    def __init__(self) -> None:
        super().__init__()
        self._last: Backend | None = None

    def update(self, backends: Sequence[Backend]) -> None:
        super().update(backends)
        if self._last not in self.backends:
            self._last = None

    def pick(self, ctx: PickContext, usable: Usable = _all) -> Backend | None:
        n = len(self.backends)
        start = self.backends.index(self._last) + 1 if self._last is not None else 0
        for i in range(n):
            b = self.backends[(start + i) % n]
            if b.weight > 0 and usable(b):
                self._last = b
                return b
        return None


class WeightedRoundRobinScheduler(Scheduler):
    """wrr: ip_vs_wrr's sequence: the current weight steps down by the gcd of all weights from
    the maximum; a server is chosen while its weight >= the current weight. With weights 4:3:2
    the sequence is AABABCABC, so over a multiple of the weight sum shares are exact."""

    name = "wrr"

    def __init__(self) -> None:
        super().__init__()
        self._index = -1
        self._cw = 0

    def update(self, backends: Sequence[Backend]) -> None:
        super().update(backends)
        self._index = -1
        self._cw = 0

    def pick(self, ctx: PickContext, usable: Usable = _all) -> Backend | None:
        weights = [b.weight for b in self.backends if b.weight > 0]
        if not weights:
            return None
        max_w = max(weights)
        step = reduce(math.gcd, weights)
        n = len(self.backends)
        # At most one full cycle of (max_w / step) passes over n servers.
        for _ in range(n * (max_w // step) + n):
            self._index = (self._index + 1) % n
            if self._index == 0:
                self._cw -= step
                if self._cw <= 0:
                    self._cw = max_w
            b = self.backends[self._index]
            if b.weight >= self._cw and b.weight > 0 and usable(b):
                return b
        return None


class LeastConnectionScheduler(Scheduler):
    """lc: the server with the least overhead (active * 256 + inactive); ties to the first."""

    name = "lc"

    def pick(self, ctx: PickContext, usable: Usable = _all) -> Backend | None:
        best: Backend | None = None
        for b in self.candidates(usable):
            if best is None or b.overhead < best.overhead:
                best = b
        return best


class WeightedLeastConnectionScheduler(Scheduler):
    """wlc: the least overhead / weight (IPVS's default scheduler)."""

    name = "wlc"

    @staticmethod
    def overhead(b: Backend) -> int:
        return b.overhead

    def pick(self, ctx: PickContext, usable: Usable = _all) -> Backend | None:
        best: Backend | None = None
        best_oh = 0
        for b in self.candidates(usable):
            oh = self.overhead(b)
            # oh / b.weight < best_oh / best.weight, in integers as IPVS compares them
            if best is None or oh * best.weight < best_oh * b.weight:
                best, best_oh = b, oh
        return best


class ShortestExpectedDelayScheduler(WeightedLeastConnectionScheduler):
    """sed: the least (active + 1) / weight; inactive connections do not count."""

    name = "sed"

    @staticmethod
    def overhead(b: Backend) -> int:
        return b.active + 1


class NeverQueueScheduler(ShortestExpectedDelayScheduler):
    """nq: an idle server (no active connection) if there is one, else as sed."""

    name = "nq"

    def pick(self, ctx: PickContext, usable: Usable = _all) -> Backend | None:
        for b in self.candidates(usable):
            if b.active == 0:
                return b
        return super().pick(ctx, usable)


class _HashTableScheduler(Scheduler):
    """dh and sh: a 256-bucket table filled from the server list in order, then looked up by a
    hash of an address. Falls back to the next buckets when the hashed server is not usable."""

    def __init__(self, table_size: int = HASH_TABLE_SIZE) -> None:
        super().__init__()
        self.table_size = table_size
        self.table: list[Backend | None] = []

    def bucket_weight(self, b: Backend) -> int:
        return 1

    def update(self, backends: Sequence[Backend]) -> None:
        super().update(backends)
        live = [b for b in self.backends if b.weight > 0]
        self.table = []
        if not live:
            return
        i = count = 0
        for _ in range(self.table_size):
            b = live[i % len(live)]
            self.table.append(b)
            count += 1
            if count >= self.bucket_weight(b):
                i += 1
                count = 0

    @abstractmethod
    def key(self, ctx: PickContext) -> str: ...

    def pick(self, ctx: PickContext, usable: Usable = _all) -> Backend | None:
        if not self.table:
            return None
        start = stable_hash(self.key(ctx)) % self.table_size
        for off in range(self.table_size):
            b = self.table[(start + off) % self.table_size]
            if b is not None and b.weight > 0 and usable(b):
                return b
        # Weights summing past the table size leave some servers without a bucket (as in
        # IPVS); rather than fail while one of them is usable, take it.
        return self.first_usable(usable)


class DestinationHashingScheduler(_HashTableScheduler):
    """dh: by the destination address, which for this proxy is the service address the client
    connected to. Every connection to one service IP goes to one server while it is usable."""

    name = "dh"

    def key(self, ctx: PickContext) -> str:
        return ctx.dest_ip


class SourceHashingScheduler(_HashTableScheduler):
    """sh: by the client's address; a server of weight w holds w consecutive buckets. With
    `hash_port` the source port is hashed too (ipvsadm's sh-port flag)."""

    name = "sh"

    def __init__(self, table_size: int = HASH_TABLE_SIZE, hash_port: bool = False) -> None:
        super().__init__(table_size)
        self.hash_port = hash_port

    def bucket_weight(self, b: Backend) -> int:
        return b.weight

    def key(self, ctx: PickContext) -> str:
        return f"{ctx.client_ip}:{ctx.client_port}" if self.hash_port else ctx.client_ip


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % d for d in range(2, math.isqrt(n) + 1))


class MaglevScheduler(Scheduler):
    """mh: Maglev consistent hashing (Eisenbud et al., NSDI 2016), as ip_vs_mh does it.

    Each server has a permutation of the M table slots (offset and skip from two hashes of its
    address); servers take turns claiming their next free preferred slot, a server of weight w
    taking w turns per round (weights divided by their gcd). A lookup hashes the client address
    (and port with `hash_port`) to a slot. When a server leaves, only about its 1/N share of
    slots move: the others keep their preferred slots. M must be prime.
    """

    name = "mh"

    def __init__(self, table_size: int = DEFAULT_MAGLEV_TABLE_SIZE, hash_port: bool = False) -> None:
        super().__init__()
        if not is_prime(table_size):
            raise ValueError(f"Maglev table size must be a prime, not {table_size}")
        self.table_size = table_size
        self.hash_port = hash_port
        self.table: list[Backend] = []

    def update(self, backends: Sequence[Backend]) -> None:
        super().update(backends)
        live = [b for b in self.backends if b.weight > 0]
        m = self.table_size
        self.table = []
        if not live:
            return
        g = reduce(math.gcd, (b.weight for b in live))
        turns = [b.weight // g for b in live]
        offsets, skips = [], []
        for b in live:
            h = stable_hash(b.key)
            offsets.append((h & 0xFFFFFFFF) % m)
            skips.append(((h >> 32) % (m - 1)) + 1)
        nexts = [0] * len(live)
        table: list[int] = [-1] * m
        filled = 0
        while filled < m:
            for i in range(len(live)):
                for _ in range(turns[i]):
                    # the next slot of server i's permutation that is still free
                    while True:
                        slot = (offsets[i] + nexts[i] * skips[i]) % m
                        nexts[i] += 1
                        if table[slot] < 0:
                            break
                    table[slot] = i
                    filled += 1
                    if filled == m:
                        break
                if filled == m:
                    break
        self.table = [live[i] for i in table]

    def key(self, ctx: PickContext) -> str:
        return f"{ctx.client_ip}:{ctx.client_port}" if self.hash_port else ctx.client_ip

    def pick(self, ctx: PickContext, usable: Usable = _all) -> Backend | None:
        if not self.table:
            return None
        key = self.key(ctx)
        b = self.table[stable_hash(key) % self.table_size]
        if usable(b):
            return b
        # mh-fallback: rehash with a salt until a usable server turns up, then scan.
        for salt in range(1, 8):
            b = self.table[stable_hash(f"{salt}/{key}") % self.table_size]
            if usable(b):
                return b
        return self.first_usable(usable)


class PowerOfTwoChoicesScheduler(Scheduler):
    """p2c: two distinct usable servers at random, the one with fewer active connections per
    weight wins (Mitzenmacher's power of two choices)."""

    name = "p2c"

    def __init__(self, rng: random.Random | None = None) -> None:
        super().__init__()
        self.rng = rng or random.Random()

    def pick(self, ctx: PickContext, usable: Usable = _all) -> Backend | None:
        cands = self.candidates(usable)
        if len(cands) <= 1:
            return cands[0] if cands else None
        a, b = self.rng.sample(cands, 2)
        # a.active / a.weight <= b.active / b.weight
        return a if a.active * b.weight <= b.active * a.weight else b


SCHEDULERS: dict[str, type[Scheduler]] = {
    cls.name: cls for cls in (
        RandomScheduler, RoundRobinScheduler, WeightedRoundRobinScheduler, LeastConnectionScheduler,
        WeightedLeastConnectionScheduler, ShortestExpectedDelayScheduler, NeverQueueScheduler,
        DestinationHashingScheduler, SourceHashingScheduler, MaglevScheduler, PowerOfTwoChoicesScheduler)
}


def make_scheduler(name: str, maglev_table_size: int = DEFAULT_MAGLEV_TABLE_SIZE) -> Scheduler:
    """A scheduler by its ipvsadm name; ValueError names the valid ones."""
    cls = SCHEDULERS.get(name)
    if cls is None:
        raise ValueError(f"unknown scheduler {name!r} (one of: {', '.join(SCHEDULERS)})")
    if cls is MaglevScheduler:
        return MaglevScheduler(maglev_table_size)
    return cls()
