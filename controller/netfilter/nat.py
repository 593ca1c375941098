"""NAT bindings on conntrack entries (sans-IO): ``nf_nat_core.c`` reduced to one address per range.

A binding rewrites an *unconfirmed* connection's REPLY tuple, exactly as ``nf_nat_setup_info``
does: destination NAT at prerouting, then source NAT (or masquerade, or the null binding that
keeps reply tuples unique) at postrouting. :func:`translate` and :func:`translate_related` say
what each packet of a NATed connection must carry; :func:`mangle_prerouting` and
:func:`mangle_postrouting` write it at the kernel's two hooks with ``controller.ip.mangle``.

Port choice follows ``get_unique_tuple`` / ``nf_nat_l4proto_unique_tuple``: keep the tuple when
it is in range and unused, otherwise search the range from a random offset (source NAT) or from
its start (destination NAT), at most 128 attempts, halving the window on each new round.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from controller.ip.mangle import (
    recompute_icmp_checksum,
    set_dst_addr,
    set_dst_port,
    set_src_addr,
    set_src_port,
)
from controller.ip.packet import Packet, parse_inner
from controller.netfilter.conntrack import Conntrack, reply_tuple
from controller.netfilter.ct import (
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    ORIGINAL,
    REPLY,
    Conn,
    CtTuple,
    Status,
)

NF_NAT_MAX_ATTEMPTS = 128

_IPPROTO_DCCP, _IPPROTO_SCTP, _IPPROTO_UDPLITE = 33, 132, 136
_PORT_PROTOS = frozenset({IPPROTO_TCP, IPPROTO_UDP, _IPPROTO_DCCP, _IPPROTO_SCTP, _IPPROTO_UDPLITE})
_ICMP_PROTOS = frozenset({IPPROTO_ICMP, IPPROTO_ICMPV6})
_MANGLED_PORTS = frozenset({IPPROTO_TCP, IPPROTO_UDP})  # the ports controller.ip.mangle rewrites


class Manip(enum.IntEnum):
    """``enum nf_nat_manip_type``: which end of the ORIGINAL direction is rewritten."""

    SRC = 0
    DST = 1


_NAT_BIT = {Manip.SRC: Status.SRC_NAT, Manip.DST: Status.DST_NAT}
_DONE_BIT = {Manip.SRC: Status.SRC_NAT_DONE, Manip.DST: Status.DST_NAT_DONE}
_DONE_INT = {manip: int(bit) for manip, bit in _DONE_BIT.items()}  # IntFlag & is slow
_CONFIRMED = int(Status.CONFIRMED)


class NatAction(Protocol):
    """What a NAT rule asks for (``controller.netfilter.ruleset`` supplies it)."""

    @property
    def kind(self) -> str: ...  # "snat" | "dnat" | "masquerade" | "redirect"

    @property
    def addr(self) -> bytes | None: ...

    @property
    def port_min(self) -> int | None: ...

    @property
    def port_max(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class NatRange:
    """``struct nf_nat_range2`` with one address: None keeps the address (no MAP_IPS);
    ``port_min`` None keeps ports unless they clash (no PROTO_SPECIFIED)."""

    addr: bytes | None = None
    port_min: int | None = None
    port_max: int | None = None
    random: bool = False  # NF_NAT_RANGE_PROTO_RANDOM_ALL: never keep the original port

    @property
    def ports(self) -> tuple[int, int] | None:
        if self.port_min is None:
            return None
        high = self.port_min if self.port_max is None else self.port_max
        return (self.port_min, high) if self.port_min <= high else (high, self.port_min)


class Rewrite(NamedTuple):
    """Addresses and ports (ICMP: identifier in ``sport``, ``dport`` 0) a packet must carry."""

    src: bytes
    sport: int
    dst: bytes
    dport: int


class RelatedRewrite(NamedTuple):
    """An ICMP error of a NATed connection: its outer addresses and the quoted datagram's."""

    outer_src: bytes
    outer_dst: bytes
    inner: Rewrite


