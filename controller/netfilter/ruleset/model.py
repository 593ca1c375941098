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

from controller.netfilter.ruleset.datatypes import DataType, Interval
from controller.netfilter.ruleset.errors import Loc
from controller.netfilter.ruleset.fields import FIELDS, Field

FIELDS_BY_WORDS = FIELDS

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
    ROUTE = "route"  # output hook only; a filter chain that re-routes on mark changes


@dataclass(frozen=True, slots=True)
class Masked:
    """``EXPR & MASK`` (also ``| OR``, ``^ XOR``, ``>> N``, ``<< N``): nft's bitwise expression
    (``nft_bitwise``), applied to the value before the comparison."""

    expr: Expr
    op: str
    operand: int


@dataclass(frozen=True, slots=True)
class Concat:
    """``a . b . c``: the key of a concatenated set lookup."""

    parts: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class MapLookup:
    """``EXPR map { KEY : DATA, ... }`` / ``EXPR map @m``: the data of the element the key
    falls in (``nft_lookup`` with a map); no element, and the rule ends."""

    key: Expr
    mapping: tuple[tuple[Value, Value], ...] | SetRef
    data: tuple[DataType, ...]


Expr = Field | Masked | Concat
Value = Interval | str | tuple
"""A constant: an interval ``(lo, hi)`` on the type's encoding, a string (interface or helper
name), or for concatenations a tuple of those."""


def expr_fields(expr: Expr) -> list[Field]:
    if isinstance(expr, Field):
        return [expr]
    if isinstance(expr, Masked):
        return expr_fields(expr.expr)
    return [f for part in expr.parts for f in expr_fields(part)]


def expr_types(expr: Expr) -> tuple[DataType, ...]:
    if isinstance(expr, Concat):
        return tuple(t for part in expr.parts for t in expr_types(part))
    return (expr_fields(expr)[0].dtype,)


@dataclass(frozen=True, slots=True)
class SetRef:
    """``@name``: a named set or map of the table."""

    name: str


@dataclass(slots=True)
class Match:
    """``EXPR [OP] VALUE``, ``EXPR [!=] { VALUE, ... }`` or ``EXPR [!=] @set``.

    ``op`` is ``==``, ``!=``, ``<``, ``>``, ``<=``, ``>=`` or ``implicit`` (no operator: for
    bitmask types nft means ``EXPR & VALUE != 0``)."""

    left: Expr
    values: tuple[Value, ...] | SetRef
    op: str = "implicit"
    is_set: bool = False  # written with braces: an anonymous set lookup
    loc: Loc = field(default=NOWHERE, compare=False)

    @property
    def negate(self) -> bool:
        return self.op == "!="

    @property
    def field(self) -> Field:
        return expr_fields(self.left)[0]


@dataclass(slots=True)
class Counter:
    """``counter``: mutable packet and byte counts; ``name``: ``counter name X`` uses the named
    counter object X instead."""

    packets: int = 0
    bytes: int = 0
    loc: Loc = field(default=NOWHERE, compare=False)
    name: str | None = None


@dataclass(slots=True)
class VerdictStatement:
    """``accept``/``drop``/``continue``/``return``/``jump C``/``goto C``/``queue``."""

    accept: bool | None = None  # kept for accept/drop
    loc: Loc = field(default=NOWHERE, compare=False)
    kind: str = ""
    chain: str | None = None

    def __post_init__(self) -> None:
        if not self.kind:
            self.kind = "accept" if self.accept else "drop"
        if self.kind in ("accept", "drop"):
            self.accept = self.kind == "accept"

    @property
    def text(self) -> str:
        return f"{self.kind} {self.chain}" if self.chain else self.kind


@dataclass(slots=True)
class FlowAdd:
    """``flow add @NAME`` (old spelling ``flow offload @NAME``): offer the connection."""

    flowtable: str
    loc: Loc = field(default=NOWHERE, compare=False)


class NatKind(enum.StrEnum):
    SNAT = "snat"
    DNAT = "dnat"
    MASQUERADE = "masquerade"
    REDIRECT = "redirect"


@dataclass(slots=True)
class Nat:
    """``snat|dnat [ip|ip6] to ADDR[-ADDR][:PORT[-PORT]] [FLAGS]``, ``masquerade [to :PORTS]``
    or ``redirect [to :PORTS]``; ``addr_max`` is the top of an address range."""

    kind: NatKind
    addr: IPAddress | None = None
    port_min: int | None = None
    port_max: int | None = None
    family: Family | None = None  # the explicit ``ip``/``ip6`` of ``snat ip to``
    loc: Loc = field(default=NOWHERE, compare=False)
    addr_max: IPAddress | None = None
    flags: tuple[str, ...] = ()
    addr_len: int | None = None  # ``dnat to 10.0.0.0/24``: a prefix (mapped as a range)
    map: MapLookup | None = None  # ``dnat to ip daddr map { ... }``: address[/port] per packet


@dataclass(slots=True)
class Reject:
    """``reject [with icmp|icmpv6|icmpx [type] CODE | with tcp reset]``."""

    kind: str | None = None  # None (default per family) | icmp | icmpv6 | icmpx | tcp reset
    code: int | None = None
    loc: Loc = field(default=NOWHERE, compare=False)


