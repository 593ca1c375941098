"""Script commands: what ``nft -f`` executes, one object per ``add``/``delete``/``flush``.

Both readers produce these; :mod:`.transaction` applies them to a copy of the model, so a
script either applies completely or not at all (nft's batch semantics).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.netfilter.ruleset.errors import Loc
from controller.netfilter.ruleset.model import NOWHERE, BaseSpec, Family, ObjectDef, Rule, SetDef


@dataclass(slots=True)
class AddTable:
    family: Family
    name: str
    loc: Loc = NOWHERE
    create: bool = False  # ``create``: EEXIST if it exists


@dataclass(slots=True)
class AddChain:
    family: Family
    table: str
    name: str
    base: BaseSpec | None = None
    loc: Loc = NOWHERE
    base_loc: Loc = NOWHERE  # the ``type`` clause, where hook/type errors point
    create: bool = False


@dataclass(slots=True)
class Device:
    name: str
    loc: Loc = NOWHERE


@dataclass(slots=True)
class FlowtableSpec:
    """The body of ``flowtable NAME { ... }``; None/False for what the body leaves out."""

    hook: str | None = None
    priority: int | None = None
    devices: list[Device] = field(default_factory=list)
    offload: bool = False
    counter: bool = False
    hook_loc: Loc = NOWHERE
    flags_loc: Loc = NOWHERE

    @property
    def has_flags(self) -> bool:
        """nft sends NFTA_FLOWTABLE_FLAGS only when some flag is set (mnl.c)."""
        return self.offload or self.counter


@dataclass(slots=True)
class AddFlowtable:
    family: Family
    table: str
    name: str
    spec: FlowtableSpec
    loc: Loc = NOWHERE


@dataclass(slots=True)
class AddRule:
    family: Family
    table: str
    chain: str
    rule: Rule
    insert: bool = False  # ``insert rule``: prepend instead of append
    loc: Loc = NOWHERE
    handle: int | None = None  # ``position N``/``handle N``: next to that rule
    replace: bool = False  # ``replace rule ... handle N``


@dataclass(slots=True)
class DeleteRule:
    family: Family
    table: str
    chain: str
    handle: int
    loc: Loc = NOWHERE


@dataclass(slots=True)
class AddSet:
    family: Family
    table: str
    set: SetDef
    loc: Loc = NOWHERE
    create: bool = False


@dataclass(slots=True)
class SetElements:
    """``add element`` / ``delete element``: keys (with data for maps)."""

    family: Family
    table: str
    name: str
    elements: list
    delete: bool = False
    loc: Loc = NOWHERE


@dataclass(slots=True)
class DeleteSet:
    """``delete set``/``delete map`` (``flush``: only the elements)."""

    family: Family
    table: str
    name: str
    flush: bool = False
    loc: Loc = NOWHERE


@dataclass(slots=True)
class AddObject:
    family: Family
    table: str
    obj: ObjectDef
    loc: Loc = NOWHERE
    create: bool = False


@dataclass(slots=True)
class DeleteObject:
    family: Family
    table: str
    kind: str
    name: str
    loc: Loc = NOWHERE


@dataclass(slots=True)
class DeleteTable:
    family: Family
    name: str
    loc: Loc = NOWHERE
    must_exist: bool = True  # ``destroy``: no error when it is missing


@dataclass(slots=True)
class DeleteFlowtable:
    family: Family
    table: str
    name: str
    devices: list[Device] | None = None  # ``delete flowtable T F { devices = {..}; }``
    loc: Loc = NOWHERE


@dataclass(slots=True)
class DeleteChain:
    """Deletes the chain with its rules (refused while a rule jumps to it)."""

    family: Family
    table: str
    name: str
    loc: Loc = NOWHERE


@dataclass(slots=True)
class FlushChain:
    """Removes the rules of one chain (``chain`` set) or of every chain of the table."""

    family: Family
    table: str
    chain: str | None = None
    loc: Loc = NOWHERE


@dataclass(slots=True)
class FlushRuleset:
    family: Family | None = None
    loc: Loc = NOWHERE


Command = (
    AddSet
    | SetElements
    | DeleteSet
    | AddObject
    | DeleteObject
    | DeleteRule
    | AddTable
    | AddChain
    | AddFlowtable
    | AddRule
    | DeleteTable
    | DeleteChain
    | DeleteFlowtable
    | FlushChain
    | FlushRuleset
)
