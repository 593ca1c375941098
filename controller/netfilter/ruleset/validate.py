"""nft's own checks: when a rule is added (``src/evaluate.c``) and at commit (the kernel's
``nft_table_validate`` → ``nft_chain_validate``, ``*_validate`` of each expression).

At rule add: matches must fit the table's family and each other (``conflicting protocols
specified``, nft's protocol context ``pctx``); NAT needs an address family it can tell
(``nat_evaluate_family``) and a transport match before a port (``nat_evaluate_transport``); sets,
maps, named counters, ct helpers and jump targets must exist; nothing may follow a terminal
statement. At commit, every chain reached from a base chain through jump/goto/vmap is checked
against that base chain's type and hook: ``flow add`` only in filter chains on forward
(``nft_flow_offload_validate``), NAT only in nat chains on its hooks (``nft_nat_validate``,
``nft_masq_validate``, ``nft_redir_validate``), ``reject`` on input/forward/output/prerouting
(``nft_reject_validate``), and no loops (``ELOOP``) or jumps deeper than 16 (``EMLINK``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from controller.netfilter.ruleset import datatypes as dt
from controller.netfilter.ruleset.errors import Loc, RulesetError
from controller.netfilter.ruleset.model import (
    TERMINAL,
    BaseSpec,
    Chain,
    ChainType,
    Counter,
    Family,
    FlowAdd,
    Hook,
    Item,
    Limit,
    MapLookup,
    Match,
    Nat,
    NatKind,
    Other,
    Reject,
    Rule,
    SetRef,
    SetStatement,
    SetUpdate,
    Table,
    VerdictStatement,
    Vmap,
    expr_fields,
    expr_types,
)

EOPNOTSUPP = "Could not process rule: Operation not supported"
ENOENT = "Could not process rule: No such file or directory"
NAT_CHAIN_HOOKS = frozenset({Hook.PREROUTING, Hook.INPUT, Hook.OUTPUT, Hook.POSTROUTING})
NAT_HOOKS = {
    NatKind.DNAT: frozenset({Hook.PREROUTING, Hook.OUTPUT}),
    NatKind.REDIRECT: frozenset({Hook.PREROUTING, Hook.OUTPUT}),
    NatKind.SNAT: frozenset({Hook.POSTROUTING, Hook.INPUT}),
    NatKind.MASQUERADE: frozenset({Hook.POSTROUTING}),
}
REJECT_HOOKS = frozenset({Hook.INPUT, Hook.FORWARD, Hook.OUTPUT, Hook.PREROUTING})
JUMP_STACK_SIZE = 16  # NFT_JUMP_STACK_SIZE
_PORT_PROTOCOLS = frozenset({6, 17, 33, 132, 136})  # protocols with 16-bit ports at offset 0
_PROTO_NAMES = {v: k for k, v in reversed(dt.PROTOCOLS.items())}
_NFPROTO_VERSION = {2: 4, 10: 6}


def check_base_chain(family: Family, base: BaseSpec, loc: Loc) -> None:
    if base.type is ChainType.NAT and base.hook not in NAT_CHAIN_HOOKS:
        raise RulesetError(
            f"{EOPNOTSUPP} (nat chains cannot attach to the {base.hook.value} hook)", loc
        )
    if base.type is ChainType.ROUTE and base.hook is not Hook.OUTPUT:
        raise RulesetError(f"{EOPNOTSUPP} (route chains only attach to the output hook)", loc)


class _Context:
    """nft's protocol context while it walks a rule left to right."""

    def __init__(self, family: Family) -> None:
        self.family = family
        self.l3: tuple[int, str] | None = None
        if len(family.ip_versions) == 1:
            self.l3 = (family.ip_versions[0], family.value)
        self.l4: tuple[frozenset[int], str] | None = None

    def need_l3(self, version: int, what: str, loc: Loc) -> None:
        if version not in self.family.ip_versions:
            raise RulesetError(
                f"conflicting protocols specified: {self.family.value} vs. {what}", loc
            )
        if self.l3 is not None and self.l3[0] != version:
            raise RulesetError(f"conflicting protocols specified: {self.l3[1]} vs. {what}", loc)
        self.l3 = (version, what)

    def need_l4(self, protos: frozenset[int], what: str, loc: Loc) -> None:
        if self.l4 is not None and not protos & self.l4[0]:
            raise RulesetError(f"conflicting protocols specified: {self.l4[1]} vs. {what}", loc)
        known = protos if self.l4 is None else protos & self.l4[0]
        self.l4 = (known, what)


