"""Rule statements as evaluation steps: counters, limits, set updates, mark/ct/payload sets,
notrack, verdicts, NAT, reject and verdict maps (``nft_counter``, ``nft_limit``,
``nft_dynset``, ``nft_meta_set``/``nft_ct_set``/``nft_payload_set``, ``nft_nat``,
``nft_reject``, ``nft_lookup`` with a verdict map). A step returns True to go on, False to end
the rule, or an outcome: ``("verdict", Verdict)``, ``("jump"|"goto", chain)``,
``("return"|"continue", None)``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from controller.ip import mangle
from controller.netfilter.ruleset.fields import Field
from controller.netfilter.ruleset.model import (
    Counter,
    Expr,
    Limit,
    MapLookup,
    Nat,
    Reject,
    SetRef,
    SetStatement,
    SetUpdate,
    Table,
    VerdictStatement,
    Vmap,
    expr_types,
)
from controller.netfilter.ruleset.selectors import (
    Getter,
    Step,
    ctx_conn,
    expr_getter,
    membership,
)
from controller.netfilter.ruleset.verdicts import (
    ACCEPT,
    DROP,
    NatAction,
    RejectAction,
    Verdict,
)

_ICMPX = {0: (0, 0), 1: (3, 4), 2: (1, 3), 3: (13, 1)}  # icmpx code → (icmp, icmpv6) codes


def counting(counter: Counter, table: Table) -> Step:
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


def limiting(limit: Limit, table: Table) -> Step:
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


def _element_finder(key: Expr, mapping: Any, table: Table, convert: Callable[[Any], Any],
                    miss: Any) -> Getter:
    """``nft_lookup`` with a map: what the element the key falls in maps to, through
    ``convert`` once at build time (``miss``: no element, or no key)."""
    get = expr_getter(key)
    dtypes = expr_types(key)
    pairs = table.sets[mapping.name].elements if isinstance(mapping, SetRef) else mapping
    tests = [(membership(dtypes, [k]), convert(data)) for k, data in pairs if k != "*"]
    tests += [(lambda value: True, convert(data)) for k, data in pairs if k == "*"]  # "*" last

    def find(ctx: Any) -> Any:
        value = get(ctx)
        if value is None:
            return miss
        for test, found in tests:
            if test(value):
                return found
        return miss

    return find


def map_getter(lookup: MapLookup, table: Table) -> Getter:
    """The data of the map element the key falls in (None: no element)."""
    return _element_finder(lookup.key, lookup.mapping, table, lambda data: data, None)


def set_update(update: SetUpdate, table: Table) -> Step:
    """``nft_dynset_eval``: add/update/delete the packet's key; per-element ``limit``s decide
    whether the rule goes on, per-element counters count."""
    get = expr_getter(update.key)
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
                limiting(copy.copy(s), table) if isinstance(s, Limit) else
                counting(copy.copy(s), table) for s in update.stateful
            ]
            states[key] = stateful
        return all(s(ctx) for s in stateful)

    return step


def setting(stmt: SetStatement, table: Table) -> Step:
    target = stmt.target
    value = stmt.value
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], int):
        constant = value[0]
        source: Getter = lambda ctx: constant  # noqa: E731
    elif isinstance(value, MapLookup):
        lookup = map_getter(value, table)

        def source(ctx: Any) -> Any:
            found = lookup(ctx)
            return found if found is None or isinstance(found, str) else found[0]
    elif isinstance(value, str):
        source = lambda ctx: value  # noqa: E731
    else:
        source = expr_getter(value)  # type: ignore[arg-type]
    key = (target.ns, target.key)

    def step(ctx: Any) -> bool:
        new = source(ctx)
        if new is None:
            return False
        conn = ctx_conn(ctx)
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


def notrack(ctx: Any) -> bool:
    ctx.notrack = True
    return True


def verdict_step(stmt: VerdictStatement, chains: dict[str, Any]) -> Step:
    kind = stmt.kind
    if kind in ("jump", "goto"):
        outcome: tuple = (kind, chains[stmt.chain or ""])
    elif kind in ("continue", "return"):
        outcome = (kind, None)
    else:
        outcome = ("verdict", ACCEPT if kind == "accept" else DROP)  # queue: no listener
    return lambda ctx: outcome


def nat_steps(nat: Nat) -> list[Step]:
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


def nat_map_step(nat: Nat, table: Table) -> Step:
    """NAT to a map's data: an address (range) and maybe a port (range) per packet, or only
    ports for ``redirect to : tcp dport map { ... }``."""
    assert nat.map is not None
    find = map_getter(nat.map, table)
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


def reject_steps(rej: Reject) -> list[Step]:
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


def vmap_step(vmap: Vmap, table: Table, chains: dict[str, Any]) -> Step:
    """The verdict of the element the key falls in (False, the rule ends: no element)."""
    return _element_finder(vmap.key, vmap.mapping, table,
                           lambda verdict: verdict_step(verdict, chains)(None), False)
