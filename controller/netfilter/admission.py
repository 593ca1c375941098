"""``flow add @ft``: which connections enter a flowtable (``nft_flow_offload_eval``, §2.1).

The checks run in the kernel's order and the first failure wins: the rule "breaks" (the packet
continues on the classic path) and the reason is counted in ``flowtable.counters`` as
``refused_<reason>``. Routes of both directions come from a resolver the classic path provides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from controller.netfilter.ct import IPPROTO_GRE, IPPROTO_TCP, IPPROTO_UDP, Conn, Status, TcpState
from controller.netfilter.flowtable import (
    HW_BIDIRECTIONAL,
    Flow,
    FlowRoute,
    Flowtable,
    FlowtableError,
)

TCP_FIN = 0x01
TCP_RST = 0x04

RouteResolver = Callable[[Conn, int, int, Flowtable], tuple[FlowRoute, FlowRoute] | None]
"""(conn, direction of the packet, its ingress port, flowtable) -> routes indexed by flow
direction (``nft_flow_route``: the flowtable decides DIRECT or NEIGH xmit)."""

# plain ints: IntFlag's & builds a member per call
_NEVER = int(Status.SEQ_ADJUST | Status.NAT_CLASH)
_ASSURED, _NAT_MASK, _HELPER = int(Status.ASSURED), int(Status.NAT_MASK), int(Status.HELPER)


class PacketView(Protocol):
    """What admission reads from the triggering packet (``controller.ip.packet.Packet`` fits)."""

    family: int
    options: bool
    tcp_flags: int


def refusal(
    conn: Conn | None, pkt: PacketView, *, hook: str = "forward", ipsec: bool = False
) -> str | None:
    """The first failing check of 1-5, or None (lock and routing follow in :func:`admit`)."""
    if hook != "forward":
        return "not_forward_hook"
    if ipsec:
        return "ipsec"
    if pkt.family == 4 and pkt.options:
        return "ipv4_options"
    if conn is None:
        return "untracked"
    proto = conn.proto
    status = int(conn.status)
    if proto == IPPROTO_TCP:
        if pkt.tcp_flags & (TCP_FIN | TCP_RST):
            return "tcp_fin_rst"
        if conn.tcp_state != TcpState.ESTABLISHED or not status & _ASSURED:
            return "tcp_not_established"
    elif proto == IPPROTO_GRE:
        if status & _NAT_MASK:
            return "gre_nat"
        orig = conn.tuples[0]
        if orig.sport or orig.dport:
            return "gre_keys"
    elif proto != IPPROTO_UDP:
        return "protocol"
    if conn.helper is not None or status & _HELPER:
        return "helper"
    if status & _NEVER:
        return "seq_adjust_or_nat_clash"
    if not conn.confirmed:
        return "unconfirmed"
    return None


def admit(
    flowtable: Flowtable,
    conn: Conn | None,
    pkt: PacketView,
    direction: int,
    in_port: int,
    routes: RouteResolver,
    now: float,
    *,
    hook: str = "forward",
    ipsec: bool = False,
) -> Flow | None:
    """Offer ``conn`` to ``flowtable``; return the new flow, or None with a counted reason."""
    counters = flowtable.counters
    reason = refusal(conn, pkt, hook=hook, ipsec=ipsec)
    if reason is None and flowtable.freed:
        reason = "flowtable_deleted"
    if reason is not None:
        counters[f"refused_{reason}"] += 1
        return None
    assert conn is not None  # refusal() rejects untracked packets
    if conn.status & Status.OFFLOAD:  # test_and_set_bit(IPS_OFFLOAD_BIT): one flowtable per ct
        counters["refused_already_offloaded"] += 1
        return None
    flowtable.conntrack.set_status(conn, Status.OFFLOAD)
    flow_routes = routes(conn, direction, in_port, flowtable)
    if flow_routes is None:
        return _give_up(flowtable, conn, now, "no_route")
    if conn.dying:
        return _give_up(flowtable, conn, now, "ct_dying")
    flow = flowtable.new_flow(conn, flow_routes)
    if conn.proto == IPPROTO_TCP:
        for track in conn.tcp:
            track.liberal = True
    flow.flags |= HW_BIDIRECTIONAL
    try:
        flowtable.add(flow, now)
    except FlowtableError:
        return _give_up(flowtable, conn, now, "add_failed")
    counters["admitted"] += 1
    return flow


def _give_up(flowtable: Flowtable, conn: Conn, now: float, reason: str) -> None:
    flowtable.conntrack.clear_status(conn, Status.OFFLOAD)
    flowtable.counters[f"refused_{reason}"] += 1
    return None
