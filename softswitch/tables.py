"""Match-action tables: entries keyed for P4Runtime, lookup compiled for the packet path.

Priorities follow P4Runtime (a higher number wins). All-exact tables are a dict on the key tuple;
tables with ternary/range/optional keys keep their entries sorted best-first and scan with one
masked compare of the concatenated key (plus interval checks for range fields). LPM tables (one
lpm key among exact ones, no priorities) keep one dict per prefix length and probe longest first.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


class TableFull(Exception):
    pass


class DuplicateEntry(Exception):
    pass


class EntryNotFound(Exception):
    pass


class InvalidEntry(Exception):
    pass


MATCH_TYPES = ("exact", "lpm", "ternary", "range", "optional", "valid")
PRIORITY_TYPES = frozenset(("ternary", "range", "optional"))


@dataclass(slots=True)
class MatchKey:
    name: str
    match_type: str
    bitwidth: int


@dataclass(slots=True, eq=False)
class Entry:
    key: tuple
    priority: int
    action: str
    params: tuple[int, ...]
    ttl_ns: int = 0
    packets: int = 0
    bytes: int = 0
    last_hit: float = 0.0
    handle: Any = field(default=None, repr=False)  # what the pipeline runs on a hit
    value: int = field(default=0, repr=False)  # concatenated match value (masked)
    mask: int = field(default=0, repr=False)
    ranges: tuple[tuple[int, int, int], ...] = field(default=(), repr=False)
    rank: tuple = field(default=(), repr=False)


@dataclass(slots=True)
class ActionInfo:
    name: str
    params: list[tuple[str, int]]  # (param name, bitwidth)


Resolver = Callable[[str], Any]


class Table:
    def __init__(
        self,
        name: str,
        keys: list[MatchKey],
        actions: dict[str, ActionInfo],
        size: int,
        *,
        support_timeout: bool = False,
        direct_counter: str | None = None,
        default_action: tuple[str, tuple[int, ...]] = ("NoAction", ()),
        const_default: bool = False,
        resolve: Resolver | None = None,
    ) -> None:
        self.name = name
        self.keys = keys
        self.action_names = list(actions)
        self.size = size
        self.support_timeout = support_timeout
        self.direct_counter = direct_counter
        self.const_default = const_default
        self.const_entries = False  # entries came from the JSON: the table is immutable
        self._actions = actions
        self._resolve = resolve or (lambda name: None)
        self._needs_priority = any(k.match_type in PRIORITY_TYPES for k in keys)
        self._all_exact = all(k.match_type in ("exact", "valid") for k in keys)
        # Every key field exact: a key of in-range ints is its own canonical form (the P4Runtime
        # write path, 10,000 entries a batch, skips _canonical's general checks).
        self._exact_fulls = (tuple((1 << max(k.bitwidth, 1)) - 1 for k in keys)
                             if all(k.match_type == "exact" for k in keys) else None)
        self._offsets = self._bit_offsets()
        self._by_key: dict[tuple, Entry] = {}
        self._sorted: list[Entry] = []
        # LPM tables (one lpm key, no priorities): one dict per prefix length, longest first.
        self._lpm = not self._needs_priority and not self._all_exact
        self._by_prefix: dict[int, dict[int, Entry]] = {}
        self._prefix_order: list[tuple[int, int, dict[int, Entry]]] = []  # (len, mask, dict)
        self._seq = itertools.count()
        self.default_action = default_action
        self.default_handle = self._resolve(default_action[0])

    def _bit_offsets(self) -> list[int]:
        offsets = []
        total = 0
        for k in reversed(self.keys):
            offsets.append(total)
            total += 0 if k.match_type == "range" else max(k.bitwidth, 1)
        return offsets[::-1]

    # ---- control plane -------------------------------------------------------------------
    def insert(self, key, priority, action, params, ttl_ns=0, now=0.0) -> Entry:
        if self.const_entries:
            raise InvalidEntry(f"{self.name}: table has const entries")
        canon, ident = self._ident(key, priority)
        if ident in self._by_key:
            raise DuplicateEntry(f"{self.name}: entry already exists for {key!r}")
        if len(self._by_key) >= self.size:
            raise TableFull(f"{self.name}: table full ({self.size} entries)")
        entry = Entry(canon, priority if self._needs_priority else 0, action, tuple(params))
        self._set_action(entry, action, params)
        entry.ttl_ns = ttl_ns
        entry.last_hit = now
        self._by_key[ident] = entry
        if self._all_exact:  # looked up by the key tuple: no masked value to compile
            return entry
        self._compile_match(entry)
        if self._lpm:
            self._index_prefix(entry, add=True)
        else:
            entry.rank = self._rank(entry)
            bisect.insort(self._sorted, entry, key=lambda e: e.rank)
        return entry

    def modify(self, key, priority, action, params, ttl_ns=None, now=0.0) -> Entry:
        entry = self._find(key, priority)
        self._set_action(entry, action, params)
        if ttl_ns is not None:
            entry.ttl_ns = ttl_ns
        return entry

    def delete(self, key, priority) -> Entry:
        entry = self._find(key, priority)
        del self._by_key[self._ident(key, priority)[1]]
        if self._lpm:
            self._index_prefix(entry, add=False)
        elif not self._all_exact:
            i = bisect.bisect_left(self._sorted, entry.rank, key=lambda e: e.rank)
            while self._sorted[i] is not entry:
                i += 1
            del self._sorted[i]
        return entry

    def get(self, key, priority) -> Entry | None:
        try:
            return self._by_key.get(self._ident(key, priority)[1])
        except InvalidEntry:
            return None

    def entries(self) -> Iterator[Entry]:
        return iter(list(self._by_key.values()))

    def action_info(self, action: str) -> ActionInfo | None:
        """The signature of ``action`` as this table accepts it (None if not allowed)."""
        return self._actions.get(action)

    def set_default(self, action: str, params) -> None:
        if self.const_default:
            raise InvalidEntry(f"{self.name}: the default action is const")
        self._check_action(action, params)
        self.default_action = (action, tuple(params))
        self.default_handle = self._resolve(action)

    def clear(self) -> None:
        self._by_key.clear()
        self._sorted.clear()
        self._by_prefix.clear()
        self._prefix_order.clear()

    def __len__(self) -> int:
        return len(self._by_key)

    def idle_entries(self, now: float) -> list[Entry]:
        return [
            e
            for e in self._by_key.values()
            if e.ttl_ns > 0 and (now - e.last_hit) * 1e9 >= e.ttl_ns
        ]

    # ---- packet path ---------------------------------------------------------------------
    def exact_lookup(self) -> Callable[[tuple], Entry | None] | None:
        """When every key is exact (or valid): the lookup itself, for generated code to call
        directly (the dict lives as long as the table); else None."""
        return self._by_key.get if self._all_exact else None

    def lookup(self, key: tuple) -> Entry | None:
        """The best entry for a packet's key tuple, or None on a miss."""
        if self._all_exact:
            return self._by_key.get(key)
        kint = 0
        for k, off, mk in zip(key, self._offsets, self.keys, strict=True):
            if mk.match_type != "range":
                kint |= k << off
        if self._lpm:
            for _, mask, entries in self._prefix_order:
                e = entries.get(kint & mask)
                if e is not None:
                    return e
            return None
        for e in self._sorted:
            if (kint & e.mask) == e.value and all(lo <= key[i] <= hi for i, lo, hi in e.ranges):
                return e
        return None

    # ---- helpers -------------------------------------------------------------------------
    def _find(self, key, priority) -> Entry:
        entry = self._by_key.get(self._ident(key, priority)[1])
        if entry is None:
            raise EntryNotFound(f"{self.name}: no entry for {key!r}")
        return entry

    def _check_action(self, action: str, params) -> ActionInfo:
        info = self._actions.get(action)
        if info is None:
            raise InvalidEntry(f"{self.name}: action {action!r} is not allowed in this table")
        if len(params) != len(info.params):
            raise InvalidEntry(
                f"{self.name}: action {action} takes {len(info.params)} params, got {len(params)}"
            )
        for (pname, width), v in zip(info.params, params, strict=True):
            if not isinstance(v, int) or v < 0 or v >> width:
                raise InvalidEntry(
                    f"{self.name}: {action} param {pname}={v!r} exceeds {width} bits"
                )
        return info

    def _set_action(self, entry: Entry, action: str, params) -> None:
        self._check_action(action, params)
        entry.action = action
        entry.params = tuple(params)
        entry.handle = self._resolve(action)

    def _ident(self, key, priority) -> tuple[tuple, tuple]:
        """(canonical key, identity): the identity adds the priority where it matters, and is
        the canonical key itself for priority-less tables (so exact lookups hit the dict)."""
        fulls = self._exact_fulls
        if fulls is not None and type(key) is tuple and len(key) == len(fulls):
            for v, full in zip(key, fulls, strict=True):
                if type(v) is not int or not 0 <= v <= full:
                    break
            else:
                return key, key
        if not isinstance(key, tuple) or len(key) != len(self.keys):
            raise InvalidEntry(f"{self.name}: expected {len(self.keys)} key fields, got {key!r}")
        canon = tuple(_canonical(k, v, self.name) for k, v in zip(self.keys, key, strict=True))
        return canon, ((canon, priority) if self._needs_priority else canon)

    def _compile_match(self, entry: Entry) -> None:
        value = mask = 0
        ranges = []
        for i, (k, v, off) in enumerate(zip(self.keys, entry.key, self._offsets, strict=True)):
            full = (1 << max(k.bitwidth, 1)) - 1
            t = k.match_type
            if t == "exact":
                fv, fm = v, full
            elif t == "valid":
                fv, fm = int(v), 1
            elif t == "lpm":
                fm = full ^ ((1 << (k.bitwidth - v[1])) - 1)
                fv = v[0] & fm
            elif t == "ternary":
                fv, fm = v[0] & v[1], v[1]
            elif t == "optional":
                fv, fm = (0, 0) if v[1] else (v[0], full)
            else:  # range
                ranges.append((i, v[0], v[1]))
                continue
            value |= fv << off
            mask |= fm << off
        entry.value, entry.mask, entry.ranges = value, mask, tuple(ranges)

    def _index_prefix(self, entry: Entry, add: bool) -> None:
        plen = self._prefix_len(entry)
        bucket = self._by_prefix.setdefault(plen, {})
        if add:
            bucket[entry.value] = entry
        else:
            bucket.pop(entry.value, None)
            if not bucket:
                del self._by_prefix[plen]
        self._prefix_order = [
            (n, next(iter(b.values())).mask, b)
            for n, b in sorted(self._by_prefix.items(), reverse=True)
        ]

    def _prefix_len(self, entry: Entry) -> int:
        keys = zip(self.keys, entry.key, strict=True)
        return sum(v[1] for k, v in keys if k.match_type == "lpm")

    def _rank(self, entry: Entry) -> tuple:
        seq = next(self._seq)
        return (-entry.priority, seq)


