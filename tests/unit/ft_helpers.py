"""Shared set-up for the flowtable tests: a two-port router, connections, frames, a fake clock.

Connections are made directly (``make_conn``) and handed to the real ``Conntrack`` only for
its timeouts and status bookkeeping.
"""

from __future__ import annotations

import ipaddress

from controller.ip import frames
from controller.ip.packet import TCP_ACK, Packet, parse
from controller.netfilter.admission import admit
from controller.netfilter.capacity import CapacityPolicy
from controller.netfilter.conntrack import Conntrack
from controller.netfilter.ct import (
    IPPROTO_TCP,
    ORIGINAL,
    REPLY,
    Conn,
    CtTuple,
    Status,
    TcpState,
)
from controller.netfilter.fastpath import FastPath
from controller.netfilter.flowtable import Flow, FlowEvent, FlowRoute, Flowtable
from controller.netfilter.offload import OffloadQueue
from ndo.memory import MemoryDriver

H1_MAC = bytes.fromhex("000000000101")
R1_MAC = bytes.fromhex("0000000001fe")
R2_MAC = bytes.fromhex("0000000002fe")
H2_MAC = bytes.fromhex("000000000202")


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


H1, H2, ROUTER_WAN = ip("10.0.1.1"), ip("10.0.2.2"), ip("10.0.2.254")
H1_6, H2_6 = ip("2001:db8:1::1"), ip("2001:db8:2::2")


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


ROUTES = (
    FlowRoute(in_port=1, out_port=2, eth_src=R2_MAC, eth_dst=H2_MAC, mtu=1500),
    FlowRoute(in_port=2, out_port=1, eth_src=R1_MAC, eth_dst=H1_MAC, mtu=1500),
)


def resolve(
    conn: Conn, direction: int, in_port: int, ft: Flowtable
) -> tuple[FlowRoute, FlowRoute]:
    return ROUTES


def make_conn(
    proto: int = IPPROTO_TCP,
    *,
    family: int = 4,
    snat: bytes | None = None,
    snat_port: int | None = None,
    dnat: bytes | None = None,
    dnat_port: int | None = None,
    sport: int = 40000,
    dport: int = 80,
    status: Status = Status.CONFIRMED | Status.ASSURED | Status.SEEN_REPLY,
    conn_id: int = 1,
) -> Conn:
    """h1 -> h2 (or its DNAT address); ``snat``/``dnat`` make the REPLY tuple translated."""
    src, dst = (H1, H2) if family == 4 else (H1_6, H2_6)
    orig = CtTuple(family, proto, src, dst, sport, dport)
    reply_src, reply_sport = dnat or dst, dnat_port or dport
    reply_dst, reply_dport = snat or src, snat_port or sport
    reply = CtTuple(family, proto, reply_src, reply_dst, reply_sport, reply_dport)
    if snat or snat_port:
        status |= Status.SRC_NAT
    if dnat or dnat_port:
        status |= Status.DST_NAT
    conn = Conn((orig, reply), status=status, timeout=1000.0 + 432000, id=conn_id)
    if proto == IPPROTO_TCP:
        conn.tcp_state = TcpState.ESTABLISHED
    return conn


def frame_for(
    conn: Conn, direction: int, *, flags: int = TCP_ACK, ttl: int = 64, payload: bytes = b"x" * 10
) -> bytearray:
    """A frame of ``direction`` as it arrives at the router (before NAT)."""
    t = conn.tuples[direction]
    if t.proto == IPPROTO_TCP:
        l4 = frames.tcp(t.src, t.dst, t.sport, t.dport, payload, flags=flags)
    else:
        l4 = frames.udp(t.src, t.dst, t.sport, t.dport, payload)
    mac_src, mac_dst = (H1_MAC, R1_MAC) if direction == ORIGINAL else (H2_MAC, R2_MAC)
    return bytearray(
        frames.ip_frame(mac_dst, mac_src, frames.ip(t.src, t.dst, t.proto, l4, ttl=ttl))
    )


def packet_for(conn: Conn, direction: int, **kw: object) -> Packet:
    return parse(frame_for(conn, direction, **kw))  # type: ignore[arg-type]


def port_of(direction: int) -> int:
    return ROUTES[direction].in_port


class Rig:
    """One flowtable with its queue, fast path, memory hardware, events and clock."""

    def __init__(
        self,
        *,
        offload: bool = True,
        counter: bool = False,
        fin_mode: str = "closing",
        capacity: int | None = None,
        policy: CapacityPolicy | None = None,
        **ft_kw: object,
    ) -> None:
        self.clock = Clock()
        self.events: list[FlowEvent] = []
        self.ct = Conntrack()
        self.queue = OffloadQueue(policy)
        self.ft = Flowtable(
            "f",
            self.ct,
            devices=(1, 2),
            offload=offload,
            counter=counter,
            fin_mode=fin_mode,
            hw=self.queue,
            on_event=self.events.append,  # type: ignore[arg-type]
            **ft_kw,  # type: ignore[arg-type]
        )
        self.fast = FastPath(self.ft)
        self.hw = MemoryDriver(capacity, clock=self.clock)
        self.hw.set_idle_callback(self.queue.on_idle)

    @property
    def now(self) -> float:
        return self.clock.now

    def tick(self, seconds: float) -> None:
        self.clock.now += seconds

    def admit(self, conn: Conn, direction: int = ORIGINAL) -> Flow | None:
        pkt = packet_for(conn, direction)
        return admit(self.ft, conn, pkt, direction, port_of(direction), resolve, self.now)

    def drain(self) -> int:
        """Run the offload queue against the memory hardware until it is empty."""
        sent = 0
        while len(self.queue):
            batch = self.queue.take_batch(100)
            self.queue.complete(self.hw.execute_now(batch))
            sent += len(batch)
        return sent

    def gc(self) -> None:
        self.ft.gc_run(self.now)

    def event_types(self) -> list[str]:
        return [e.type for e in self.events]


__all__ = ["REPLY", "Rig"]
