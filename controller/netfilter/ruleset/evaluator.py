"""Run a packet through the base chains of one hook, as netfilter does (``nft_do_chain``).

Chains of the hook are taken in priority order across every table whose family matches (inet
matches IPv4 and IPv6). ``accept`` ends a chain and the packet goes on to the next chain;
``drop`` (and ``reject``) ends everything; the policy applies when a base chain runs out of
rules. ``jump`` runs a regular chain and comes back, ``goto`` does not come back, ``return``
leaves the current chain (at most 16 levels, ``NFT_JUMP_STACK_SIZE``); ``continue`` goes on
with the next rule. NAT chains see only the first packet of a connection (``ctx.ct_new``), and
once one of them has bound a mapping, later NAT chains of the hook are skipped, like
``nf_nat_inet_fn``. ``flow add @ft`` calls ``flow_add`` and the rule continues.

A selector whose value is not there (a payload beyond the packet, a ct key without a
connection) ends the rule, as ``NFT_BREAK`` does. Rules are compiled once into closures.
"""

from __future__ import annotations

import copy
import operator
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from controller.ip import mangle
from controller.netfilter.ct import CtInfo
from controller.netfilter.ruleset import datatypes as dt
from controller.netfilter.ruleset.fields import Field
from controller.netfilter.ruleset.model import (
    ChainType,
    Concat,
    Counter,
    Expr,
    FlowAdd,
    FlowtableDef,
    Hook,
    Limit,
    MapLookup,
    Masked,
    Match,
    Nat,
    Notrack,
    Reject,
    Rule,
    SetRef,
    SetStatement,
    SetUpdate,
    Table,
    VerdictStatement,
    Vmap,
)
from controller.netfilter.ruleset.ruleset import Ruleset


class PacketContext(Protocol):
    """What rules read from a packet; the classic path supplies it."""

    family: int  # 4 or 6
    proto: int
    src: bytes
    dst: bytes
    sport: int
    dport: int
    iifname: str
    oifname: str | None  # None before the routing decision
    ct_state: CtInfo
    ct_new: bool  # first packet of the connection: NAT chains run
    length: int  # bytes, for rule counters


@dataclass(slots=True)
class RuleContext:
    """A :class:`PacketContext` as plain data: the classic path extends it with its packet;
    kernel mode's offload selectors hand it a connection's original direction.

    ``mark`` is the packet mark (``meta mark``, set by ``meta mark set``); ``pkt`` the parsed
    packet payload selectors read; ``conn``/``direction`` the connection ct keys read."""

    family: int
    proto: int
    src: bytes
    dst: bytes
    sport: int
    dport: int
    iifname: str
    oifname: str | None
    ct_state: CtInfo
    ct_new: bool
    length: int
    mark: int = 0
    pkt: Any = None
    conn: Any = None
    direction: int = 0
    now: float = 0.0
    notrack: bool = False


@dataclass(frozen=True, slots=True)
class NatAction:
    """The mapping a NAT rule asks for; ``addr`` None means "the egress address" (masquerade)
    or "the ingress address" (redirect); ``addr_max`` the top of an address range."""

    kind: str  # "snat" | "dnat" | "masquerade" | "redirect"
    addr: bytes | None = None
    port_min: int | None = None
    port_max: int | None = None
    addr_max: bytes | None = None
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RejectAction:
    """What ``reject`` sends back: ``icmp``/``icmpv6`` with a code of that family, or a TCP
    reset (``tcp reset``)."""

    kind: str
    code: int


@dataclass(frozen=True, slots=True)
class Verdict:
    accept: bool
    nat: NatAction | None = None
    reject: RejectAction | None = None


ACCEPT = Verdict(True)
DROP = Verdict(False)
CONNTRACK_PRIORITY = -200  # NF_IP_PRI_CONNTRACK: raw chains (-300) run before it

FlowAddHook = Callable[[FlowtableDef, PacketContext], None]
Getter = Callable[[Any], Any]
Step = Callable[[Any], Any]  # returns True (go on), False (rule ends) or an outcome tuple

_CT_STATE_BITS = {
    CtInfo.ESTABLISHED: 2, CtInfo.ESTABLISHED_REPLY: 2, CtInfo.RELATED: 4,
    CtInfo.RELATED_REPLY: 4, CtInfo.NEW: 8, CtInfo.INVALID: 1, CtInfo.UNTRACKED: 64,
}
_NFPROTO = {4: 2, 6: 10}
_ICMPX = {0: (0, 0), 1: (3, 4), 2: (1, 3), 3: (13, 1)}  # icmpx code → (icmp, icmpv6) codes
_CTX_ADDR = {("ip", "saddr"): "src", ("ip", "daddr"): "dst", ("ip6", "saddr"): "src",
             ("ip6", "daddr"): "dst"}
