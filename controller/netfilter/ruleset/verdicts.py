"""What a chain decides about a packet: accept or drop, with the NAT mapping or the reject
answer the deciding rule asked for (the classic path carries them out)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NatAction:
    """The mapping a NAT rule asks for; ``addr`` None means "the egress address" (masquerade)
    or "the ingress address" (redirect); ``addr_max`` the top of an address range."""

    kind: str  # "snat" | "dnat" | "masquerade" | "redirect"
    addr: bytes | None = None
    port_min: int | None = None
    port_max: int | None = None
    addr_max: bytes | None = None
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RejectAction:
    """What ``reject`` sends back: ``icmp``/``icmpv6`` with a code of that family, or a TCP
    reset (``tcp reset``)."""

    kind: str
    code: int


@dataclass(frozen=True, slots=True)
class Verdict:
    accept: bool
    nat: NatAction | None = None
    reject: RejectAction | None = None


ACCEPT = Verdict(True)


DROP = Verdict(False)
