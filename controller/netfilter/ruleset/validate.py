"""nft's own checks, applied when a chain or rule is added to a table.

The rules come from the kernel and nft (see shared/reference/kernel-flowtable.md §2.1, §5):
``flow add`` needs an existing flowtable of the same table and a filter chain on the forward
hook; NAT statements need a nat chain on a hook where that NAT kind exists; matches must fit the
table's family; nothing may follow a terminal statement.
"""

from __future__ import annotations

from controller.netfilter.ruleset.errors import Loc, RulesetError
from controller.netfilter.ruleset.model import (
    BaseSpec,
    Chain,
    ChainType,
    Family,
    FlowAdd,
    Hook,
    Match,
    Nat,
    NatKind,
    Rule,
    Table,
    VerdictStatement,
)

NAT_CHAIN_HOOKS = frozenset({Hook.PREROUTING, Hook.INPUT, Hook.OUTPUT, Hook.POSTROUTING})
NAT_HOOKS = {
    NatKind.DNAT: frozenset({Hook.PREROUTING, Hook.OUTPUT}),
    NatKind.SNAT: frozenset({Hook.POSTROUTING, Hook.INPUT}),
    NatKind.MASQUERADE: frozenset({Hook.POSTROUTING, Hook.INPUT}),
}
_FAMILY_OF_VERSION = {4: Family.IP, 6: Family.IP6}


def check_base_chain(base: BaseSpec, loc: Loc) -> None:
    if base.type is ChainType.NAT and base.hook not in NAT_CHAIN_HOOKS:
        raise RulesetError(
            f"Could not process rule: Operation not supported "
            f"(nat chains cannot attach to the {base.hook.value} hook)",
            loc,
        )


def check_rule(table: Table, chain: Chain, rule: Rule) -> None:
    """Raise :class:`RulesetError` at the first item nft would refuse."""
    version: tuple[int, Loc] | None = None  # IP version implied so far, and by what
    l4: tuple[str, Loc] | None = None
    for index, item in enumerate(rule.items):
        if isinstance(item, VerdictStatement | Nat) and index != len(rule.items) - 1:
            raise RulesetError(
                "Statement after terminal statement has no effect", rule.items[index + 1].loc
            )
        if isinstance(item, Match):
            version = _check_match_family(table.family, item, version)
            l4 = _check_match_l4(item, l4)
        elif isinstance(item, FlowAdd):
            _check_flow_add(table, chain, item)
        elif isinstance(item, Nat):
            _check_nat(table.family, chain, item, version)


def _check_match_family(
    family: Family, match: Match, seen: tuple[int, Loc] | None
) -> tuple[int, Loc] | None:
    wanted = match.field.ip_version
    if wanted is None:
        return seen
    proto = match.field.value[0]
    if wanted not in family.ip_versions:
        raise RulesetError(
            f"conflicting protocols specified: {family.value} vs. {proto} "
            f"({proto} matches need an {proto} or inet table)",
            match.loc,
        )
    if seen is not None and seen[0] != wanted:
        other = "ip" if seen[0] == 4 else "ip6"
        raise RulesetError(f"conflicting protocols specified: {other} vs. {proto}", match.loc)
    return wanted, match.loc


def _check_match_l4(match: Match, seen: tuple[str, Loc] | None) -> tuple[str, Loc] | None:
    if match.field.l4proto is None:
        return seen
    proto = match.field.value[0]
    if seen is not None and seen[0] != proto:
        raise RulesetError(f"conflicting protocols specified: {seen[0]} vs. {proto}", match.loc)
    return proto, match.loc


def _check_flow_add(table: Table, chain: Chain, stmt: FlowAdd) -> None:
    if stmt.flowtable not in table.flowtables:
        raise RulesetError(
            f"Could not process rule: No such file or directory "
            f"(flowtable '{stmt.flowtable}' does not exist in table "
            f"{table.family.value} {table.name})",
            stmt.loc,
        )
    base = chain.base
    if base is not None and (base.hook is not Hook.FORWARD or base.type is not ChainType.FILTER):
        raise RulesetError(
            "Could not process rule: Operation not supported "
            "(flow add is only valid in filter chains on the forward hook)",
            stmt.loc,
        )


def _check_nat(family: Family, chain: Chain, stmt: Nat, seen: tuple[int, Loc] | None) -> None:
    kind = stmt.kind.value
    base = chain.base
    if base is not None and base.type is not ChainType.NAT:
        raise RulesetError(
            f"Could not process rule: Operation not supported ({kind} is only valid in nat chains)",
            stmt.loc,
        )
    if base is not None and base.hook not in NAT_HOOKS[stmt.kind]:
        hooks = " or ".join(sorted(h.value for h in NAT_HOOKS[stmt.kind]))
        raise RulesetError(
            f"Could not process rule: Operation not supported "
            f"({kind} is only valid on the {hooks} hooks)",
            stmt.loc,
        )
    families = {f for f in (stmt.family,) if f is not None}
    if stmt.addr is not None:
        families.add(_FAMILY_OF_VERSION[stmt.addr.version])
    if len(families) > 1:
        raise RulesetError(
            f"{kind}: address {stmt.addr} is not in family {stmt.family.value}", stmt.loc
        )
    for nat_family in families:
        version = nat_family.ip_versions[0]
        if version not in family.ip_versions or (seen is not None and seen[0] != version):
            other = family.value if seen is None else ("ip" if seen[0] == 4 else "ip6")
            raise RulesetError(
                f"conflicting protocols specified: {other} vs. {nat_family.value} in {kind}",
                stmt.loc,
            )
