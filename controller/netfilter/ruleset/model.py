"""The ruleset as data: tables holding base chains, rules and flowtables.

One model serves both readers (nft syntax and ``nft -j`` JSON), the validator, the formatter and
the evaluator. Values are already parsed (networks, port ranges, protocol numbers) so that two
spellings of the same ruleset compare equal. Source positions ride along (``loc``) for error
messages but never take part in equality.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field

from controller.netfilter.ruleset.errors import Loc

NOWHERE = Loc("<model>")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Family(enum.StrEnum):
    """Table families we support: what packets their chains see (inet: both)."""

    IP = "ip"
    IP6 = "ip6"
    INET = "inet"

    @property
    def ip_versions(self) -> tuple[int, ...]:
        return {"ip": (4,), "ip6": (6,), "inet": (4, 6)}[self.value]


class Hook(enum.StrEnum):
    """Netfilter IP hooks a base chain can attach to."""

    PREROUTING = "prerouting"
    INPUT = "input"
    FORWARD = "forward"
    OUTPUT = "output"
    POSTROUTING = "postrouting"


class ChainType(enum.StrEnum):
    FILTER = "filter"
    NAT = "nat"


class Field(enum.Enum):
    """What a match reads from the packet; value = (nft word 1, nft word 2)."""

    META_L4PROTO = ("meta", "l4proto")
    IP_PROTOCOL = ("ip", "protocol")
    IP_SADDR = ("ip", "saddr")
    IP_DADDR = ("ip", "daddr")
    IP6_NEXTHDR = ("ip6", "nexthdr")
    IP6_SADDR = ("ip6", "saddr")
    IP6_DADDR = ("ip6", "daddr")
    TCP_SPORT = ("tcp", "sport")
    TCP_DPORT = ("tcp", "dport")
    UDP_SPORT = ("udp", "sport")
    UDP_DPORT = ("udp", "dport")
    CT_STATE = ("ct", "state")
    IIFNAME = ("meta", "iifname")
    OIFNAME = ("meta", "oifname")

    @property
    def nft(self) -> str:
        """The spelling ``nft list ruleset`` uses."""
        if self.is_ifname:
            return self.value[1]
        return " ".join(self.value)

    @property
    def is_protocol(self) -> bool:
        return self.value[1] in ("l4proto", "protocol", "nexthdr")

    @property
    def is_ifname(self) -> bool:
        return self.value[1] in ("iifname", "oifname")

    @property
    def is_port(self) -> bool:
        return self.value[1] in ("sport", "dport")

    @property
    def ip_version(self) -> int | None:
        """The IP version a match implies (nft adds this dependency implicitly)."""
        return {"ip": 4, "ip6": 6}.get(self.value[0])

    @property
    def l4proto(self) -> int | None:
        """The L4 protocol a match implies (``tcp dport`` only matches TCP)."""
        return {"tcp": 6, "udp": 17}.get(self.value[0])


FIELDS_BY_WORDS: dict[tuple[str, str], Field] = {f.value: f for f in Field}
"""``("tcp", "dport")`` → Field: how both readers name what a match reads."""

Value = int | tuple[int, int] | IPNetwork | str
"""A match operand: protocol number, inclusive port range, network, interface name or ct state."""


@dataclass(slots=True)
class Match:
    """``FIELD [!=] VALUE`` or ``FIELD [!=] { VALUE, ... }``: true if any value matches."""

    field: Field
    values: tuple[Value, ...]
    negate: bool = False
    loc: Loc = field(default=NOWHERE, compare=False)


@dataclass(slots=True)
class Counter:
    """``counter``: mutable packet and byte counts, like nft's per-rule counter."""

    packets: int = 0
    bytes: int = 0
    loc: Loc = field(default=NOWHERE, compare=False)


@dataclass(slots=True)
class VerdictStatement:
    """``accept`` or ``drop``: ends evaluation of the chain."""

    accept: bool
    loc: Loc = field(default=NOWHERE, compare=False)


@dataclass(slots=True)
class FlowAdd:
    """``flow add @NAME`` (old spelling ``flow offload @NAME``): offer the connection."""

    flowtable: str
    loc: Loc = field(default=NOWHERE, compare=False)


class NatKind(enum.StrEnum):
    SNAT = "snat"
    DNAT = "dnat"
    MASQUERADE = "masquerade"


@dataclass(slots=True)
class Nat:
    """``snat|dnat [ip|ip6] to ADDR[:PORT[-PORT]]`` or ``masquerade [to :PORT[-PORT]]``."""

    kind: NatKind
    addr: IPAddress | None = None
    port_min: int | None = None
    port_max: int | None = None
    family: Family | None = None  # the explicit ``ip``/``ip6`` of ``snat ip to``
    loc: Loc = field(default=NOWHERE, compare=False)


Statement = Counter | VerdictStatement | FlowAdd | Nat
Item = Match | Statement


@dataclass(slots=True)
class Rule:
    """Matches and statements in source order; evaluation stops at the first failing match."""

    items: list[Item]
    loc: Loc = field(default=NOWHERE, compare=False)

    def flowtable_refs(self) -> list[FlowAdd]:
        return [i for i in self.items if isinstance(i, FlowAdd)]


@dataclass(slots=True)
class BaseSpec:
    """``type T hook H priority P; policy X;`` of a base chain."""

    type: ChainType
    hook: Hook
    priority: int
    policy_accept: bool = True


@dataclass(slots=True)
class Chain:
    name: str
    base: BaseSpec | None = None  # None: a regular chain, never entered without jump/goto
    rules: list[Rule] = field(default_factory=list)
    loc: Loc = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class FlowtableDef:
    """A flowtable as ``nft list flowtable`` shows it; what the flowtable engine is built from.

    ``handle`` identifies this flowtable object, as the kernel's NFTA_FLOWTABLE_HANDLE: an update
    (``add flowtable`` on an existing one) keeps it, a flowtable deleted and added again in one
    transaction (``flush ruleset`` + the same table) gets a new one. It does not take part in
    equality: two rulesets that read the same are equal.
    """

    family: Family
    table: str
    name: str
    priority: int
    devices: tuple[str, ...] = ()
    offload: bool = False
    counter: bool = False
    hook: str = "ingress"
    loc: Loc = field(default=NOWHERE, compare=False, hash=False)
    handle: int = field(default=0, compare=False, hash=False)


@dataclass(slots=True)
class Table:
    family: Family
    name: str
    chains: dict[str, Chain] = field(default_factory=dict)
    flowtables: dict[str, FlowtableDef] = field(default_factory=dict)
    loc: Loc = field(default=NOWHERE, compare=False)

    def flowtable_users(self, name: str) -> list[FlowAdd]:
        """Every ``flow add @name`` in this table (the kernel's ``flowtable->use``)."""
        return [
            ref
            for chain in self.chains.values()
            for rule in chain.rules
            for ref in rule.flowtable_refs()
            if ref.flowtable == name
        ]