_CTX_PROTO = frozenset({("ip", "protocol"), ("ip6", "nexthdr"), ("meta", "l4proto")})
_PORT_NS = frozenset({"tcp", "udp", "udplite", "sctp", "dccp", "th"})
_ATTR_GETTERS: dict[str, Getter] = {
    name: operator.attrgetter(name) for name in ("proto", "sport", "dport", "iifname")
}
_ADDR_GETTERS: dict[str, Getter] = {
    "src": lambda ctx: int.from_bytes(ctx.src, "big"),
    "dst": lambda ctx: int.from_bytes(ctx.dst, "big"),
}
_NEVER_NONE = frozenset([*_ATTR_GETTERS.values(), *_ADDR_GETTERS.values()])
"""Getters that always find their value (attributes every rule context has)."""


class Evaluator:
    """Compiled view of a :class:`Ruleset`; build a new one when the ruleset changes."""

    def __init__(self, ruleset: Ruleset, *, flow_add: FlowAddHook | None = None) -> None:
        self._flow_add = flow_add
        chains: dict[tuple[Hook, int], list[_CompiledChain]] = {}
        for table in ruleset.tables.values():
            compiled_chains: dict[str, _CompiledChain] = {}
            for chain in table.chains.values():
                policy = ACCEPT
                if chain.base is not None and not chain.base.policy_accept:
                    policy = DROP
                compiled_chains[chain.name] = _CompiledChain(
                    chain.name,
                    chain.base.priority if chain.base else 0,
                    chain.base is not None and chain.base.type is ChainType.NAT,
                    [],
                    policy,
                )
            for chain in table.chains.values():
                compiled_chains[chain.name].rules.extend(
                    self._compile_rule(table, rule, compiled_chains) for rule in chain.rules
                )
            for chain in table.chains.values():
                if chain.base is None:
                    continue
                for version in table.family.ip_versions:
                    chains.setdefault((chain.base.hook, version), []).append(
                        compiled_chains[chain.name]
                    )
        self._chains: dict[tuple[Hook, int, bool | None], tuple[_CompiledChain, ...]] = {}
        for (hook, version), found in chains.items():
            ordered = sorted(found, key=lambda c: c.priority)
            self._chains[(hook, version, None)] = tuple(ordered)
            for stage in (True, False):
                self._chains[(hook, version, stage)] = tuple(
                    c for c in ordered if (c.priority < CONNTRACK_PRIORITY) == stage
                )

    def run(
        self, hook: Hook, family: int, ctx: PacketContext, before_conntrack: bool | None = None
    ) -> Verdict:
        """``before_conntrack``: True runs only the chains conntrack follows (priority below
        ``NF_IP_PRI_CONNTRACK``, the raw chains where ``notrack`` works), False only the rest,
        None all of them."""
        nat: NatAction | None = None
        for chain in self._chains.get((hook, family, before_conntrack), ()):
            if chain.is_nat and (nat is not None or not ctx.ct_new):
                continue
            verdict = chain.run_base(ctx)
            if not verdict.accept:
                return verdict if nat is None else Verdict(False, nat, verdict.reject)
            if verdict.nat is not None:
                nat = verdict.nat
        return ACCEPT if nat is None else Verdict(True, nat)

    # -- compilation -----------------------------------------------------------------------------

    def _compile_rule(
        self, table: Table, rule: Rule, chains: dict[str, _CompiledChain]
    ) -> tuple[Step, ...]:
        steps: list[Step] = []
        for item in rule.items:
            if isinstance(item, Match):
                steps.append(_compile_match(item, table))
                for guard in _guards(item.left):
                    steps.insert(len(steps) - 1, guard)
            elif isinstance(item, Counter):
                steps.append(_counting(item, table))
            elif isinstance(item, FlowAdd):
                steps.append(self._flow_adding(table.flowtables[item.flowtable]))
            elif isinstance(item, VerdictStatement):
                steps.append(_verdict_step(item, chains))
            elif isinstance(item, Nat) and item.map is not None:
                steps.extend(_guards(item.map.key))
                steps.append(_nat_map_step(item, table))
            elif isinstance(item, Nat):
                steps.extend(_nat_steps(item))
            elif isinstance(item, Reject):
                steps.extend(_reject_steps(item))
            elif isinstance(item, Limit):
                steps.append(_limiting(item, table))
            elif isinstance(item, SetStatement):
                steps.append(_setting(item, table))
            elif isinstance(item, Notrack):
                steps.append(_notrack)
            elif isinstance(item, SetUpdate):
                steps.extend(_guards(item.key))
                steps.append(_set_update(item, table))
            elif isinstance(item, Vmap):
                steps.extend(_guards(item.key))
                steps.append(_vmap_step(item, table, chains))
            # log and the statements kept as text change nothing the mirror models
        return tuple(steps)

    def _flow_adding(self, ft: FlowtableDef) -> Step:
        hook = self._flow_add

        def flow_add(ctx: Any) -> bool:
            if hook is not None:
                hook(ft, ctx)
            return True

        return flow_add