def translate(conn: Conn, direction: int) -> Rewrite:
    """What a packet of ``direction`` carries once all NAT is applied: the inverse of the other
    direction's tuple. Destination changes belong before routing, source changes after."""
    out = reply_tuple(conn.tuples[1 - direction])
    return Rewrite(out.src, out.sport, out.dst, out.dport)


def translate_related(
    conn: Conn, direction: int, outer_src: bytes, outer_dst: bytes
) -> RelatedRewrite:
    """``nf_nat_icmp_reply_translation`` for an error travelling in ``direction``.

    The quoted datagram is made to look like the one its sender emitted (the other direction's
    tuple); the outer destination (source) is rewritten only when the connection has the NAT
    type that maps that end in this direction, e.g. the client of a port forward sees errors
    come from the public address it talked to.
    """
    other = conn.tuples[1 - direction]
    dst_bit, src_bit = (
        (Status.DST_NAT, Status.SRC_NAT)
        if direction == ORIGINAL
        else (Status.SRC_NAT, Status.DST_NAT)
    )
    return RelatedRewrite(
        other.dst if conn.status & src_bit else outer_src,
        other.src if conn.status & dst_bit else outer_dst,
        Rewrite(other.src, other.sport, other.dst, other.dport),
    )


class Nat:
    """Binds NAT ranges to connections, keeping every REPLY tuple unique in ``conntrack``."""

    def __init__(self, conntrack: Conntrack, *, rng: random.Random | None = None) -> None:
        self.conntrack = conntrack
        self.rng = rng if rng is not None else random.Random()
        self.stats: dict[str, int] = dict.fromkeys(
            ("snat", "dnat", "masquerade", "null", "remapped", "exhausted", "bad_address"), 0
        )
        # nf_nat_bysource: the latest source-NATed connection of each original source, so a
        # host keeps its outside address and port across destinations (dead ones are skipped).
        self._bysource: dict[tuple[int, int, bytes, int], Conn] = {}

    def apply(self, conn: Conn, action: NatAction, *, egress_addr: bytes | None = None) -> bool:
        """Bind a ruleset NAT action; masquerade uses ``egress_addr`` (the output address),
        redirect the address of the input interface passed the same way (``nf_nat_redirect``).

        False (counted) when the address does not fit the connection's family, masquerade has
        no address to use, or no unique tuple is left in the range; the kernel drops the packet.
        """
        kind = action.kind
        if kind == "dnat":
            manip, addr = Manip.DST, action.addr
        elif kind == "redirect":
            manip, addr = Manip.DST, egress_addr
            if addr is None:
                self.stats["bad_address"] += 1
                return False
        elif kind in ("snat", "masquerade"):
            manip = Manip.SRC
            addr = egress_addr if kind == "masquerade" and action.addr is None else action.addr
            if kind == "masquerade" and addr is None:
                self.stats["bad_address"] += 1
                return False
        else:
            raise ValueError(f"unknown NAT action {kind!r}")
        if addr is not None and len(addr) != (4 if conn.family == 4 else 16):
            self.stats["bad_address"] += 1
            return False
        ok = self.setup(conn, NatRange(addr, action.port_min, action.port_max), manip)
        if ok:
            self.stats[kind] += 1
        return ok

    def null_binding(self, conn: Conn, manip: Manip = Manip.SRC) -> bool:
        """``nf_nat_alloc_null_binding``: no NAT rule matched, but the REPLY tuple must still be
        unique, so a source port that clashes with another connection's is moved."""
        if int(conn.status) & _DONE_INT[manip]:
            return True
        current = reply_tuple(conn.tuples[REPLY])
        addr = current.src if manip is Manip.SRC else current.dst
        ok = self.setup(conn, NatRange(addr), manip)
        if ok:
            self.stats["null"] += 1
        return ok

    def setup(self, conn: Conn, rng: NatRange, manip: Manip) -> bool:
        """``nf_nat_setup_info``: pick a unique tuple in ``rng`` and alter the REPLY tuple.

        One binding per manip type (the first one wins, as in the kernel); SRC_NAT/DST_NAT are
        set only when the tuple actually changed.
        """
        status = int(conn.status)
        if status & _CONFIRMED:
            raise ValueError("NAT bindings are only made before the connection is confirmed")
        if status & _DONE_INT[manip]:
            return True
        current = reply_tuple(conn.tuples[REPLY])
        chosen = self._unique_tuple(conn, current, rng, manip)
        if chosen is None:
            self.stats["exhausted"] += 1
            return False
        if chosen != current:
            if _key(chosen, manip) != _key(current, manip):
                self.stats["remapped"] += 1
            conn.tuples = (conn.tuples[ORIGINAL], reply_tuple(chosen))
            conn.status |= _NAT_BIT[manip]
        conn.status |= _DONE_BIT[manip]
        if manip is Manip.SRC:
            self._remember_source(conn, current)
        return True

    def _remember_source(self, conn: Conn, source: CtTuple) -> None:
        bysource = self._bysource
        bysource[_source_key(source)] = conn
        if len(bysource) > 2 * len(self.conntrack) + 1024:  # forget the dead now and then
            self._bysource = {key: c for key, c in bysource.items() if not c.dying}

    def _source_mapping(self, conn: Conn, current: CtTuple, rng: NatRange) -> CtTuple | None:
        """``find_appropriate_src``: the outside address and port another live connection of
        the same source already has, if they fit ``rng``."""
        other = self._bysource.get(_source_key(current))
        if other is None or other is conn or other.dying:
            return None
        mapped = reply_tuple(other.tuples[REPLY])
        candidate = current._replace(src=mapped.src, sport=mapped.sport)
        return candidate if _in_range(candidate, rng, Manip.SRC) else None

    # -- get_unique_tuple ----------------------------------------------------------------------

    def _used(self, tup: CtTuple, conn: Conn) -> bool:
        """``nf_nat_used_tuple``: would ``tup``'s reply collide with another connection?"""
        return self.conntrack.tuple_taken(reply_tuple(tup), conn)

    def _unique_tuple(
        self, conn: Conn, current: CtTuple, rng: NatRange, manip: Manip
    ) -> CtTuple | None:
        ports = rng.ports
        if manip is Manip.SRC and not rng.random:
            if _in_range(current, rng, manip):
                if not self._used(current, conn):
                    return current  # source NAT keeps a tuple that already fits
            else:
                mapped = self._source_mapping(conn, current, rng)
                if mapped is not None and not self._used(mapped, conn):
                    return mapped
        tup = current
        if rng.addr is not None:
            tup = tup._replace(src=rng.addr) if manip is Manip.SRC else tup._replace(dst=rng.addr)
        if not rng.random:
            if ports is not None:
                if _ports_in_range(tup, manip, ports) and (
                    ports[0] == ports[1] or not self._used(tup, conn)
                ):
                    return tup
            elif not self._used(tup, conn):
                return tup
        return self._unique_l4(conn, tup, rng, manip)

    def _unique_l4(self, conn: Conn, tup: CtTuple, rng: NatRange, manip: Manip) -> CtTuple | None:
        """``nf_nat_l4proto_unique_tuple``: search the port (or ICMP id) range for a free one."""
        field = _key_field(tup, manip)
        ports = rng.ports
        if field is None:  # no ports to play with
            return None if self._used(tup, conn) else tup
        if tup.proto in _ICMP_PROTOS:
            low, size = (0, 65536) if ports is None else (ports[0], ports[1] - ports[0] + 1)
        elif ports is None:
            if manip is Manip.DST:
                return None if self._used(tup, conn) else tup  # DNAT never moves a port itself
            port = getattr(tup, field)
            if port < 512:
                low, size = 1, 511
            elif port < 1024:
                low, size = 600, 424
            else:
                low, size = 1024, 64512
        else:
            low, size = ports[0], ports[1] - ports[0] + 1
        offset = self.rng.randrange(65536) if rng.random or manip is not Manip.DST else 0
        attempts = min(size, NF_NAT_MAX_ATTEMPTS)
        while True:
            for _ in range(attempts):
                candidate = tup._replace(**{field: low + offset % size})
                if not self._used(candidate, conn):
                    return candidate
                offset += 1
            if attempts >= size or attempts < 16:
                return None
            attempts //= 2
            offset = self.rng.randrange(65536)