@dataclass(slots=True)
class Log:
    """``log [prefix S] [level L] [group N] [snaplen N] [queue-threshold N] [flags F]``."""

    options: tuple[tuple[str, str], ...] = ()
    loc: Loc = field(default=NOWHERE, compare=False)


@dataclass(slots=True)
class Limit:
    """``limit rate [over] N/UNIT [burst M packets]`` or a byte rate; token bucket state rides
    along (``nft_limit_eval``)."""

    rate: int
    unit: str
    burst: int = 5
    over: bool = False
    byte_unit: str | None = None  # bytes/kbytes/mbytes for byte rates
    burst_unit: str | None = None
    loc: Loc = field(default=NOWHERE, compare=False)
    tokens: float = field(default=-1.0, compare=False)
    last: float = field(default=0.0, compare=False)


@dataclass(slots=True)
class SetStatement:
    """``meta mark set V``, ``ct mark set V``, ``ct helper set "ftp"``, ``ip dscp set cs1``...;
    the value is a constant or another expression (``ct mark set meta mark``)."""

    target: Field
    value: Value | Expr | MapLookup
    loc: Loc = field(default=NOWHERE, compare=False)


@dataclass(slots=True)
class Notrack:
    loc: Loc = field(default=NOWHERE, compare=False)


@dataclass(slots=True)
class Vmap:
    """``EXPR vmap { VALUE : VERDICT, ... }`` or ``EXPR vmap @map``."""

    key: Expr
    mapping: tuple[tuple[Value, VerdictStatement], ...] | SetRef
    loc: Loc = field(default=NOWHERE, compare=False)


@dataclass(slots=True)
class SetUpdate:
    """``add|update|delete @SET { KEY [timeout T] [STATEFUL] }`` (``nft_dynset``) or
    ``meter NAME { KEY [STATEFUL] }``: the key enters (or leaves) the set from the packet path;
    stateful statements (``limit``, ``counter``) run per element, a ``limit`` deciding whether
    the rule goes on."""

    op: str  # add | update | delete
    set: str
    key: Expr
    timeout: str | None = None
    stateful: tuple[Limit | Counter, ...] = ()
    meter: bool = False
    size: int | None = None
    loc: Loc = field(default=NOWHERE, compare=False)


@dataclass(slots=True)
class Other:
    """A statement that changes nothing the mirror models (``tcp option maxseg size set rt mtu``,
    ``dup``, ``fwd``, ``synproxy``...): kept as nft prints it, evaluated as a no-op."""

    text: str
    loc: Loc = field(default=NOWHERE, compare=False)
    refs: tuple[tuple[str, str], ...] = ()  # named objects it uses (``quota name X``)
    tproxy: Nat | None = None  # ``tproxy``: its target, checked like a NAT target


Statement = (
    Counter | VerdictStatement | FlowAdd | Nat | Reject | Log | Limit | SetStatement | Notrack
    | Vmap | SetUpdate | Other
)
Item = Match | Statement
TERMINAL = (VerdictStatement, Nat, Reject)  # a vmap may be followed (nft accepts it)


@dataclass(slots=True)
class Rule:
    """Matches and statements in source order; evaluation stops at the first failing match."""

    items: list[Item]
    loc: Loc = field(default=NOWHERE, compare=False)
    comment: str | None = None
    handle: int = field(default=0, compare=False)

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
class SetDef:
    """A named set or map: key types, optional data type (``verdict`` for vmaps), flags,
    elements (``(key, data)`` pairs for maps)."""

    name: str
    key: tuple[DataType, ...]
    data: DataType | None = None
    flags: tuple[str, ...] = ()
    timeout: str | None = None
    elements: list = field(default_factory=list)
    options: tuple[tuple[str, str], ...] = ()  # size, policy, gc-interval, counter, comment...
    typeof: str | None = None  # the ``typeof`` spelling, printed back as given
    loc: Loc = field(default=NOWHERE, compare=False)

    @property
    def is_map(self) -> bool:
        return self.data is not None


@dataclass(slots=True)
class ObjectDef:
    """A stateful object: ``counter``, ``quota``, ``limit``, ``ct helper``, ``ct timeout``,
    ``ct expectation``, ``synproxy``, ``secmark``; ``options`` as nft prints them."""

    kind: str
    name: str
    options: tuple[tuple[str, str], ...] = ()
    packets: int = 0
    bytes: int = 0
    loc: Loc = field(default=NOWHERE, compare=False)


@dataclass(slots=True)
class Table:
    family: Family
    name: str
    chains: dict[str, Chain] = field(default_factory=dict)
    flowtables: dict[str, FlowtableDef] = field(default_factory=dict)
    loc: Loc = field(default=NOWHERE, compare=False)
    sets: dict[str, SetDef] = field(default_factory=dict)
    objects: dict[tuple[str, str], ObjectDef] = field(default_factory=dict)
    comment: str | None = None

    def flowtable_users(self, name: str) -> list[FlowAdd]:
        """Every ``flow add @name`` in this table (the kernel's ``flowtable->use``)."""
        return [
            ref
            for chain in self.chains.values()
            for rule in chain.rules
            for ref in rule.flowtable_refs()
            if ref.flowtable == name
        ]