def check_rule(table: Table, chain: Chain, rule: Rule) -> None:
    """Raise :class:`RulesetError` at the first item nft would refuse."""
    ctx = _Context(table.family)
    for index, item in enumerate(rule.items):
        if isinstance(item, TERMINAL) and index != len(rule.items) - 1:
            raise RulesetError(
                "Statement after terminal statement has no effect", rule.items[index + 1].loc
            )
        _check_item(table, chain, item, ctx)
    if chain.base is not None:
        _check_hooks(chain.base, rule)


def _check_item(table: Table, chain: Chain, item: Item, ctx: _Context) -> None:
    if isinstance(item, Match):
        _check_match(table, item, ctx)
    elif isinstance(item, Vmap):
        for fld in expr_fields(item.key):
            _field_context(fld, ctx, item.loc)
        if isinstance(item.mapping, SetRef):
            sdef = _set(table, item.mapping.name, item.loc)
            if sdef.data is not dt.VERDICT:
                raise RulesetError(f"map {sdef.name} is not a verdict map", item.loc)
            _check_types(item.key, sdef.key, item.loc)
        else:
            for _, verdict in item.mapping:
                _check_verdict(table, chain, verdict)
    elif isinstance(item, VerdictStatement):
        _check_verdict(table, chain, item)
    elif isinstance(item, Counter) and item.name is not None:
        if ("counter", item.name) not in table.objects:
            raise RulesetError(f"{ENOENT} (no counter {item.name} in table {table.name})",
                               item.loc)
    elif isinstance(item, SetUpdate):
        for fld in expr_fields(item.key):
            _field_context(fld, ctx, item.loc)
        if not item.meter:
            sdef = _set(table, item.set, item.loc)
            if sdef.is_map:
                raise RulesetError(f"{sdef.name} is a map; add a KEY : DATA element", item.loc)
            _check_types(item.key, sdef.key, item.loc)
    elif isinstance(item, Other) and item.tproxy is not None:
        if ctx.l4 is None or not ctx.l4[0] <= frozenset({6, 17}):
            raise RulesetError("transparent proxy support requires transport protocol match",
                               item.loc)
        _check_nat(table.family, item.tproxy, ctx, "tproxy")
    elif isinstance(item, Other | Limit):
        for kind, name in _object_refs(item):
            if (kind, name) not in table.objects:
                raise RulesetError(f"{ENOENT} (no {kind} {name} in table {table.name})",
                                   item.loc)
    elif isinstance(item, SetStatement):
        _check_set_statement(table, item, ctx)
    elif isinstance(item, Nat):
        _check_nat(table.family, item, ctx)
    elif isinstance(item, Reject):
        _check_reject(item, ctx)
    elif isinstance(item, FlowAdd) and item.flowtable not in table.flowtables:
        raise RulesetError(
            f"{ENOENT} (flowtable '{item.flowtable}' does not exist in table "
            f"{table.family.value} {table.name})",
            item.loc,
        )


def _object_refs(item: Other | Limit) -> tuple[tuple[str, str], ...]:
    if isinstance(item, Limit):
        return (("limit", item.byte_unit or ""),) if item.unit == "name" else ()
    return item.refs


_NEEDS_L3 = frozenset({("rt", "nexthop"), ("ct", "original saddr"), ("ct", "original daddr"),
                       ("ct", "reply saddr"), ("ct", "reply daddr")})


def _field_context(fld, ctx: _Context, loc: Loc) -> None:
    if fld.source and fld.source[0] == "tunnel" and fld.ns in ("vxlan", "geneve"):
        if ctx.l4 is None or ctx.l4[0] != frozenset({17}):  # the UDP port says it is vxlan
            raise RulesetError(f"{fld.ns} needs a udp dport match before it", loc)
        return
    if (fld.ns, fld.key) in _NEEDS_L3:  # the address family comes from the rule's context
        if ctx.l3 is None:
            raise RulesetError(f"{fld.ns} {fld.key}: missing network protocol context "
                               "(use meta nfproto ipv4 before it, or the ip/ip6 form)", loc)
        if ctx.l3[0] != 4:
            raise RulesetError(f"conflicting protocols specified: {ctx.l3[1]} vs. ip", loc)
    if fld.l3 is not None:
        ctx.need_l3(fld.l3, fld.ns if fld.ns in ("ip", "ip6") else "ip6", loc)
    if fld.l4 is not None:
        ctx.need_l4(frozenset({fld.l4}), fld.ns, loc)
    elif fld.ns == "th":
        ctx.need_l4(_PORT_PROTOCOLS, "th", loc)