def _key_field(tup: CtTuple, manip: Manip) -> str | None:
    """Which tuple field a manip may move: the ICMP id (``sport`` both ways) or the port."""
    if tup.proto in _ICMP_PROTOS:
        return "sport"
    if tup.proto in _PORT_PROTOS:
        return "sport" if manip is Manip.SRC else "dport"
    return None


def _source_key(tup: CtTuple) -> tuple[int, int, bytes, int]:
    """``same_src``: protocol, source address and source port (or ICMP id)."""
    return (tup.family, tup.proto, tup.src, tup.sport)


def _key(tup: CtTuple, manip: Manip) -> int:
    field = _key_field(tup, manip)
    return 0 if field is None else getattr(tup, field)


def _ports_in_range(tup: CtTuple, manip: Manip, ports: tuple[int, int]) -> bool:
    field = _key_field(tup, manip)
    return field is None or ports[0] <= getattr(tup, field) <= ports[1]


def _in_range(tup: CtTuple, rng: NatRange, manip: Manip) -> bool:
    """``nf_in_range``: the tuple already satisfies the range (address and ports)."""
    addr = tup.src if manip is Manip.SRC else tup.dst
    if rng.addr is not None and addr != rng.addr:
        return False
    ports = rng.ports
    return ports is None or _ports_in_range(tup, manip, ports)


