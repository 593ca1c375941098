"""Driver API: what the controller asks of flow-offload hardware, and what it gets back.

Mirrors ``flow_cls_offload`` (include/net/flow_offload.h): a command (REPLACE, DESTROY, STATS),
a cookie that names one flow *direction* for the flow's whole life, and for REPLACE a rule made
of a match and actions. Drivers never see controller objects, only these values.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from inet.encap import Encap as Encap  # re-exported: part of the driver API
from inet.encap import Encaps

Cookie = int
"""Stable per flow direction (the kernel uses the address of ``tuplehash[dir].tuple``)."""


class Command(enum.Enum):
    REPLACE = "replace"
    DESTROY = "destroy"
    STATS = "stats"


class Refusal(enum.Enum):
    """Why a driver did not carry out a command. The flow then stays in software."""

    NO_SPACE = "no_space"  # table full (BMv2 says UNKNOWN, the spec RESOURCE_EXHAUSTED)
    UNSUPPORTED = "unsupported"  # the rule needs something the target cannot do
    UNKNOWN_COOKIE = "unknown_cookie"  # STATS/DESTROY of a cookie the driver does not hold
    UNAVAILABLE = "unavailable"  # the target is not reachable right now
    ERROR = "error"  # anything else; the message says what


@dataclass(frozen=True, slots=True)
class FlowMatch:
    """Exact match of one direction, as received (before NAT): the kernel's rule match keys."""

    ingress_port: int
    family: int  # 4 or 6
    src: bytes  # 4 or 16 bytes
    dst: bytes
    proto: int  # 6 (TCP) or 17 (UDP)
    sport: int
    dport: int
    encap: Encaps = ()  # the tuple's encap[]: tags / PPPoE session as received, outermost first


@dataclass(frozen=True, slots=True)
class FlowActions:
    """Rewrite and forward. ``None`` NAT fields mean "leave as is"."""

    egress_port: int
    eth_src: bytes
    eth_dst: bytes
    mtu: int
    nat_src: bytes | None = None
    nat_dst: bytes | None = None
    nat_sport: int | None = None
    nat_dport: int | None = None
    decrement_ttl: bool = True
    # Popping ``match.encap`` is implied; this is what the frame leaves with, outermost first:
    # the other direction's encap (nf_flow_rule_route_common: VLAN_POP, then PPPOE/VLAN_PUSH).
    push: Encaps = ()


@dataclass(frozen=True, slots=True)
class FlowRule:
    match: FlowMatch
    actions: FlowActions


@dataclass(frozen=True, slots=True)
class FlowCommand:
    command: Command
    cookie: Cookie
    rule: FlowRule | None = None  # REPLACE always; DESTROY/STATS carry it when known


@dataclass(frozen=True, slots=True)
class FlowStats:
    """Counts since the previous STATS of the same cookie; ``lastused`` on the caller's clock."""

    packets: int = 0
    bytes: int = 0
    lastused: float | None = None


@dataclass(frozen=True, slots=True)
class FlowResult:
    cookie: Cookie
    command: Command
    refusal: Refusal | None = None
    message: str = ""
    stats: FlowStats | None = None

    @property
    def ok(self) -> bool:
        return self.refusal is None


IdleCallback = Callable[[Sequence[Cookie]], None]
"""Called by a driver when the hardware reports flows idle (a hint, never the only signal)."""


class FlowDriver(abc.ABC):
    """A target that can hold offloaded flows. Drivers batch: one call carries many commands."""

    #: total number of flow directions the target can hold, if known
    capacity: int | None = None

    @abc.abstractmethod
    async def execute(self, batch: Sequence[FlowCommand]) -> list[FlowResult]:
        """Carry out ``batch``; one result per command, in order. Never raises for a refusal."""

    def set_idle_callback(self, callback: IdleCallback | None) -> None:  # noqa: B027
        """Drivers that learn of idle flows from the target report them here."""

    async def close(self) -> None:  # noqa: B027
        """Release the target; offloaded flows stay installed."""


class PuntReason(enum.IntEnum):
    """Why the data plane sent a frame to the controller (packet_in.reason in flowtable.p4)."""

    NONE = 0
    MISS = 1
    TCP_FIN_RST = 2
    TTL = 3
    IPV4_FRAG_OR_OPTIONS = 4
    IPV6_EXT_HEADER = 5
    MTU = 6
    NON_IP = 7
    NOT_TCP_UDP = 8
    PPPOE_DISCOVERY = 9  # EtherType 0x8863
    PPP_NOT_IP = 10  # a PPPoE session frame with LCP, IPCP, ...
    ENCAP_UNSUPPORTED = 11  # more than two encapsulations, or an inner 802.1ad tag


@dataclass(frozen=True, slots=True)
class PacketIn:
    frame: bytes
    ingress_port: int
    reason: PuntReason | int