@dataclass(slots=True)
class _CompiledChain:
    name: str
    priority: int
    is_nat: bool
    rules: list[tuple[Step, ...]]
    policy: Verdict

    def run_base(self, ctx: Any) -> Verdict:
        outcome = self.run(ctx, 0)
        if outcome is None:
            return self.policy
        return outcome

    def run(self, ctx: Any, depth: int) -> Verdict | None:
        """``nft_do_chain`` for this chain: a final verdict, or None (fell off / returned)."""
        for steps in self.rules:
            outcome: Any = True
            for step in steps:
                outcome = step(ctx)
                if outcome is not True:
                    break
            if outcome is True or outcome is False:
                continue
            kind, arg = outcome
            if kind == "verdict":
                return arg
            if kind == "continue":
                continue
            if kind == "return":
                return None
            if depth >= 16:
                return DROP  # the kernel never gets here: validation refuses deep jumps
            result = arg.run(ctx, depth + 1)
            if kind == "goto" or result is not None:
                return result
        return None


# -- matches ---------------------------------------------------------------------------------------


def _guards(expr: Expr) -> list[Step]:
    """nft's implicit dependencies: ``tcp dport`` only on TCP, ``ip saddr`` only on IPv4."""
    steps: list[Step] = []
    fields = _fields(expr)
    versions = {f.l3 for f in fields if f.l3 is not None}
    protos = {f.l4 for f in fields if f.l4 is not None}
    for version in versions:
        steps.append(lambda ctx, v=version: ctx.family == v)
    for proto in protos:
        steps.append(lambda ctx, p=proto: ctx.proto == p)
    return steps


def _fields(expr: Expr) -> list[Field]:
    if isinstance(expr, Field):
        return [expr]
    if isinstance(expr, Masked):
        return _fields(expr.expr)
    return [f for p in expr.parts for f in _fields(p)]


def _getter(expr: Expr) -> Getter:
    if isinstance(expr, Concat):
        getters = tuple(_getter(p) for p in expr.parts)

        def concat(ctx: Any) -> Any:
            out = tuple(g(ctx) for g in getters)
            return None if None in out else out

        return concat
    if isinstance(expr, Masked):
        inner, op, operand = _getter(expr.expr), expr.op, expr.operand
        fns = {"&": lambda v: v & operand, "|": lambda v: v | operand,
               "^": lambda v: v ^ operand, "<<": lambda v: v << operand,
               ">>": lambda v: v >> operand}
        fn = fns[op]

        def masked(ctx: Any) -> Any:
            value = inner(ctx)
            return None if value is None else fn(value)

        return masked
    return field_getter(expr)


def field_getter(fld: Field) -> Getter:
    """How to read ``fld`` from a rule context (None: not there)."""
    key = (fld.ns, fld.key)
    if key in _CTX_ADDR:
        return _ADDR_GETTERS[_CTX_ADDR[key]]
    if key in _CTX_PROTO:
        return _ATTR_GETTERS["proto"]
    if fld.ns in _PORT_NS and fld.key in ("sport", "dport"):
        return _ATTR_GETTERS[fld.key]
    if key in (("meta", "iifname"), ("meta", "iif")):
        return _ATTR_GETTERS["iifname"]
    source = fld.source
    if not source:
        return lambda ctx: None  # a key the mirror does not model: the rule never matches
    if source[0] == "ctx":
        return _CTX_GETTERS[source[1]]
    if source[0] in ("nh", "th", "ll"):
        return _payload_getter(source[0], source[1], source[2])
    if source[0] == "tcpopt":
        return _tcpopt_getter(source[1], source[2], source[3])
    if source[0] == "tunnel":
        return _tunnel_getter(source[1], source[2:])
    if source[0] == "numgen":
        return _numgen_getter(source[1], source[2], source[3])
    if source[0] == "jhash":
        return _jhash_getter(source[1], source[2], source[3], source[4])
    return _exthdr_getter(source[1], source[2], source[3])


def _conn(ctx: Any) -> Any:
    return getattr(ctx, "conn", None)


def _conn_attr(name: str) -> Getter:
    return lambda ctx: getattr(_conn(ctx), name, None)


def _pkttype(ctx: Any) -> int | None:
    pkt = getattr(ctx, "pkt", None)
    if pkt is None:
        return 0
    if pkt.eth_dst == b"\xff" * 6:
        return 1
    return 2 if pkt.eth_dst[0] & 1 else 0


def _wall_clock() -> float:
    """``ktime_get_real``: meta time/day/hour read the real clock (UTC), not the packet's."""
    return time.time()


