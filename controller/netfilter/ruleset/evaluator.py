"""Run a packet through the base chains of one hook, as netfilter does.

Chains of the hook are taken in priority order across every table whose family matches (inet
matches IPv4 and IPv6). ``accept`` ends a chain and the packet goes on to the next chain; ``drop``
ends everything; the policy applies when a chain runs out of rules. NAT chains see only the first
packet of a connection (``ctx.ct_new``), and once one of them has bound a mapping, later NAT
chains of the hook are skipped, like ``nf_nat_inet_fn``. ``flow add @ft`` calls ``flow_add`` and
the rule continues.

Rules are compiled once into closures so that a packet costs a few attribute reads and set
lookups per rule, never string work.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from controller.netfilter.ct import CtInfo
from controller.netfilter.ruleset.model import (
    ChainType,
    Counter,
    Field,
    FlowAdd,
    FlowtableDef,
    Hook,
    Match,
    Nat,
    Rule,
    Table,
    VerdictStatement,
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
    kernel mode's offload selectors hand it a connection's original direction."""

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


@dataclass(frozen=True, slots=True)
class NatAction:
    """The mapping a NAT rule asks for; ``addr`` None means "the egress address" (masquerade)."""

    kind: str  # "snat" | "dnat" | "masquerade"
    addr: bytes | None = None
    port_min: int | None = None
    port_max: int | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    accept: bool
    nat: NatAction | None = None


ACCEPT = Verdict(True)
DROP = Verdict(False)

FlowAddHook = Callable[[FlowtableDef, PacketContext], None]
Step = Callable[[PacketContext], bool]

_CT_STATES = {
    "established": (CtInfo.ESTABLISHED, CtInfo.ESTABLISHED_REPLY),
    "related": (CtInfo.RELATED, CtInfo.RELATED_REPLY),
    "new": (CtInfo.NEW,),
    "invalid": (CtInfo.INVALID,),
    "untracked": (),  # we track everything
}
_ATTRS = {
    Field.IP_SADDR: "src",
    Field.IP6_SADDR: "src",
    Field.IP_DADDR: "dst",
    Field.IP6_DADDR: "dst",
    Field.TCP_SPORT: "sport",
    Field.UDP_SPORT: "sport",
    Field.TCP_DPORT: "dport",
    Field.UDP_DPORT: "dport",
    Field.IIFNAME: "iifname",
    Field.OIFNAME: "oifname",
}


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    steps: tuple[Step, ...]
    outcome: Verdict | None  # what the rule's terminal statement decides
    outcome_family: int | None  # ``snat ip to`` in an inet table acts only on IPv4


@dataclass(frozen=True, slots=True)
class _CompiledChain:
    priority: int
    is_nat: bool
    rules: tuple[_CompiledRule, ...]
    policy: Verdict

    def run(self, ctx: PacketContext) -> Verdict:
        family = ctx.family
        for rule in self.rules:
            for step in rule.steps:
                if not step(ctx):
                    break
            else:
                outcome = rule.outcome
                if outcome is not None and rule.outcome_family in (None, family):
                    return outcome
        return self.policy