def _check_match(table: Table, match: Match, ctx: _Context) -> None:
    fields = expr_fields(match.left)
    for fld in fields:
        _field_context(fld, ctx, match.loc)
    if isinstance(match.values, SetRef):
        sdef = _set(table, match.values.name, match.loc)
        if sdef.is_map:
            raise RulesetError(f"{sdef.name} is a map, not a set", match.loc)
        _check_types(match.left, sdef.key, match.loc)
        return
    if len(fields) != 1 or match.op not in ("implicit", "==") or isinstance(match.left, tuple):
        return
    fld = fields[0]
    vals = match.values
    if fld.ns == "meta" and fld.key == "nfproto" and len(vals) == 1:
        lo, hi = vals[0]  # type: ignore[misc]
        version = _NFPROTO_VERSION.get(lo) if lo == hi else None
        if version is not None:
            ctx.need_l3(version, "ip" if version == 4 else "ip6", match.loc)
    elif fld.is_protocol and fld.key in ("l4proto", "protocol", "nexthdr"):
        protos = set()
        for value in vals:
            lo, hi = value  # type: ignore[misc]
            protos.update(range(lo, hi + 1))
        name = _PROTO_NAMES.get(min(protos), str(min(protos))) if len(protos) == 1 else "set"
        ctx.need_l4(frozenset(protos), name, match.loc)


def _check_types(expr, key: tuple, loc: Loc) -> None:
    mine = expr_types(expr)
    if tuple(t.name for t in mine) != tuple(t.name for t in key):
        raise RulesetError(
            f"datatype mismatch, expected {' . '.join(t.name for t in key)}, "
            f"expression has type {' . '.join(t.name for t in mine)}",
            loc,
        )


def _set(table: Table, name: str, loc: Loc):
    sdef = table.sets.get(name)
    if sdef is None:
        raise RulesetError(f"{ENOENT} (no set {name} in table {table.family.value} "
                           f"{table.name})", loc)
    return sdef


def _check_verdict(table: Table, chain: Chain, verdict: VerdictStatement) -> None:
    if verdict.kind not in ("jump", "goto"):
        return
    if verdict.chain not in table.chains:
        raise RulesetError(f"{ENOENT} (no chain {verdict.chain} in table "
                           f"{table.family.value} {table.name})", verdict.loc)
    if table.chains[verdict.chain].base is not None:
        raise RulesetError(f"{EOPNOTSUPP} (cannot {verdict.kind} to base chain "
                           f"{verdict.chain})", verdict.loc)


def _check_set_statement(table: Table, stmt: SetStatement, ctx: _Context) -> None:
    target = stmt.target
    if isinstance(stmt.value, MapLookup):
        for fld in expr_fields(stmt.value.key):
            _field_context(fld, ctx, stmt.loc)
        if isinstance(stmt.value.mapping, SetRef):
            _set(table, stmt.value.mapping.name, stmt.loc)
        elif target.ns == "ct" and target.key == "helper":
            for _, name in stmt.value.mapping:
                if ("ct helper", name) not in table.objects:
                    raise RulesetError(f"{ENOENT} (no ct helper {name} in table {table.name})",
                                       stmt.loc)
    if target.ns == "ct" and target.key in ("helper", "timeout", "expectation") and isinstance(
        stmt.value, str
    ):
        kind = f"ct {target.key}"
        if (kind, stmt.value) not in table.objects:
            raise RulesetError(f"{ENOENT} (no {kind} {stmt.value} in table {table.name})",
                               stmt.loc)
        return
    if target.ns not in ("meta", "ct"):
        _field_context(target, ctx, stmt.loc)
    if target.ns == "meta" and target.key not in ("mark", "priority", "nftrace", "pkttype",
                                                  "secmark"):
        raise RulesetError(f"meta {target.key} cannot be set", stmt.loc)
    if target.ns == "ct" and target.key not in ("mark", "zone", "label", "event", "expectation",
                                                "secmark", "timeout", "helper"):
        raise RulesetError(f"ct {target.key} cannot be set", stmt.loc)


def _check_nat(family: Family, stmt: Nat, ctx: _Context, kind: str = "") -> None:
    kind = kind or stmt.kind.value
    version = None
    if stmt.family is not None:
        version = stmt.family.ip_versions[0]
        ctx.need_l3(version, stmt.family.value, stmt.loc)
    if stmt.map is not None:
        for fld in expr_fields(stmt.map.key):
            _field_context(fld, ctx, stmt.loc)
        addr_type = stmt.map.data[0]
        if addr_type.kind in ("ipv4", "ipv6"):
            mapped = 4 if addr_type.kind == "ipv4" else 6
            if version is None and ctx.l3 is None:
                raise RulesetError(
                    "ip or ip6 must be specified with address for inet tables.", stmt.loc
                )
            ctx.need_l3(mapped, "ip" if mapped == 4 else "ip6", stmt.loc)
    if stmt.addr is not None:
        if version is None:
            if ctx.l3 is None:
                raise RulesetError(
                    "ip or ip6 must be specified with address for inet tables.", stmt.loc
                )
            version = ctx.l3[0]
        if stmt.addr.version != version:
            raise RulesetError(
                f"conflicting protocols specified: {ctx.l3[1] if ctx.l3 else family.value} "
                f"vs. {'ip' if stmt.addr.version == 4 else 'ip6'} address in {kind}",
                stmt.loc,
            )
    if stmt.port_min is not None and (ctx.l4 is None or not ctx.l4[0] <= _PORT_PROTOCOLS):
        raise RulesetError(
            "transport protocol mapping is only valid after transport protocol match", stmt.loc
        )