def _canonical(k: MatchKey, v: Any, table: str) -> Any:
    full = (1 << max(k.bitwidth, 1)) - 1
    t = k.match_type

    def check(x: Any) -> int:
        if not isinstance(x, int) or isinstance(x, bool) or x < 0 or x > full:
            raise InvalidEntry(f"{table}: key {k.name}={x!r} does not fit {k.bitwidth} bits")
        return x

    try:
        if t == "exact":
            return check(v)
        if t == "valid":
            return bool(v)
        if t == "lpm":
            value, plen = v
            if not isinstance(plen, int) or not 0 <= plen <= k.bitwidth:
                raise InvalidEntry(f"{table}: key {k.name} prefix length {plen!r} out of range")
            prefix_mask = full ^ ((1 << (k.bitwidth - plen)) - 1)
            return (check(value) & prefix_mask, plen)
        if t == "ternary":
            value, mask = v
            return (check(value) & check(mask), mask)
        if t == "range":
            lo, hi = check(v[0]), check(v[1])
            if lo > hi:
                raise InvalidEntry(f"{table}: key {k.name} range {lo}..{hi} is empty")
            return (lo, hi)
        if t == "optional":
            value, wildcard = v
            return (0, True) if wildcard else (check(value), False)
    except (TypeError, ValueError) as exc:
        raise InvalidEntry(f"{table}: bad {t} key {k.name}={v!r}") from exc
    raise InvalidEntry(f"{table}: unsupported match type {t!r}")
