"""The classic forwarding path: what the kernel does with a routed packet the flowtable missed.

One entry point, :meth:`ClassicPath.process` (parsed packet, ingress port, now) → frames to send
per port and a verdict. The order is the kernel's (``ip_rcv`` → ``ip_forward`` →
``ip_output``), which differs from a naive list in one place: the TTL and MTU checks of
``ip_forward`` run *before* the forward hook, so a packet that dies there never reaches the
forward chain and its new connection is never confirmed::

    ARP / NDP            → neighbour cache answers (input)
    conntrack            (+ RELATED for ICMP errors; bad L4 checksum = INVALID)
    PREROUTING           filter + nat chains; DNAT bound on new conns; rewrite of the dst half
    routing decision     local → INPUT (echo reply; other local traffic: counted drop)
                         no route → ICMP net unreachable
    ip_forward checks    TTL ≤ 1 → time exceeded; oversize → frag needed (DF) / packet too big
                         (IPv6); oversize IPv4 without DF is fragmented at the output
                         (``ip_do_fragment``), except with IP options: a counted drop
    FORWARD              policy; ``flow add @ft`` → ``controller.netfilter.admission``
    POSTROUTING          SNAT/masquerade (or the null binding) on new conns; src half rewrite
    confirm              the conntrack entry enters the table (NEW event)
    TTL - 1, neighbour   MACs from the neighbour cache, or queued while it resolves

Every packet that is not sent on is counted in :attr:`ClassicPath.drops` by reason. Events
(conntrack, flowtable) are not returned here: they flow through the sinks the owner gave to
conntrack and the flowtables (``controller.router`` collects them).
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.config import RouterConfig
from controller.ip import frames, icmp, mangle
from controller.ip.neighbors import NeighborOutput, NeighborTable
from controller.ip.packet import (
    ETH_P_ARP,
    IP_MF,
    IP_OFFSET,
    NDISC_NEIGHBOUR_ADVERTISEMENT,
    NDISC_NEIGHBOUR_SOLICITATION,
    Malformed,
    Packet,
    l4_checksum_ok,
    parse,
)
from controller.ip.routing import NextHop, RoutingTable
from controller.netfilter.admission import admit
from controller.netfilter.conntrack import Conntrack, CtVerdict
from controller.netfilter.ct import IPPROTO_ICMPV6, ORIGINAL, Conn, CtInfo, Status
from controller.netfilter.flowtable import FlowRoute, Flowtable
from controller.netfilter.nat import Manip, Nat, mangle_postrouting, mangle_prerouting, translate
from controller.netfilter.ruleset import (
    Evaluator,
    FlowtableDef,
    Hook,
    NatAction,
    RuleContext,
    Ruleset,
    Verdict,
)
from inet.checksum import checksum
from inet.encap import Encaps

FlowtableKey = tuple[str, str, str]  # (family, table, name) as in the ruleset
Send = tuple[int, bytes]

FORWARDED, TO_ROUTER, DROPPED = "classic", "to_router", "drop"
_H = struct.Struct("!H")
_NAT_MASK = int(Status.NAT_MASK)  # a plain int: IntFlag's & builds a member per call
_NDP = (NDISC_NEIGHBOUR_SOLICITATION, NDISC_NEIGHBOUR_ADVERTISEMENT)


def flowtable_key(fd: FlowtableDef) -> FlowtableKey:
    return (str(fd.family), fd.table, fd.name)


@dataclass(slots=True)
class ClassicResult:
    """``path``: ``classic`` (forwarded, or queued for its neighbour), ``to_router`` (the router
    consumed it: ARP, NDP, echo), ``drop`` (``reason`` says why; ICMP errors may be in
    ``sends``)."""

    path: str
    sends: list[Send] = field(default_factory=list)
    reason: str = ""


@dataclass(slots=True)
class _Ctx(RuleContext):
    """What rules see plus what ``flow add`` needs."""

    in_port: int = 0


class ClassicPath:
    """The slow path of one router; the owner replaces :attr:`evaluator` on ruleset changes and
    keeps :attr:`flowtables` (what ``flow add @name`` admits into) up to date."""

    def __init__(
        self,
        config: RouterConfig,
        *,
        routing: RoutingTable,
        neighbors: NeighborTable,
        conntrack: Conntrack,
        nat: Nat,
        flowtables: Mapping[FlowtableKey, Flowtable] | None = None,
        icmp_limiter: icmp.RateLimiter | None = None,
    ) -> None:
        self.ports = {p.id: p for p in config.devices}
        self._by_name = {p.name: p for p in config.devices}
        self.routing = routing
        self.neighbors = neighbors
        self.conntrack = conntrack
        self.nat = nat
        self.flowtables: Mapping[FlowtableKey, Flowtable] = (
            flowtables if flowtables is not None else {}
        )
        self.icmp_limiter = icmp_limiter or icmp.RateLimiter()
        self.down: set[int] = set()  # ports administratively down (no routes through them)
        self.evaluator = self.make_evaluator(Ruleset())
        self.drops: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()

    def make_evaluator(self, ruleset: Ruleset) -> Evaluator:
        """A compiled ruleset whose ``flow add`` statements admit into :attr:`flowtables`."""
        return Evaluator(ruleset, flow_add=self._flow_add)

    # -- entry point -----------------------------------------------------------------------------

    def process(self, pkt: Packet, in_port: int, now: float) -> ClassicResult:
        """Run one packet through the classic path; the frame may be rewritten in place."""
        self.counters["packets"] += 1
        port = self.ports.get(in_port)
        if port is None or in_port in self.down:
            return self._drop("unknown_or_down_port")
        if pkt.eth_dst != port.mac and not pkt.eth_dst[0] & 1:
            return self._drop("otherhost")  # PACKET_OTHERHOST: ip_rcv drops it
        if pkt.ethertype == ETH_P_ARP:
            return self._neighbor_input(self.neighbors.handle_arp(pkt, in_port, now), "arp")
        if pkt.family == 0:
            return self._drop("non_ip")
        if pkt.family == 6 and pkt.proto == IPPROTO_ICMPV6 and pkt.icmp_type in _NDP:
            if not l4_checksum_ok(pkt):
                return self._drop("ndp_bad_checksum")
            return self._neighbor_input(self.neighbors.handle_ndp(pkt, in_port, now), "ndp")
        original = bytes(pkt.frame)  # what ICMP errors quote (before NAT rewrites)
        ctx = _Ctx(
            pkt.family,
            pkt.proto,
            pkt.src,
            pkt.dst,
            pkt.sport,
            pkt.dport,
            port.name,
            None,
            CtInfo.INVALID,  # raw chains run before conntrack: no entry yet
            False,
            pkt.ip_len,
            pkt=pkt,
            now=now,
            in_port=in_port,
        )
        verdict = self.evaluator.run(Hook.PREROUTING, pkt.family, ctx, before_conntrack=True)
        if not verdict.accept:
            return self._rejected(verdict, original, in_port, now, "ruleset_prerouting")
        if ctx.notrack:  # nft 'notrack' in a raw chain: conntrack leaves the packet alone
            tracked: tuple[Conn | None, int, CtInfo] | None = (None, ORIGINAL, CtInfo.UNTRACKED)
            self.counters["notrack"] += 1
        else:
            tracked = self._track(pkt, now)
        if tracked is None:
            return self._drop("conntrack_full")
        conn, direction, ctinfo = tracked
        ctx.conn, ctx.direction, ctx.ct_state = conn, direction, ctinfo
        ctx.ct_new = conn is not None and not conn.confirmed
        verdict = self.evaluator.run(Hook.PREROUTING, pkt.family, ctx, before_conntrack=False)
        if not verdict.accept:
            return self._rejected(verdict, original, in_port, now, "ruleset_prerouting")
        if conn is not None:
            if verdict.nat is not None and ctx.ct_new and not self.nat.apply(
                conn, verdict.nat, egress_addr=self.routing.port_address(in_port, pkt.family,
                                                                         pkt.src)
            ):
                return self._drop("nat_failed")
            if int(conn.status) & _NAT_MASK:
                mangle_prerouting(pkt, conn, direction)
                ctx.src, ctx.dst, ctx.sport, ctx.dport = pkt.src, pkt.dst, pkt.sport, pkt.dport
        if self._is_local(pkt.dst):
            return self._input(pkt, ctx, now)
        if _is_multicast(pkt.dst):
            return self._drop("multicast")
        hop = self._route(pkt.dst)
        if hop is None:
            sends = self._icmp_error(original, in_port, now, "net_unreachable")
            return self._drop("no_route", sends)
        out = self.ports[hop.port]
        if pkt.ttl <= 1:
            return self._drop("ttl_exceeded", self._icmp_error(original, in_port, now, "ttl"))
        if pkt.ip_len > out.mtu:
            if pkt.family == 6 or pkt.dont_fragment:
                sends = self._icmp_error(original, in_port, now, "mtu", out.mtu)
                return self._drop("frag_needed" if pkt.family == 4 else "packet_too_big", sends)
            if pkt.options:
                return self._drop("fragment_with_options")
        ctx.oifname = out.name
        verdict = self.evaluator.run(Hook.FORWARD, pkt.family, ctx)
        if not verdict.accept:
            return self._rejected(verdict, original, in_port, now, "ruleset_forward")
        verdict = self.evaluator.run(Hook.POSTROUTING, pkt.family, ctx)
        if not verdict.accept:
            return self._drop("ruleset_postrouting")
        if conn is not None:
            if ctx.ct_new and not self._bind_source(conn, verdict.nat, hop):
                return self._drop("nat_failed")
            if int(conn.status) & _NAT_MASK:
                mangle_postrouting(pkt, conn, direction)
            if not conn.confirmed and not self.conntrack.confirm(conn, now):
                return self._drop("conntrack_insert_failed")
        mangle.decrement_ttl(pkt)
        datagram = bytes(pkt.frame[pkt.l3 : pkt.end])  # no VLAN tag, no Ethernet padding
        if len(datagram) > out.mtu:
            self.counters["fragmented"] += 1
            sends = []
            for piece in fragment_ipv4(datagram, out.mtu):
                sends += self._to_neighbor(hop, piece, now)
        else:
            sends = self._to_neighbor(hop, datagram, now)
        self.counters["forwarded"] += 1
        return ClassicResult(FORWARDED, sends)

    # -- steps ------------------------------------------------------------------------------------

    def _track(self, pkt: Packet, now: float) -> tuple[Conn | None, int, CtInfo] | None:
        """Conntrack for the packet: (conn or None, direction, ctinfo); None = table full."""
        if not l4_checksum_ok(pkt):  # nf_conntrack_checksum: the packet goes on, untracked
            self.counters["ct_bad_checksum"] += 1
            return None, ORIGINAL, CtInfo.INVALID
        tracked = self.conntrack.track_packet(pkt, now)
        if tracked.verdict is CtVerdict.DROP:
            return None
        return tracked.conn, tracked.direction, tracked.ctinfo

    def _input(self, pkt: Packet, ctx: _Ctx, now: float) -> ClassicResult:
        """Traffic for the router itself: the input chain, then echo requests are answered."""
        verdict = self.evaluator.run(Hook.INPUT, pkt.family, ctx)
        if not verdict.accept:
            return self._rejected(verdict, bytes(pkt.frame), ctx.in_port, now, "ruleset_input")
        conn = ctx.conn
        if conn is not None and not conn.confirmed and not self.conntrack.confirm(conn, now):
            return self._drop("conntrack_insert_failed")
        reply = icmp.echo_reply(pkt)
        if reply is None:
            return self._drop("local_unhandled")
        self.counters["echo_replies"] += 1
        return ClassicResult(TO_ROUTER, self._send_local(reply, now))

    def _bind_source(self, conn: Conn, action: NatAction | None, hop: NextHop) -> bool:
        """POSTROUTING NAT of a new connection: the rule's SNAT/masquerade, else the null binding
        that keeps every REPLY tuple unique (``nf_nat_alloc_null_binding``)."""
        if action is not None and action.kind != "dnat":
            return self.nat.apply(conn, action, egress_addr=hop.src)
        return self.nat.null_binding(conn, Manip.SRC)

    def _flow_add(self, fd: FlowtableDef, ctx: _Ctx) -> None:
        """``flow add @ft`` in the forward chain: offer the connection to the flowtable."""
        ft = self.flowtables.get(flowtable_key(fd))
        if ft is None:
            self.counters["flow_add_unknown_flowtable"] += 1
            return
        admit(ft, ctx.conn, ctx.pkt, ctx.direction, ctx.in_port, self.resolve_routes, ctx.now)

    def resolve_routes(
        self, conn: Conn, direction: int, in_port: int, ft: Flowtable
    ) -> tuple[FlowRoute, FlowRoute] | None:
        """Both directions' ingress, egress, xmit and MTU (``nft_flow_route``).

        By default (``nft_default_forward_path``) the other direction comes in on the device
        this one leaves by, and each direction's xmit is NEIGH (next hop resolved per packet,
        through the route's device: a VLAN or PPPoE device adds its own header). Then, per
        direction, ``nft_dev_forward_path``: the path below the egress device is walked down to
        its switch port (``dev_fill_forward_path``, which needs a valid neighbour on an
        Ethernet device; a PPPoE device gives its peer's MAC), collecting the encapsulations;
        only if that real port is one of the flowtable's devices (``nft_flowtable_find_dev``)
        does the other direction's ingress become (real port, encapsulations), and with
        ``flags offload`` this direction's xmit DIRECT out of the real port with the MACs
        cached. So a flowtable listing only ``eth0.10`` keeps both directions on the VLAN
        device: its hook sees them untagged there, as in the kernel, and the switch, which has
        no such port, cannot hold them. None when either destination has no route.
        """
        other = 1 - direction
        this_hop = self._route(translate(conn, direction).dst)
        other_hop = self._route(translate(conn, other).dst)
        if this_hop is None or other_hop is None:
            return None
        hops = {direction: this_hop, other: other_hop}
        ingress = {direction: in_port, other: this_hop.port}  # nft_default_forward_path
        paths = {direction: self._forward_path(this_hop, ft),
                 other: self._forward_path(other_hop, ft)}
        routes = []
        for d in (ORIGINAL, 1):
            hop, path, back = hops[d], paths[d], paths[1 - d]
            out = self.ports[hop.port]
            in_dev, in_encap = (back[0], back[1]) if back is not None else (ingress[d], ())
            if path is not None and ft.offload:  # DIRECT out of the real port, MACs cached
                routes.append(FlowRoute(in_dev, path[0], out.mac, path[2], out.mtu, in_encap,
                                        hop.next_hop, direct=True))
            else:
                routes.append(FlowRoute(in_dev, hop.port, out.mac, b"", out.mtu, in_encap,
                                        hop.next_hop, direct=False))
        return routes[ORIGINAL], routes[1]

    def _forward_path(self, hop: NextHop, ft: Flowtable) -> tuple[int, Encaps, bytes] | None:
        """(real port, encapsulations outermost first, next hop MAC) below ``hop``'s device
        when the walk succeeds and the flowtable lists the real port, else None."""
        mac = self.neighbors.lookup(hop.next_hop, hop.port)
        if mac is None:
            return None
        real, encaps = self.lower_path(hop.port)
        if real not in ft.devices:
            return None
        return real, encaps, mac

    def lower_path(self, dev: int) -> tuple[int, Encaps]:
        """The switch port under ``dev`` and the encapsulations its frames carry there,
        outermost first (``dev_fill_forward_path`` through ``vlan_dev_fill_forward_path`` and
        ``pppoe_fill_forward_path``)."""
        inner_first = []
        port = self.ports[dev]
        while port.link is not None and port.encap is not None:
            inner_first.append(port.encap)
            port = self._by_name[port.link]
        return port.id, tuple(reversed(inner_first))

    # -- output ---------------------------------------------------------------------------------

    def _route(self, dst: bytes) -> NextHop | None:
        hop = self.routing.lookup(dst)
        if hop is None or hop.port in self.down or hop.port not in self.ports:
            return None
        return hop

    def _is_local(self, dst: bytes) -> bool:
        return (
            self.routing.is_local(dst)
            or dst == b"\xff\xff\xff\xff"
            or self.routing.is_directed_broadcast(dst)
        )

    def _to_neighbor(self, hop: NextHop, datagram: bytes, now: float) -> list[Send]:
        frame = bytearray(frames.ip_frame(bytes(6), bytes(6), datagram))
        return self.neigh_xmit(hop.next_hop, hop.port, frame, now)

    def neigh_xmit(self, next_hop: bytes, port: int, frame: bytearray, now: float) -> list[Send]:
        """``neigh_xmit``: a routed frame to ``next_hop`` out of ``port`` with the MACs of the
        neighbour cache, or queued while the neighbour resolves (host unreachable if it fails).
        Also the software fast path's NEIGH xmit."""
        ready = self.neighbors.output(next_hop, port, frame, now)
        if ready is not None:
            return [(port, ready)]
        return self._neighbor_output(self.neighbors.resolve(next_hop, port, frame, now), now)

    def _send_local(self, datagram: bytes, now: float) -> list[Send]:
        """Route a datagram the router originates (echo reply, ICMP error)."""
        hop = self._route(bytes(datagram[16:20] if datagram[0] >> 4 == 4 else datagram[24:40]))
        if hop is None:
            self.drops["local_out_no_route"] += 1
            return []
        return self._to_neighbor(hop, datagram, now)

    def _neighbor_output(self, out: NeighborOutput, now: float) -> list[Send]:
        """Frames to send, plus host unreachable for packets whose next hop did not resolve."""
        sends: list[Send] = [(tx.port, tx.frame) for tx in out.send]
        for tx in out.unreachable:
            sends += self._icmp_error(tx.frame, None, now, "host_unreachable")
        return sends

    def neighbor_timers(self, now: float) -> list[Send]:
        """Run the neighbour cache's timers (ARP/NS retries; failures answer host unreachable)."""
        return self._neighbor_output(self.neighbors.poll(now), now)

    def _neighbor_input(self, out: NeighborOutput, what: str) -> ClassicResult:
        self.counters[what] += 1
        return ClassicResult(TO_ROUTER, [(tx.port, tx.frame) for tx in out.send])

    def _icmp_error(
        self, frame: bytes, in_port: int | None, now: float, kind: str, mtu: int = 0
    ) -> list[Send]:
        """An ICMP error about ``frame`` (as received), sent from the router's address on the
        port facing the sender, rate-limited like the kernel's."""
        try:
            pkt = parse(frame)
        except Malformed:
            return []
        src = self._icmp_source(pkt, in_port)
        if src is None:
            return []
        if kind == "ttl":
            datagram = icmp.time_exceeded(pkt, src)
        elif kind == "mtu":
            datagram = icmp.packet_too_big(pkt, src, mtu)
        elif kind == "net_unreachable":
            datagram = icmp.dest_unreachable(pkt, src, icmp.Unreachable.NET)
        else:
            datagram = icmp.dest_unreachable(pkt, src, icmp.Unreachable.HOST)
        if datagram is None or not self.icmp_limiter.allow(datagram, now):
            return []
        self.counters[f"icmp_{kind}"] += 1
        return self._send_local(datagram, now)

    def _icmp_source(self, pkt: Packet, in_port: int | None) -> bytes | None:
        if in_port is not None:
            src = self.routing.port_address(in_port, pkt.family, pkt.src)
            if src is not None:
                return src
        hop = self.routing.lookup(pkt.src)
        return hop.src if hop is not None else None

    def _rejected(
        self, verdict: Verdict, frame: bytes, in_port: int, now: float, reason: str
    ) -> ClassicResult:
        """A dropped packet, answered first if the rule was ``reject`` (``nft_reject_inet_eval``:
        ``nf_send_unreach``/``nf_send_unreach6`` or ``nf_send_reset``; not rate-limited)."""
        rej = verdict.reject
        if rej is None:
            return self._drop(reason)
        try:
            pkt = parse(frame)
        except Malformed:
            return self._drop(reason)
        datagram = None
        if rej.kind == "tcp reset":
            datagram = icmp.tcp_reset(pkt)
        else:
            src = self._icmp_source(pkt, in_port)
            if src is not None:
                datagram = icmp.unreachable_code(pkt, src, rej.code)
        sends = self._send_local(datagram, now) if datagram is not None else []
        if sends:
            self.counters[f"reject_{rej.kind.replace(' ', '_')}"] += 1
        return self._drop(reason, sends)

    def _drop(self, reason: str, sends: list[Send] | None = None) -> ClassicResult:
        self.drops[reason] += 1
        return ClassicResult(DROPPED, sends or [], reason)


def _is_multicast(dst: bytes) -> bool:
    return (dst[0] & 0xF0) == 0xE0 if len(dst) == 4 else dst[0] == 0xFF


def fragment_ipv4(datagram: bytes, mtu: int) -> list[bytes]:
    """``ip_do_fragment`` for a datagram without options: pieces of at most ``mtu`` bytes whose
    payloads are multiples of 8 bytes (but the last), offsets and MF set, checksums fixed.
    A datagram that is itself a fragment keeps its offset and its MF on the last piece."""
    ihl = (datagram[0] & 0x0F) * 4
    header, payload = datagram[:ihl], datagram[ihl:]
    step = (mtu - ihl) & ~7
    frag = _H.unpack_from(header, 6)[0]
    base, more = frag & IP_OFFSET, frag & IP_MF
    pieces = []
    for start in range(0, len(payload), step):
        chunk = payload[start : start + step]
        last = start + step >= len(payload)
        head = bytearray(header)
        _H.pack_into(head, 2, ihl + len(chunk))
        _H.pack_into(head, 6, (base + start // 8) | (more if last else IP_MF))
        _H.pack_into(head, 10, 0)
        _H.pack_into(head, 10, checksum(head))
        pieces.append(bytes(head) + chunk)
    return pieces