def _check_reject(stmt: Reject, ctx: _Context) -> None:
    if stmt.kind == "icmp":
        ctx.need_l3(4, "icmp", stmt.loc)
    elif stmt.kind == "icmpv6":
        ctx.need_l3(6, "icmpv6", stmt.loc)
    elif stmt.kind == "tcp reset":
        ctx.need_l4(frozenset({6}), "tcp", stmt.loc)


# -- commit: what a base chain reaches ------------------------------------------------------------


def _targets(rule: Rule, table: Table) -> Iterator[VerdictStatement]:
    for item in rule.items:
        if isinstance(item, VerdictStatement) and item.chain and item.kind in ("jump", "goto"):
            yield item
        elif isinstance(item, Vmap):
            mapping = item.mapping
            if isinstance(mapping, SetRef):
                sdef = table.sets.get(mapping.name)
                pairs = sdef.elements if sdef is not None else []
            else:
                pairs = list(mapping)
            for _, verdict in pairs:
                if isinstance(verdict, VerdictStatement) and verdict.kind in ("jump", "goto"):
                    yield verdict


def chain_users(table: Table, name: str) -> list[Loc]:
    """Where rules of ``table`` jump or go to chain ``name`` (its ``use`` count)."""
    return [
        ref.loc
        for chain in table.chains.values()
        for rule in chain.rules
        for ref in _targets(rule, table)
        if ref.chain == name
    ]


def check_tables(tables: Iterable[Table]) -> None:
    for table in tables:
        for chain in table.chains.values():
            if chain.base is not None:
                _walk(table, chain.base, chain, [chain.name])


def _walk(table: Table, base: BaseSpec, chain: Chain, path: list[str]) -> None:
    for rule in chain.rules:
        if len(path) > 1:
            _check_hooks(base, rule)
        for ref in _targets(rule, table):
            target = table.chains.get(ref.chain or "")
            if target is None:
                raise RulesetError(f"{ENOENT} (no chain {ref.chain})", ref.loc)
            if ref.chain in path:
                raise RulesetError(
                    "Could not process rule: Too many levels of symbolic links "
                    f"(loop: {' -> '.join([*path, ref.chain])})",
                    ref.loc,
                )
            if len(path) >= JUMP_STACK_SIZE:
                raise RulesetError("Could not process rule: Too many links", ref.loc)
            _walk(table, base, target, [*path, target.name])


def _check_hooks(base: BaseSpec, rule: Rule) -> None:
    for item in rule.items:
        if isinstance(item, FlowAdd) and (
            base.hook is not Hook.FORWARD or base.type is not ChainType.FILTER
        ):
            raise RulesetError(
                f"{EOPNOTSUPP} (flow add is only valid in filter chains on the forward hook)",
                item.loc,
            )
        if isinstance(item, Nat):
            kind = item.kind.value
            if base.type is not ChainType.NAT:
                raise RulesetError(f"{EOPNOTSUPP} ({kind} is only valid in nat chains)",
                                   item.loc)
            if base.hook not in NAT_HOOKS[item.kind]:
                hooks = " or ".join(sorted(h.value for h in NAT_HOOKS[item.kind]))
                raise RulesetError(
                    f"{EOPNOTSUPP} ({kind} is only valid on the {hooks} "
                    f"hook{'s' if len(NAT_HOOKS[item.kind]) > 1 else ''})",
                    item.loc,
                )
        if isinstance(item, Other) and item.tproxy is not None and base.hook is not Hook.PREROUTING:
            raise RulesetError(f"{EOPNOTSUPP} (tproxy is only valid on the prerouting hook)",
                               item.loc)
        if isinstance(item, Reject) and base.hook not in REJECT_HOOKS:
            raise RulesetError(
                f"{EOPNOTSUPP} (reject is only valid on the prerouting, input, forward and "
                "output hooks)",
                item.loc,
            )
