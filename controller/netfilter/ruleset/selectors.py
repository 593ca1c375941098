"""How rules read a packet: a getter per selector (rule-context attributes, payload bits of
the link/network/transport header, IPv6 extension headers, TCP options, tunnel inner headers,
ct and meta keys, numgen/jhash), and the tests a value meets (``nft_cmp``, ``nft_range``,
set lookups). A getter returns None when the value is not there (``NFT_BREAK``).
"""

from __future__ import annotations

import operator
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from controller.netfilter.ct import CtInfo
from controller.netfilter.ruleset import datatypes as dt
from controller.netfilter.ruleset.fields import Field
from controller.netfilter.ruleset.model import Concat, Expr, Masked, expr_fields, expr_types

Getter = Callable[[Any], Any]
Step = Callable[[Any], Any]  # returns True (go on), False (rule ends) or an outcome tuple


_CT_STATE_BITS = {
    CtInfo.ESTABLISHED: 2, CtInfo.ESTABLISHED_REPLY: 2, CtInfo.RELATED: 4,
    CtInfo.RELATED_REPLY: 4, CtInfo.NEW: 8, CtInfo.INVALID: 1, CtInfo.UNTRACKED: 64,
}


_NFPROTO = {4: 2, 6: 10}


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


NEVER_NONE = frozenset([*_ATTR_GETTERS.values(), *_ADDR_GETTERS.values()])
"""Getters that always find their value (attributes every rule context has)."""


def guards(expr: Expr) -> list[Step]:
    """nft's implicit dependencies: ``tcp dport`` only on TCP, ``ip saddr`` only on IPv4."""
    steps: list[Step] = []
    fields = expr_fields(expr)
    versions = {f.l3 for f in fields if f.l3 is not None}
    protos = {f.l4 for f in fields if f.l4 is not None}
    for version in versions:
        steps.append(lambda ctx, v=version: ctx.family == v)
    for proto in protos:
        steps.append(lambda ctx, p=proto: ctx.proto == p)
    return steps


def expr_getter(expr: Expr) -> Getter:
    if isinstance(expr, Concat):
        getters = tuple(expr_getter(p) for p in expr.parts)

        def concat(ctx: Any) -> Any:
            out = tuple(g(ctx) for g in getters)
            return None if None in out else out

        return concat
    if isinstance(expr, Masked):
        inner, op, operand = expr_getter(expr.expr), expr.op, expr.operand
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


def ctx_conn(ctx: Any) -> Any:
    return getattr(ctx, "conn", None)


def _conn_attr(name: str) -> Getter:
    return lambda ctx: getattr(ctx_conn(ctx), name, None)


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
    "ct_status": lambda ctx: int(ctx_conn(ctx).status) if ctx_conn(ctx) is not None else None,
    "ct_mark": _conn_attr("mark"),
    "ct_zone": _conn_attr("zone"),
    "ct_helper": _conn_attr("helper"),
    "ct_direction": lambda ctx: ctx.direction if ctx_conn(ctx) is not None else None,
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
    get = expr_getter(key)
    types = expr_types(key)
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


def comparison(dtypes: Sequence[dt.DataType], op: str, value: Any) -> Callable[[Any], bool]:
    if len(dtypes) > 1:
        return membership(dtypes, [value])
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


def membership(dtypes: Sequence[dt.DataType], elements: list) -> Callable[[Any], bool]:
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


def live_membership(dtypes: Sequence[dt.DataType], sdef: Any) -> Callable[[Any], bool]:
    """Membership in a named set that the packet path may grow (``add @set``): recompiled
    when its elements change."""
    cache: list = [None, None]

    def test(value: Any) -> bool:
        snapshot = len(sdef.elements), id(sdef.elements)
        if cache[0] != snapshot:
            cache[0], cache[1] = snapshot, membership(dtypes, list(sdef.elements))
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