_CTX_GETTERS: dict[str, Getter] = {
    "time": lambda ctx: int(_wall_clock() * 1_000_000_000),
    "hour": lambda ctx: int(_wall_clock()) % 86400,
    "day": lambda ctx: (int(_wall_clock()) // 86400 + 4) % 7,  # 1970-01-01 was a Thursday
    "proto": lambda ctx: ctx.proto,
    "ethertype": lambda ctx: 0x0800 if ctx.family == 4 else 0x86DD,
    "nfproto": lambda ctx: _NFPROTO.get(ctx.family),
    "length": lambda ctx: ctx.length,
    "mark": lambda ctx: getattr(ctx, "mark", 0),
    "iifname": lambda ctx: ctx.iifname or "",
    "oifname": lambda ctx: ctx.oifname or "",
    "pkttype": _pkttype,
    "iftype": lambda ctx: 1,
    "zero": lambda ctx: 0,
    "ct_state_bits": lambda ctx: _CT_STATE_BITS.get(ctx.ct_state, 1),
    "ct_status": lambda ctx: int(_conn(ctx).status) if _conn(ctx) is not None else None,
    "ct_mark": _conn_attr("mark"),
    "ct_zone": _conn_attr("zone"),
    "ct_helper": _conn_attr("helper"),
    "ct_direction": lambda ctx: ctx.direction if _conn(ctx) is not None else None,
}


def _bits(buf: Any, start: int, off: int, bits: int, end: int) -> int | None:
    first = start + off // 8
    last = start + (off + bits - 1) // 8
    if start < 0 or last >= end:
        return None
    value = int.from_bytes(buf[first : last + 1], "big")
    shift = (last - first + 1) * 8 - (off % 8) - bits
    return (value >> shift) & ((1 << bits) - 1)


def _payload_getter(base: str, off: int, bits: int) -> Getter:
    def payload(ctx: Any) -> int | None:
        pkt = getattr(ctx, "pkt", None)
        if pkt is None:
            return None
        if base == "ll":
            start = 0
        elif base == "nh":
            start = pkt.l3
        else:
            if not pkt.first_fragment:
                return None
            start = pkt.l4
        return _bits(pkt.frame, start, off, bits, pkt.l3 + pkt.ip_len)

    return payload


def _tcpopt_getter(kind: int, off: int, bits: int) -> Getter:
    """``nft_exthdr_tcp_eval``: find option ``kind`` among the TCP options; ``off < 0`` asks
    whether it is there (1) or not (0)."""

    def tcpopt(ctx: Any) -> int | None:
        pkt = getattr(ctx, "pkt", None)
        if pkt is None or pkt.proto != 6 or pkt.l4 < 0 or not pkt.first_fragment:
            return None
        buf, start = pkt.frame, pkt.l4
        end = min(start + (buf[start + 12] >> 4) * 4, pkt.l3 + pkt.ip_len)
        pos = start + 20
        while pos < end:
            this = buf[pos]
            size = 1 if this in (0, 1) else (buf[pos + 1] if pos + 1 < end else 0)
            if this == kind:
                return 1 if off < 0 else _bits(buf, pos, off, bits, pos + max(size, 1))
            if size < 1 or (this not in (0, 1) and size < 2):
                break
            pos += size
        return 0 if off < 0 else None

    return tcpopt


def _tunnel_start(kind: str, pkt: Any) -> tuple[int, int] | None:
    """Offset of the tunnel header and of what it carries (``nft_inner``'s parse)."""
    if pkt.l4 < 0 or not pkt.first_fragment:
        return None
    buf, end = pkt.frame, pkt.l3 + pkt.ip_len
    if kind in ("vxlan", "geneve"):
        hdr = pkt.l4 + 8
        if hdr + 8 > end:
            return None
        inner = hdr + 8 + ((buf[hdr] & 0x3F) * 4 if kind == "geneve" else 0)
        return hdr, inner
    hdr = pkt.l4
    if hdr + 4 > end:
        return None
    flags = buf[hdr]
    inner = hdr + 4 + 4 * bool(flags & 0x80) + 4 * bool(flags & 0x20) + 4 * bool(flags & 0x10)
    return hdr, inner


def _tunnel_getter(kind: str, inner: tuple) -> Getter:
    """A tunnel header field, or a selector applied to the encapsulated packet."""

    def tunnel(ctx: Any) -> int | None:
        pkt = getattr(ctx, "pkt", None)
        if pkt is None:
            return None
        found = _tunnel_start(kind, pkt)
        if found is None:
            return None
        hdr, start = found
        buf, end = pkt.frame, pkt.l3 + pkt.ip_len
        base, off, bits = inner
        if base == "hdr":
            return _bits(buf, hdr, off, bits, end)
        if kind != "gre":  # Ethernet inside
            if base == "ll":
                return _bits(buf, start, off, bits, end)
            start += 14
        if base == "nh":
            return _bits(buf, start, off, bits, end)
        if start >= end:
            return None
        version = buf[start] >> 4
        l4 = start + ((buf[start] & 0x0F) * 4 if version == 4 else 40)
        return _bits(buf, l4, off, bits, end)

    return tunnel


def _numgen_getter(mode: str, modulus: int, offset: int) -> Getter:
    """``nft_ng_inc_eval`` (a counter mod N) or ``nft_ng_random_eval``, plus the offset."""
    if mode == "random":
        rng = random.Random(0)
        return lambda ctx: rng.randrange(modulus) + offset
    counter = [-1]

    def inc(ctx: Any) -> int:
        counter[0] = (counter[0] + 1) % modulus
        return counter[0] + offset

    return inc


def _jhash_getter(key: Expr, modulus: int, seed: int, offset: int) -> Getter:
    """``nft_jhash_eval``: ``reciprocal_scale(jhash(key bytes, len, seed), N) + offset``; each
    part of the key fills whole 32-bit registers, in network byte order."""
    get = _getter(key)
    types = _types(key)
    if len(types) == 1:
        widths = [(types[0].bits + 7) // 8]
    else:
        widths = [(t.bits + 31) // 32 * 4 for t in types]

    def jhash_value(ctx: Any) -> int | None:
        value = get(ctx)
        if value is None:
            return None
        parts = value if isinstance(value, tuple) else (value,)
        data = b"".join(int(v).to_bytes(w, "big") if not isinstance(v, str)
                        else v.encode()[:w].ljust(w, b"\0") for v, w in zip(parts, widths,
                                                                            strict=True))
        return (jhash(data, seed) * modulus >> 32) + offset

    return jhash_value


def _rol32(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF


def jhash(data: bytes, initval: int) -> int:
    """Linux ``jhash()`` (include/linux/jhash.h, Bob Jenkins' lookup3) over ``data``, whose
    32-bit words are read little-endian (x86, the kernels routers and this mirror run on)."""
    mask = 0xFFFFFFFF
    a = b = c = (0xDEADBEEF + len(data) + initval) & mask
    rest = data

    def mix(a: int, b: int, c: int) -> tuple[int, int, int]:
        a = (a - c) & mask; a ^= _rol32(c, 4); c = (c + b) & mask  # noqa: E702
        b = (b - a) & mask; b ^= _rol32(a, 6); a = (a + c) & mask  # noqa: E702
        c = (c - b) & mask; c ^= _rol32(b, 8); b = (b + a) & mask  # noqa: E702
        a = (a - c) & mask; a ^= _rol32(c, 16); c = (c + b) & mask  # noqa: E702
        b = (b - a) & mask; b ^= _rol32(a, 19); a = (a + c) & mask  # noqa: E702
        c = (c - b) & mask; c ^= _rol32(b, 4); b = (b + a) & mask  # noqa: E702
        return a, b, c

    while len(rest) > 12:
        a = (a + int.from_bytes(rest[0:4], "little")) & mask
        b = (b + int.from_bytes(rest[4:8], "little")) & mask
        c = (c + int.from_bytes(rest[8:12], "little")) & mask
        a, b, c = mix(a, b, c)
        rest = rest[12:]
    if not rest:
        return c
    tail = rest.ljust(12, b"\0")
    a = (a + int.from_bytes(tail[0:4], "little")) & mask
    b = (b + int.from_bytes(tail[4:8], "little")) & mask
    c = (c + int.from_bytes(tail[8:12], "little")) & mask
    c ^= b; c = (c - _rol32(b, 14)) & mask  # noqa: E702
    a ^= c; a = (a - _rol32(c, 11)) & mask  # noqa: E702
    b ^= a; b = (b - _rol32(a, 25)) & mask  # noqa: E702
    c ^= b; c = (c - _rol32(b, 16)) & mask  # noqa: E702
    a ^= c; a = (a - _rol32(c, 4)) & mask  # noqa: E702
    b ^= a; b = (b - _rol32(a, 14)) & mask  # noqa: E702
    c ^= b; c = (c - _rol32(b, 24)) & mask  # noqa: E702
    return c


_EXT_HEADERS = frozenset({0, 43, 44, 60, 135, 51})


def _exthdr_getter(wanted: int, off: int, bits: int) -> Getter:
    """``ipv6_find_hdr``: walk the IPv6 extension headers to the one of type ``wanted``."""

    def exthdr(ctx: Any) -> int | None:
        pkt = getattr(ctx, "pkt", None)
        if pkt is None or pkt.family != 6:
            return None
        buf, end = pkt.frame, pkt.l3 + pkt.ip_len
        nexthdr, pos = buf[pkt.l3 + 6], pkt.l3 + 40
        for _ in range(8):
            if nexthdr == wanted:
                return _bits(buf, pos, off, bits, end)
            if nexthdr not in _EXT_HEADERS or pos + 8 > end:
                return None
            size = 8 if nexthdr == 44 else (buf[pos + 1] + 2) * 4 if nexthdr == 51 else (
                buf[pos + 1] + 1) * 8
            nexthdr, pos = buf[pos], pos + size
        return None

    return exthdr


def _compile_match(match: Match, table: Table) -> Step:
    get = _getter(match.left)
    dtypes = _types(match.left)
    values = match.values
    if isinstance(values, SetRef):
        test = _live_membership(dtypes, table.sets[values.name])
    elif match.is_set:
        test = _membership(dtypes, list(values))
    else:
        test = _comparison(dtypes, match.op, values[0])
    if match.op == "!=":
        positive = test

        def test(value: Any) -> bool:
            return not positive(value)

    if get in _NEVER_NONE:

        def always(ctx: Any) -> bool:
            return test(get(ctx))

        return always

    def step(ctx: Any) -> bool:
        value = get(ctx)
        return value is not None and test(value)

    return step


def _types(expr: Expr) -> list[dt.DataType]:
    if isinstance(expr, Concat):
        return [t for p in expr.parts for t in _types(p)]
    return [_fields(expr)[0].dtype]


def _comparison(dtypes: list[dt.DataType], op: str, value: Any) -> Callable[[Any], bool]:
    if len(dtypes) > 1:
        return _membership(dtypes, [value])
    dtype = dtypes[0]
    if dtype.is_string:
        return _string_test([value])
    lo, hi = value
    if op == "implicit" and dtype.bitmask and lo == hi:
        return lambda v: v & lo != 0
    if op == "<":
        return lambda v: v < lo
    if op == ">":
        return lambda v: v > lo
    if op == "<=":
        return lambda v: v <= lo
    if op == ">=":
        return lambda v: v >= lo
    if lo == hi:
        return frozenset((lo,)).__contains__
    return lambda v: lo <= v <= hi


def _membership(dtypes: list[dt.DataType], elements: list) -> Callable[[Any], bool]:
    if len(dtypes) > 1:
        parts = [
            tuple(_component_test(t, c) for t, c in zip(dtypes, element, strict=True))
            for element in elements
        ]

        def concat(value: tuple) -> bool:
            return any(all(t(v) for t, v in zip(tests, value, strict=True)) for tests in parts)

        return concat
    if dtypes[0].is_string:
        return _string_test(elements)
    if all(lo == hi for lo, hi in elements):
        return frozenset(lo for lo, _ in elements).__contains__
    bounds = tuple(elements)
    return lambda v: any(lo <= v <= hi for lo, hi in bounds)


def _live_membership(dtypes: list[dt.DataType], sdef: Any) -> Callable[[Any], bool]:
    """Membership in a named set that the packet path may grow (``add @set``): recompiled
    when its elements change."""
    cache: list = [None, None]

    def test(value: Any) -> bool:
        snapshot = len(sdef.elements), id(sdef.elements)
        if cache[0] != snapshot:
            cache[0], cache[1] = snapshot, _membership(dtypes, list(sdef.elements))
        return cache[1](value)

    return test


def _component_test(dtype: dt.DataType, value: Any) -> Callable[[Any], bool]:
    if dtype.is_string:
        return _string_test([value])
    lo, hi = value
    return lambda v: lo <= v <= hi


def _string_test(names: list[str]) -> Callable[[Any], bool]:
    """Interface names: ``"eth*"`` is a prefix (nft: a trailing unescaped ``*``), ``"eth\\*"``
    the literal name ``eth*`` (``expr_evaluate_string`` / ``nft_cmp`` on a shorter length)."""
    exact = set()
    prefixes = []
    for name in names:
        if name.endswith("*") and not name.endswith("\\*"):
            prefixes.append(name[:-1].replace("\\*", "*"))
        else:
            exact.add(name.replace("\\*", "*"))
    prefix_tuple = tuple(prefixes)
    if not prefix_tuple:
        return frozenset(exact).__contains__
    return lambda v: v in exact or v.startswith(prefix_tuple)


# -- statements ------------------------------------------------------------------------------------


def _counting(counter: Counter, table: Table) -> Step:
    target: Any = counter
    if counter.name is not None:
        target = table.objects[("counter", counter.name)]

    def count(ctx: Any) -> bool:
        target.packets += 1
        target.bytes += ctx.length
        return True

    return count


_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
_BYTE_FACTOR = {None: 1, "bytes": 1, "kbytes": 1024, "mbytes": 1024 * 1024}


def _limiting(limit: Limit, table: Table) -> Step:
    """``nft_limit_eval``: a token bucket of ``burst`` packets (or ``rate + burst`` bytes)
    refilled at ``rate`` per unit; ``over`` inverts the match."""
    if limit.unit == "name":
        return lambda ctx: True  # a named limit object: state lives in the kernel object
    per_second = limit.rate * _BYTE_FACTOR[limit.byte_unit] / _UNIT_SECONDS[limit.unit]
    if limit.byte_unit is None:
        capacity = float(limit.burst or 1)
    else:
        capacity = float(limit.rate * _BYTE_FACTOR[limit.byte_unit]
                         + limit.burst * _BYTE_FACTOR[limit.burst_unit or "bytes"])

    def step(ctx: Any) -> bool:
        if limit.tokens < 0:
            limit.tokens, limit.last = capacity, ctx.now
        tokens = min(capacity, limit.tokens + (ctx.now - limit.last) * per_second)
        limit.last = ctx.now
        cost = 1.0 if limit.byte_unit is None else float(ctx.length)
        if tokens >= cost:
            limit.tokens = tokens - cost
            return not limit.over
        limit.tokens = tokens
        return limit.over

    return step


def _map_getter(lookup: MapLookup, table: Table) -> Getter:
    """The data of the map element the key falls in (None: no element)."""
    get = _getter(lookup.key)
    dtypes = _types(lookup.key)
    pairs = (table.sets[lookup.mapping.name].elements if isinstance(lookup.mapping, SetRef)
             else list(lookup.mapping))
    tests = [(_membership(dtypes, [key]), data) for key, data in pairs]

    def find(ctx: Any) -> Any:
        value = get(ctx)
        if value is None:
            return None
        for test, data in tests:
            if test(value):
                return data
        return None

    return find


def _set_update(update: SetUpdate, table: Table) -> Step:
    """``nft_dynset_eval``: add/update/delete the packet's key; per-element ``limit``s decide
    whether the rule goes on, per-element counters count."""
    get = _getter(update.key)
    sdef = table.sets.get(update.set)
    elements: list = sdef.elements if sdef is not None else []
    states: dict[Any, list[Step]] = {}

    def element(value: Any) -> Any:
        if isinstance(value, tuple):
            return tuple(v if isinstance(v, str) else (v, v) for v in value)
        return value if isinstance(value, str) else (value, value)

    def step(ctx: Any) -> bool:
        value = get(ctx)
        if value is None:
            return False
        key = element(value)
        if update.op == "delete":
            if key in elements:
                elements.remove(key)
            states.pop(key, None)
            return True
        if key not in elements:
            if update.size is not None and len(elements) >= update.size:
                return False
            elements.append(key)
        stateful = states.get(key)
        if stateful is None:
            stateful = [
                _limiting(copy.copy(s), table) if isinstance(s, Limit) else
                _counting(copy.copy(s), table) for s in update.stateful
            ]
            states[key] = stateful
        return all(s(ctx) for s in stateful)

    return step


def _setting(stmt: SetStatement, table: Table) -> Step:
    target = stmt.target
    value = stmt.value
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], int):
        constant = value[0]
        source: Getter = lambda ctx: constant  # noqa: E731
    elif isinstance(value, MapLookup):
        lookup = _map_getter(value, table)

        def source(ctx: Any) -> Any:
            found = lookup(ctx)
            return found if found is None or isinstance(found, str) else found[0]
    elif isinstance(value, str):
        source = lambda ctx: value  # noqa: E731
    else:
        source = _getter(value)  # type: ignore[arg-type]
    key = (target.ns, target.key)

    def step(ctx: Any) -> bool:
        new = source(ctx)
        if new is None:
            return False
        conn = _conn(ctx)
        if target.source and target.source[0] in ("nh", "th"):
            return _set_payload(ctx, target, new)
        if key == ("meta", "mark"):
            ctx.mark = new & 0xFFFFFFFF
        elif conn is not None and key == ("ct", "mark"):
            conn.mark = new & 0xFFFFFFFF
        elif conn is not None and key == ("ct", "helper"):
            conn.helper = new
        elif conn is not None and key == ("ct", "zone"):
            conn.zone = new
        return True

    return step


def _set_payload(ctx: Any, target: Field, value: int) -> bool:
    """``ip daddr set``, ``tcp dport set``, ``ip dscp set``...: rewrite the packet (addresses
    and ports with their checksums, as NAT does), and what the rules read follows."""
    pkt = getattr(ctx, "pkt", None)
    if pkt is None or (target.l3 is not None and pkt.family != target.l3) or (
        target.l4 is not None and pkt.proto != target.l4
    ):
        return False
    key = target.key
    if key in ("saddr", "daddr") and target.ns in ("ip", "ip6"):
        addr = value.to_bytes(4 if target.ns == "ip" else 16, "big")
        (mangle.set_src_addr if key == "saddr" else mangle.set_dst_addr)(pkt, addr)
        ctx.src, ctx.dst = pkt.src, pkt.dst
        return True
    if key in ("sport", "dport") and pkt.l4 >= 0 and pkt.first_fragment:
        try:
            (mangle.set_src_port if key == "sport" else mangle.set_dst_port)(pkt, value)
        except ValueError:
            return False
        ctx.sport, ctx.dport = pkt.sport, pkt.dport
        return True
    _, offset, bits = target.source
    if not mangle.set_header_bits(pkt, target.source[0], offset, bits, value):
        return False
    if key in ("ttl", "hoplimit"):
        pkt.ttl = value
    return True


def _notrack(ctx: Any) -> bool:
    ctx.notrack = True
    return True


def _verdict_step(stmt: VerdictStatement, chains: dict[str, _CompiledChain]) -> Step:
    kind = stmt.kind
    if kind in ("jump", "goto"):
        outcome: tuple = (kind, chains[stmt.chain or ""])
    elif kind in ("continue", "return"):
        outcome = (kind, None)
    else:
        outcome = ("verdict", ACCEPT if kind == "accept" else DROP)  # queue: no listener
    return lambda ctx: outcome


def _nat_steps(nat: Nat) -> list[Step]:
    family = None
    if nat.family is not None:
        family = nat.family.ip_versions[0]
    if nat.addr is not None:
        family = nat.addr.version
    action = NatAction(
        nat.kind.value,
        nat.addr.packed if nat.addr is not None else None,
        nat.port_min,
        nat.port_max,
        nat.addr_max.packed if nat.addr_max is not None else None,
        nat.flags,
    )
    outcome = ("verdict", Verdict(True, action))
    steps: list[Step] = []
    if family is not None:  # ``snat ip to`` in an inet table acts only on IPv4
        steps.append(lambda ctx: ctx.family == family)
    steps.append(lambda ctx: outcome)
    return steps


def _nat_map_step(nat: Nat, table: Table) -> Step:
    """NAT to a map's data: an address (range) and maybe a port (range) per packet, or only
    ports for ``redirect to : tcp dport map { ... }``."""
    assert nat.map is not None
    find = _map_getter(nat.map, table)
    addr_type = nat.map.data[0]
    size = 4 if addr_type.kind == "ipv4" else 16

    def step(ctx: Any) -> Any:
        data = find(ctx)
        if data is None:
            return False
        parts = data if isinstance(data[0], tuple) else (data,)
        if addr_type.kind == "int":  # ports only
            (lo, hi), = parts
            return ("verdict", Verdict(True, NatAction(nat.kind.value, None, lo, hi,
                                                       flags=nat.flags)))
        if ctx.family != (4 if size == 4 else 6):
            return False
        lo, hi = parts[0]
        ports = parts[1] if len(parts) > 1 else (None, None)
        action = NatAction(nat.kind.value, lo.to_bytes(size, "big"), ports[0], ports[1],
                           hi.to_bytes(size, "big") if hi != lo else None, nat.flags)
        return ("verdict", Verdict(True, action))

    return step


def _reject_steps(rej: Reject) -> list[Step]:
    """``nft_reject_inet_eval``: ICMP for IPv4, ICMPv6 for IPv6, or a TCP reset; the default
    is port unreachable (icmpx in inet tables)."""
    if rej.kind == "tcp reset":
        outcome = ("verdict", Verdict(False, reject=RejectAction("tcp reset", 0)))
        return [lambda ctx: ctx.proto == 6, lambda ctx: outcome]
    if rej.kind == "icmp":
        v4 = ("verdict", Verdict(False, reject=RejectAction("icmp", rej.code or 3)))
        return [lambda ctx: ctx.family == 4, lambda ctx: v4]
    if rej.kind == "icmpv6":
        v6 = ("verdict", Verdict(False, reject=RejectAction("icmpv6", 4 if rej.code is None
                                                            else rej.code)))
        return [lambda ctx: ctx.family == 6, lambda ctx: v6]
    codes = _ICMPX[1 if rej.code is None else rej.code]
    by_family = {
        4: ("verdict", Verdict(False, reject=RejectAction("icmp", codes[0]))),
        6: ("verdict", Verdict(False, reject=RejectAction("icmpv6", codes[1]))),
    }
    return [lambda ctx: by_family[ctx.family]]


def _vmap_step(vmap: Vmap, table: Table, chains: dict[str, _CompiledChain]) -> Step:
    get = _getter(vmap.key)
    dtypes = _types(vmap.key)
    pairs = table.sets[vmap.mapping.name].elements if isinstance(vmap.mapping, SetRef) else list(
        vmap.mapping)
    compiled = [(_membership(dtypes, [key]), _verdict_step(verdict, chains)(None))
                for key, verdict in pairs]

    def step(ctx: Any) -> Any:
        value = get(ctx)
        if value is None:
            return False
        for test, outcome in compiled:
            if test(value):
                return outcome
        return False

    return step