# -- packets: where each half of a translation is written ----------------------------------------


def mangle_prerouting(pkt: Packet, conn: Conn, direction: int) -> None:
    """Destination half before routing: DNAT of originals, un-SNAT of replies (and ICMP ids).

    An ICMP error related to ``conn`` gets its quoted datagram translated back and, where the
    connection's NAT covers it, its outer destination (``nf_nat_icmp_reply_translation``).
    """
    if pkt.is_icmp_error:
        rewrite = translate_related(conn, direction, pkt.src, pkt.dst)
        inner = parse_inner(pkt)
        _set_dst(inner, rewrite.inner)
        _set_src(inner, rewrite.inner)
        _set_icmp_id(inner, rewrite.inner.sport)
        recompute_icmp_checksum(pkt)
        if pkt.dst != rewrite.outer_dst:
            set_dst_addr(pkt, rewrite.outer_dst)
        return
    want = translate(conn, direction)
    _set_dst(pkt, want)
    if _id_moved_by_dst_manip(conn, direction):
        _set_icmp_id(pkt, want.sport)


def mangle_postrouting(pkt: Packet, conn: Conn, direction: int) -> None:
    """Source half after routing: SNAT/masquerade of originals, un-DNAT of replies."""
    if pkt.is_icmp_error:
        outer_src = translate_related(conn, direction, pkt.src, pkt.dst).outer_src
        if pkt.src != outer_src:
            set_src_addr(pkt, outer_src)
        return
    want = translate(conn, direction)
    _set_src(pkt, want)
    if not _id_moved_by_dst_manip(conn, direction):
        _set_icmp_id(pkt, want.sport)


def _id_moved_by_dst_manip(conn: Conn, direction: int) -> bool:
    """Whether an ICMP identifier change belongs to the destination half: the kernel keys ICMP
    on the id for both manips, so it moves with SNAT (originals after routing, replies before)
    or else with DNAT (originals before routing, replies after)."""
    return (direction == REPLY) == bool(conn.status & Status.SRC_NAT)


def _set_icmp_id(pkt: Packet, ident: int) -> None:
    if pkt.proto in _ICMP_PROTOS and pkt.l4 >= 0 and pkt.icmp_id != ident:
        set_src_port(pkt, ident)  # mangle writes the echo identifier for either "port"


def _set_dst(pkt: Packet, want: Rewrite) -> None:
    if pkt.dst != want.dst:
        set_dst_addr(pkt, want.dst)
    if pkt.proto in _MANGLED_PORTS and pkt.l4 >= 0 and pkt.dport != want.dport:
        set_dst_port(pkt, want.dport)


def _set_src(pkt: Packet, want: Rewrite) -> None:
    if pkt.src != want.src:
        set_src_addr(pkt, want.src)
    if pkt.proto in _MANGLED_PORTS and pkt.l4 >= 0 and pkt.sport != want.sport:
        set_src_port(pkt, want.sport)
