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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from controller.netfilter.ct import CtInfo
from controller.netfilter.ruleset.model import (
    ChainType,
    Counter,
    FlowAdd,
    FlowtableDef,
    Hook,
    Limit,
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
    expr_types,
)
from controller.netfilter.ruleset.ruleset import Ruleset
from controller.netfilter.ruleset.selectors import (
    NEVER_NONE,
    Step,
    comparison,
    expr_getter,
    guards,
    live_membership,
    membership,
)
from controller.netfilter.ruleset.statements import (
    counting,
    limiting,
    nat_map_step,
    nat_steps,
    notrack,
    reject_steps,
    set_update,
    setting,
    verdict_step,
    vmap_step,
)
from controller.netfilter.ruleset.verdicts import ACCEPT, DROP, NatAction, RejectAction, Verdict

__all__ = ["ACCEPT", "DROP", "Evaluator", "NatAction", "PacketContext", "RejectAction",
           "RuleContext", "Verdict"]


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


CONNTRACK_PRIORITY = -200  # NF_IP_PRI_CONNTRACK: raw chains (-300) run before it

FlowAddHook = Callable[[FlowtableDef, PacketContext], None]


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
                for guard in guards(item.left):
                    steps.insert(len(steps) - 1, guard)
            elif isinstance(item, Counter):
                steps.append(counting(item, table))
            elif isinstance(item, FlowAdd):
                steps.append(self._flow_adding(table.flowtables[item.flowtable]))
            elif isinstance(item, VerdictStatement):
                steps.append(verdict_step(item, chains))
            elif isinstance(item, Nat) and item.map is not None:
                steps.extend(guards(item.map.key))
                steps.append(nat_map_step(item, table))
            elif isinstance(item, Nat):
                steps.extend(nat_steps(item))
            elif isinstance(item, Reject):
                steps.extend(reject_steps(item))
            elif isinstance(item, Limit):
                steps.append(limiting(item, table))
            elif isinstance(item, SetStatement):
                steps.append(setting(item, table))
            elif isinstance(item, Notrack):
                steps.append(notrack)
            elif isinstance(item, SetUpdate):
                steps.extend(guards(item.key))
                steps.append(set_update(item, table))
            elif isinstance(item, Vmap):
                steps.extend(guards(item.key))
                steps.append(vmap_step(item, table, chains))
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


def _compile_match(match: Match, table: Table) -> Step:
    get = expr_getter(match.left)
    dtypes = expr_types(match.left)
    values = match.values
    if isinstance(values, SetRef):
        test = live_membership(dtypes, table.sets[values.name])
    elif match.is_set:
        test = membership(dtypes, list(values))
    else:
        test = comparison(dtypes, match.op, values[0])
    if match.op == "!=":
        positive = test

        def test(value: Any) -> bool:
            return not positive(value)

    if get in NEVER_NONE:

        def always(ctx: Any) -> bool:
            return test(get(ctx))

        return always

    def step(ctx: Any) -> bool:
        value = get(ctx)
        return value is not None and test(value)

    return step
