"""The nft ruleset: nft syntax and ``nft -j`` JSON readers, model, nft's validation, evaluator.

Public API (the classic path and the daemon code against these names)::

    loads(text, filename) -> Ruleset         load_file(path) -> Ruleset
    Ruleset.apply(script) -> Ruleset          Ruleset.flowtables() / .format() / .to_json()
    Evaluator(ruleset, flow_add=cb).run(hook, family, ctx) -> Verdict
"""

from controller.netfilter.ruleset.errors import Loc, RulesetError
from controller.netfilter.ruleset.evaluator import (
    ACCEPT,
    DROP,
    Evaluator,
    NatAction,
    PacketContext,
    RejectAction,
    RuleContext,
    Verdict,
)
from controller.netfilter.ruleset.model import Family, FlowtableDef, Hook
from controller.netfilter.ruleset.ruleset import Ruleset, load_file, loads, parse_script

__all__ = [
    "ACCEPT",
    "DROP",
    "Evaluator",
    "Family",
    "FlowtableDef",
    "Hook",
    "Loc",
    "NatAction",
    "PacketContext",
    "RejectAction",
    "RuleContext",
    "Ruleset",
    "RulesetError",
    "Verdict",
    "load_file",
    "loads",
    "parse_script",
]
