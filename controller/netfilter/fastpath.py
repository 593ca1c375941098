"""The software fast path (``nf_flow_table_ip.c``): forward hits of the software flowtable.

The controller runs it on every frame the hardware punted before anything else, as the kernel
runs the flowtable's ingress hook. Every reason to fall back to the classic path is a named,
counted check in the kernel's order (§3.1); a hit is rewritten in the kernel's order (§3.2):
SNAT port then address, DNAT port then address, TTL - 1, then the L2 header: the cached one for
DIRECT xmit, or, for NEIGH xmit, the next hop's current MAC from the neighbour cache, the frame
waiting there while the neighbour resolves (``nf_flow_queue_xmit`` / ``neigh_xmit``; the newest
trees write ``neigh->ha`` of whatever entry ``ip_neigh_gw4`` returns, here an incomplete entry
queues the frame as ``neigh_xmit`` does, instead of sending it to a zero address).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from controller.ip import mangle
from controller.ip.packet import ETH_HLEN, IPV6_HLEN, TCP_FIN, TCP_RST, TCP_SYN, Packet
from controller.netfilter.ct import IPPROTO_GRE, IPPROTO_TCP, IPPROTO_UDP
from controller.netfilter.flowtable import (
    CLOSING,
    DNAT,
    SNAT,
    Flow,
    Flowtable,
    make_key,
    nat_targets,
    push_encap,
)
from inet import encap

FORWARD, CLASSIC, DROP = "forward", "classic", "drop"
_FIN_RST = TCP_FIN | TCP_RST

Send = tuple[int, bytes]
NeighXmit = Callable[[bytes, int, bytearray, float], list[Send]]
"""(next hop, egress port, frame, now) -> frames to send (``ClassicPath.neigh_xmit``)."""


@dataclass(frozen=True, slots=True)
class FastPathResult:
    """``verdict`` FORWARD: ``frame`` (rewritten) goes out of ``port``, sent as ``sends`` says
    (NEIGH xmit: what the neighbour layer sends now, maybe nothing while it resolves; None for
    DIRECT xmit: the frame itself); CLASSIC: take the classic path (``reason`` says why, frame
    untouched); DROP: counted drop."""

    verdict: str
    reason: str = ""
    frame: bytearray | None = None
    port: int = 0
    flow: Flow | None = None
    direction: int = 0
    sends: list[Send] | None = None


_CLASSIC = {
    reason: FastPathResult(CLASSIC, reason)
    for reason in (
        "not_flowtable_device",
        "non_ip",
        "fragment",
        "ip_options",
        "ipv6_ext_header",
        "not_tcp_udp",
        "ttl",
        "gre_version",
        "miss",
        "mtu",
        "tcp_fin_rst",
        "tcp_syn_closing",
    )
}


def _gre_v0(pkt: Packet) -> bool:
    """GRE version 0 with its header in the frame (the kernel's ``nf_flow_tuple_ip`` check)."""
    l4 = pkt.l4 if pkt.l4 >= 0 else pkt.l3 + IPV6_HLEN  # IPv6: parsed as an "extension"
    return len(pkt.frame) >= l4 + 4 and pkt.frame[l4 + 1] & 0x07 == 0


class FastPath:
    """The flowtable's ingress hook on its devices."""

    def __init__(self, flowtable: Flowtable, neigh_xmit: NeighXmit | None = None) -> None:
        self.flowtable = flowtable
        self.neigh_xmit = neigh_xmit  # needed by flows with NEIGH xmit
        self.counters: Counter[str] = Counter()

    def _classic(self, reason: str) -> FastPathResult:
        self.counters[f"classic_{reason}"] += 1
        return _CLASSIC[reason]

    def forward(self, pkt: Packet, in_port: int, now: float) -> FastPathResult:
        """Forward ``pkt`` (its frame is rewritten in place) or say why not."""
        ft = self.flowtable
        # nft_register_flowtable_net_hooks hooks only the listed devices (none: no hook at all)
        if in_port not in ft.devices:
            return self._classic("not_flowtable_device")
        family = pkt.family
        if family == 4:
            if pkt.fragment:
                return self._classic("fragment")
            if pkt.options:
                return self._classic("ip_options")
        elif family == 6:
            if pkt.ext_header and pkt.proto != IPPROTO_GRE:
                return self._classic("ipv6_ext_header")
        else:
            return self._classic("non_ip")
        proto = pkt.proto
        if proto != IPPROTO_TCP and proto != IPPROTO_UDP and proto != IPPROTO_GRE:
            return self._classic("not_tcp_udp")
        if pkt.ttl <= 1:
            return self._classic("ttl")
        if proto == IPPROTO_GRE and not _gre_v0(pkt):
            return self._classic("gre_version")
        key = make_key(family, proto, pkt.src, pkt.dst, pkt.sport, pkt.dport, in_port, pkt.encap)
        hit = ft.lookup(key)
        if hit is None:
            return self._classic("miss")
        flow, direction = hit
        route = flow.routes[direction]
        if pkt.ip_len > route.mtu:
            return self._classic("mtu")
        if proto == IPPROTO_TCP:
            flags = pkt.tcp_flags
            if ft.fin_mode == "teardown":
                if flags & _FIN_RST:
                    ft.teardown(flow, now, "tcp_fin_rst")
                    return self._classic("tcp_fin_rst")
            elif flow.flags & CLOSING and flags & TCP_SYN:
                ft.teardown(flow, now, "tcp_syn_closing")
                return self._classic("tcp_syn_closing")
            elif flags & _FIN_RST:
                ft.set_closing(flow)
        length = pkt.ip_len
        flow.sw_packets += 1  # before the refresh: a capacity threshold counts this packet
        flow.sw_bytes += length
        ft.refresh(flow, now)
        try:
            frame = self._rewrite(pkt, flow, direction)
        except ValueError as exc:  # a frame the parser accepted but cannot be rewritten
            self.counters["drop_rewrite_error"] += 1
            return FastPathResult(DROP, f"rewrite_error: {exc}", flow=flow, direction=direction)
        if ft.counter:
            conn = flow.conn
            conn.packets[direction] += 1
            conn.bytes[direction] += length
        self.counters["forwarded"] += 1
        sends = None
        if not route.direct:
            assert self.neigh_xmit is not None, "a NEIGH xmit flow needs the neighbour layer"
            sends = self.neigh_xmit(route.next_hop, route.out_port, frame, now)
        return FastPathResult(FORWARD, "", frame, route.out_port, flow, direction, sends)

    @staticmethod
    def _rewrite(pkt: Packet, flow: Flow, direction: int) -> bytearray:
        """NAT (SNAT port, SNAT address, DNAT port, DNAT address), TTL, the encapsulations
        (``nf_flow_encap_pop``; DIRECT xmit then pushes the other direction's, NEIGH xmit leaves
        it to the egress device), cached L2 header."""
        if flow.flags & (SNAT | DNAT):
            src, dst, sport, dport = nat_targets(flow, direction)
            if sport is not None:
                mangle.set_src_port(pkt, sport)
            if src is not None:
                mangle.set_src_addr(pkt, src)
            if dport is not None:
                mangle.set_dst_port(pkt, dport)
            if dst is not None:
                mangle.set_dst_addr(pkt, dst)
        mangle.decrement_ttl(pkt)
        route = flow.routes[direction]
        push = push_encap(flow, direction)
        if pkt.encap or push:
            head = encap.header(push, pkt.ethertype, pkt.ip_len)
            pkt.frame[ETH_HLEN - 2 : pkt.l3] = head
            shift = ETH_HLEN - 2 + len(head) - pkt.l3
            pkt.l3 += shift
            pkt.l4 += shift
            pkt.encap = push
        if route.direct:
            mangle.set_macs(pkt, route.eth_src, route.eth_dst)
        return pkt.frame