class Evaluator:
    """Compiled view of a :class:`Ruleset`; build a new one when the ruleset changes."""

    def __init__(self, ruleset: Ruleset, *, flow_add: FlowAddHook | None = None) -> None:
        self._flow_add = flow_add
        chains: dict[tuple[Hook, int], list[_CompiledChain]] = {}
        for table, chain in ruleset.chains():
            if chain.base is None:
                continue  # regular chains are only reached by jump/goto, which we lack
            compiled = _CompiledChain(
                chain.base.priority,
                chain.base.type is ChainType.NAT,
                tuple(self._compile_rule(table, rule) for rule in chain.rules),
                ACCEPT if chain.base.policy_accept else DROP,
            )
            for version in table.family.ip_versions:
                chains.setdefault((chain.base.hook, version), []).append(compiled)
        self._chains = {
            key: tuple(sorted(v, key=lambda c: c.priority)) for key, v in chains.items()
        }

    def run(self, hook: Hook, family: int, ctx: PacketContext) -> Verdict:
        nat: NatAction | None = None
        for chain in self._chains.get((hook, family), ()):
            if chain.is_nat and (nat is not None or not ctx.ct_new):
                continue
            verdict = chain.run(ctx)
            if not verdict.accept:
                return verdict if nat is None else Verdict(False, nat)
            if verdict.nat is not None:
                nat = verdict.nat
        return ACCEPT if nat is None else Verdict(True, nat)

    # -- compilation -----------------------------------------------------------------------------

    def _compile_rule(self, table: Table, rule: Rule) -> _CompiledRule:
        steps: list[Step] = []
        outcome: Verdict | None = None
        outcome_family: int | None = None
        for item in rule.items:
            if isinstance(item, Match):
                steps.append(_compile_match(item))
            elif isinstance(item, Counter):
                steps.append(_counting(item))
            elif isinstance(item, FlowAdd):
                steps.append(self._flow_adding(table.flowtables[item.flowtable]))
            elif isinstance(item, VerdictStatement):
                outcome = ACCEPT if item.accept else DROP
            else:
                assert isinstance(item, Nat)
                outcome, outcome_family = _nat_outcome(item)
        return _CompiledRule(tuple(steps), outcome, outcome_family)

    def _flow_adding(self, ft: FlowtableDef) -> Step:
        hook = self._flow_add

        def flow_add(ctx: PacketContext) -> bool:
            if hook is not None:
                hook(ft, ctx)
            return True

        return flow_add


def _counting(counter: Counter) -> Step:
    def count(ctx: PacketContext) -> bool:
        counter.packets += 1
        counter.bytes += ctx.length
        return True

    return count


def _nat_outcome(nat: Nat) -> tuple[Verdict, int | None]:
    family = None
    if nat.family is not None:
        family = nat.family.ip_versions[0]
    if nat.addr is not None:
        family = nat.addr.version
    addr = nat.addr.packed if nat.addr is not None else None
    return Verdict(True, NatAction(nat.kind.value, addr, nat.port_min, nat.port_max)), family


def _compile_match(match: Match) -> Step:
    test = _value_test(match)
    if match.negate:
        positive = test

        def test(ctx: PacketContext) -> bool:
            return not positive(ctx)

    l4 = match.field.l4proto
    if l4 is not None:
        inner = test

        def test(ctx: PacketContext) -> bool:
            return ctx.proto == l4 and inner(ctx)

    version = match.field.ip_version
    if version is not None:
        unversioned = test

        def test(ctx: PacketContext) -> bool:
            return ctx.family == version and unversioned(ctx)

    return test


def _value_test(match: Match) -> Step:
    field, vals = match.field, match.values
    if field.is_protocol:
        protos = frozenset(vals)
        return lambda ctx: ctx.proto in protos
    if field is Field.CT_STATE:
        states = frozenset(s for v in vals for s in _CT_STATES[str(v)])
        return lambda ctx: ctx.ct_state in states
    attr = _ATTRS[field]
    if field.is_ifname:
        return _ifname_test(attr, [str(v) for v in vals])
    if field.is_port:
        return _port_test(attr, vals)  # type: ignore[arg-type]
    return _address_test(attr, vals)  # type: ignore[arg-type]


def _ifname_test(attr: str, names: list[str]) -> Step:
    exact = frozenset(n for n in names if not n.endswith("*"))
    prefixes = tuple(n[:-1] for n in names if n.endswith("*"))  # nft wildcard "eth*"

    def test(ctx: PacketContext) -> bool:
        name = getattr(ctx, attr) or ""
        return name in exact or (bool(prefixes) and name.startswith(prefixes))

    return test


def _port_test(attr: str, ranges: Sequence[tuple[int, int]]) -> Step:
    if all(lo == hi for lo, hi in ranges):
        ports = frozenset(lo for lo, _ in ranges)
        return lambda ctx: getattr(ctx, attr) in ports
    bounds = tuple(ranges)
    return lambda ctx: any(lo <= getattr(ctx, attr) <= hi for lo, hi in bounds)


def _address_test(attr: str, nets: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> Step:
    if all(n.prefixlen == n.max_prefixlen for n in nets):
        hosts = frozenset(n.network_address.packed for n in nets)
        return lambda ctx: getattr(ctx, attr) in hosts
    masks = tuple((int(n.network_address), int(n.netmask)) for n in nets)

    def test(ctx: PacketContext) -> bool:
        value = int.from_bytes(getattr(ctx, attr), "big")
        return any(value & mask == net for net, mask in masks)

    return test
