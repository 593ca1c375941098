"""Connection tracking: the table, its bound, and the per-protocol state machines (sans-IO).

Mirrors ``nf_conntrack_core.c`` (lookup, confirm, early drop, expiry, events) and the protocol
trackers ``nf_conntrack_proto_{tcp,udp,icmp,icmpv6,generic}.c``. The TCP transition table below
is the kernel's ``tcp_conntracks`` verbatim. There is no window check (every in-state segment
counts as in window) and no retransmission counting; when sequence numbers are supplied, RSTs
are validated against ``td_maxack`` as the kernel does. Every timer runs on the ``now`` the
caller supplies; expiry is a heap of deadlines, so a gc pass costs what expires, not the table.

A connection is created *unconfirmed* by :meth:`Conntrack.track` (NAT may still change its REPLY
tuple) and enters the table at :meth:`Conntrack.confirm`, the end of the hooks; only confirmed
connections are found by lookups, counted against ``max_entries`` and reported by events.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache
from heapq import heappop, heappush
from itertools import count
from typing import NamedTuple

from controller.ip.packet import Malformed, Packet, parse_inner
from controller.netfilter.ct import (
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    ORIGINAL,
    REPLY,
    Conn,
    CtInfo,
    CtTuple,
    Status,
    TcpState,
    TcpTrack,
)

# -- TCP: nf_conntrack_proto_tcp.c ------------------------------------------------------------

# ``enum tcp_bit_set``: which row of the table a segment selects.
TCP_SYN_SET, TCP_SYNACK_SET, TCP_FIN_SET, TCP_ACK_SET, TCP_RST_SET, TCP_NONE_SET = range(6)

_FIN, _SYN, _RST, _PSH, _ACK, _URG, _ECE, _CWR = (1 << i for i in range(8))
_U32 = 0xFFFFFFFF

# tcp_valid_flags[]: flag combinations tcp_error() lets through (PSH, ECE and CWR masked off).
_TCP_VALID_FLAGS = frozenset(
    {
        _SYN,
        _SYN | _URG,
        _SYN | _ACK,
        _RST,
        _RST | _ACK,
        _FIN | _ACK,
        _FIN | _ACK | _URG,
        _ACK,
        _ACK | _URG,
    }
)

sNO, sSS, sSR, sES, sFW, sCW, sLA, sTW, sCL, sS2 = (int(s) for s in TcpState)
sIV = 10  # TCP_CONNTRACK_MAX: invalid
sIG = 11  # TCP_CONNTRACK_IGNORE

# tcp_conntracks[dir][index][old_state], copied from the kernel (columns: sNO sSS sSR sES sFW sCW
# sLA sTW sCL sS2).
_TCP_CONNTRACKS = (
    (  # ORIGINAL
        (sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2),  # syn
        (sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR),  # synack
        (sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV),  # fin
        (sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV),  # ack
        (sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL),  # rst
        (sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV),  # none
    ),
    (  # REPLY
        (sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2),  # syn
        (sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR),  # synack
        (sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV),  # fin
        (sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG),  # ack
        (sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL),  # rst
        (sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV),  # none
    ),
)

# ct->proto.tcp.last_flags bits (include/uapi/linux/netfilter/nf_conntrack_tcp.h).
_TCP_SIMULTANEOUS_OPEN = 0x04
_EXP_CHALLENGE_ACK = 0x40


class TcpSegment(NamedTuple):
    """What the TCP tracker reads from a segment. Sequence numbers are optional: without them
    the RST checks that need them (``td_maxack``, ``last_end``) are skipped."""

    flags: int
    window: int = 0
    seq: int | None = None
    ack: int | None = None
    payload: int = 0  # data bytes after the TCP header

    @property
    def end(self) -> int:
        """``segment_seq_plus_len``: the sequence number after this segment (SYN/FIN count)."""
        seq = self.seq or 0
        return (seq + self.payload + bool(self.flags & _SYN) + bool(self.flags & _FIN)) & _U32


def _before(a: int, b: int) -> bool:
    """``before()``: ``a`` precedes ``b`` in 32-bit sequence space."""
    return (a - b) & _U32 >= 0x80000000


def tcp_index(flags: int) -> int:
    """``get_conntrack_index``: RST wins, then SYN (with or without ACK), FIN, ACK."""
    if flags & _RST:
        return TCP_RST_SET
    if flags & _SYN:
        return TCP_SYNACK_SET if flags & _ACK else TCP_SYN_SET
    if flags & _FIN:
        return TCP_FIN_SET
    if flags & _ACK:
        return TCP_ACK_SET
    return TCP_NONE_SET


# -- ICMP / ICMPv6: nf_conntrack_proto_icmp{,v6}.c ---------------------------------------------

# Request types that may open a connection, and the reply type each expects back.
_ICMP_REQUESTS = {8: 0, 13: 14, 15: 16, 17: 18}  # echo, timestamp, info, address mask
_ICMPV6_REQUESTS = {128: 129, 139: 140}  # echo, node information query
_ICMP_REPLIES = frozenset(_ICMP_REQUESTS.values())
_ICMPV6_REPLIES = frozenset(_ICMPV6_REQUESTS.values())
# noct_valid_new[]: MLD and NDP are left untracked (IP_CT_UNTRACKED).
_ICMPV6_UNTRACKED = frozenset({130, 131, 132, 133, 134, 135, 136, 143})
_ICMP_ANY_REQUEST = frozenset(_ICMP_REQUESTS) | frozenset(_ICMPV6_REQUESTS)
_ICMP_ANY_QUERY = _ICMP_ANY_REQUEST | _ICMP_REPLIES | _ICMPV6_REPLIES

_ICMP_PROTOS = (IPPROTO_ICMP, IPPROTO_ICMPV6)
_PORT_PROTOS = (IPPROTO_TCP, IPPROTO_UDP)

# Status bits as plain ints: ``int(conn.status) & _BIT`` is ten times cheaper than IntFlag's
# ``&`` on the per-packet path.
_CONFIRMED, _SEEN_REPLY, _ASSURED, _DYING, _OFFLOAD, _FIXED_TIMEOUT, _NAT_CLASH = (
    int(bit)
    for bit in (
        Status.CONFIRMED,
        Status.SEEN_REPLY,
        Status.ASSURED,
        Status.DYING,
        Status.OFFLOAD,
        Status.FIXED_TIMEOUT,
        Status.NAT_CLASH,
    )
)

NF_CT_EVICTION_RANGE = 8  # early_drop passes over at most this many offloaded candidates


@dataclass(frozen=True)
class Timeouts:
    """Default timeouts in seconds, as the kernel's ``nf_conntrack_*_timeout*`` sysctls."""

    tcp_syn_sent: float = 120
    tcp_syn_recv: float = 60
    tcp_established: float = 432000
    tcp_fin_wait: float = 120
    tcp_close_wait: float = 60
    tcp_last_ack: float = 30
    tcp_time_wait: float = 120
    tcp_close: float = 10
    tcp_syn_sent2: float = 120
    tcp_unacknowledged: float = 300
    tcp_max_retrans: float = 300
    udp: float = 30  # unreplied
    udp_stream: float = 120  # replied and still active 2 s after creation
    icmp: float = 30
    icmpv6: float = 30
    generic: float = 600

    @cached_property
    def tcp(self) -> tuple[float, ...]:
        """Per-state TCP timeouts indexed by :class:`TcpState` (NONE has none)."""
        return (
            0.0,
            self.tcp_syn_sent,
            self.tcp_syn_recv,
            self.tcp_established,
            self.tcp_fin_wait,
            self.tcp_close_wait,
            self.tcp_last_ack,
            self.tcp_time_wait,
            self.tcp_close,
            self.tcp_syn_sent2,
        )


def state_timeout(t: Timeouts, conn: Conn) -> float:
    """The protocol timeout for the connection's current state (what a packet would set)."""
    proto = conn.proto
    if proto == IPPROTO_TCP:
        timeout = t.tcp[conn.tcp_state] if conn.tcp_state else t.tcp_close
        if not int(conn.status) & _SEEN_REPLY:  # never answered: no 5-day ESTABLISHED
            timeout = min(timeout, t.tcp_unacknowledged)
        return timeout
    if proto == IPPROTO_UDP:
        return t.udp_stream if conn.status & Status.SEEN_REPLY else t.udp
    if proto == IPPROTO_ICMP:
        return t.icmp
    if proto == IPPROTO_ICMPV6:
        return t.icmpv6
    return t.generic


class CtVerdict(enum.Enum):
    """What conntrack says about a packet (the classic path decides what to do with it)."""

    ACCEPT = "accept"  # tracked (or deliberately untracked): carry on
    INVALID = "invalid"  # no connection could be associated: ``ct state invalid``
    DROP = "drop"  # the table is full: the kernel drops the packet


class Tracked(NamedTuple):
    """Result of :meth:`Conntrack.track`. ``conn`` is None when the verdict is not ACCEPT or the
    packet is untracked; an unconfirmed ``conn`` must be passed to :meth:`Conntrack.confirm`."""

    conn: Conn | None
    direction: int
    ctinfo: CtInfo
    verdict: CtVerdict


@dataclass(frozen=True, slots=True)
class CtEvent:
    """One ``conntrack -E`` line: NEW on confirm, UPDATE on a state/status change, DESTROY."""

    type: str
    conn: Conn
    now: float

    def to_dict(self) -> dict[str, object]:
        """JSON for ``p4ft monitor`` / simulate reports: the type and the entry at that time."""
        return {"type": self.type, **describe(self.conn, self.now)}

    def __str__(self) -> str:
        return f"[{self.type}] {format_conn(self.conn, self.now)}"


EventSink = Callable[[CtEvent], None]


def reply_tuple(tup: CtTuple) -> CtTuple:
    """``nf_ct_invert_tuple``. ICMP keeps its identifier in ``sport`` in both directions."""
    if tup.proto in _ICMP_PROTOS:
        return CtTuple(tup.family, tup.proto, tup.dst, tup.src, tup.sport, tup.dport)
    return CtTuple(tup.family, tup.proto, tup.dst, tup.src, tup.dport, tup.sport)


def packet_tuple(pkt: Packet) -> CtTuple:
    """The tuple a parsed packet carries (``nf_ct_get_tuple``): ports, or the ICMP identifier."""
    if pkt.proto in _ICMP_PROTOS:
        return CtTuple(pkt.family, pkt.proto, pkt.src, pkt.dst, pkt.icmp_id, 0)
    if pkt.proto in _PORT_PROTOS:
        return CtTuple(pkt.family, pkt.proto, pkt.src, pkt.dst, pkt.sport, pkt.dport)
    return CtTuple(pkt.family, pkt.proto, pkt.src, pkt.dst, 0, 0)


def inner_tuple(pkt: Packet) -> CtTuple | None:
    """The tuple of the datagram an ICMP/ICMPv6 error quotes, for :meth:`Conntrack.related`.

    None when the quote is cut short before its 8 L4 bytes, sits behind an IPv6 extension
    header, or is ICMP other than a query or its answer (an error about an error relates to
    nothing).
    """
    try:
        inner = parse_inner(pkt)
    except Malformed:
        return None
    if inner.l4 < 0:
        return None
    if inner.proto in _ICMP_PROTOS and inner.icmp_type not in _ICMP_ANY_QUERY:
        return None
    return packet_tuple(inner)


class _L4(enum.Enum):
    """Outcome of a protocol tracker (``nf_conntrack_handle_packet``'s return value)."""

    ACCEPT = 1  # state updated, timeout refreshed, packet counted
    IGNORE = 2  # accepted, but conntrack learnt nothing (TCP sIG)
    INVALID = 3
    REPEAT = 4  # TCP reopen: the old connection was killed, look up again


_WINDOW = struct.Struct("!H")
_TCP_SEQ = struct.Struct("!IIB")  # sequence, acknowledgement, data offset byte
_UNTRACKED = Tracked(None, ORIGINAL, CtInfo.UNTRACKED, CtVerdict.ACCEPT)


class Conntrack:
    """The conntrack table: both tuples of every confirmed connection, a bound, expiry, events."""

    def __init__(
        self,
        *,
        max_entries: int = 65536,
        timeouts: Timeouts = Timeouts(),
        on_event: EventSink | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be positive, got {max_entries}")
        self.max_entries = max_entries
        self.timeouts = timeouts
        self.on_event = on_event
        self._table: dict[CtTuple, tuple[Conn, int]] = {}
        self._conns: dict[int, Conn] = {}  # confirmed, in insertion order
        # Early-drop candidates, oldest first: confirmed entries not known to be ASSURED (the
        # bit is checked lazily, so entries assured since are skipped and forgotten there).
        self._unassured: dict[int, Conn] = {}
        # gc timer: a heap of (deadline, id) with one live entry per connection, the one its
        # id maps to in _scheduled. Extensions are found when that entry comes due; a deadline
        # brought forward (refresh) pushes a new entry and the old one is skipped.
        self._deadlines: list[tuple[float, int]] = []
        self._scheduled: dict[int, float] = {}
        self._ids = count(1)
        self.now = 0.0  # latest clock value the table was driven with
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "found",
                "new",
                "invalid",
                "ignore",
                "insert",
                "insert_failed",
                "drop_full",
                "early_drop",
                "expired",
                "deleted",
                "untracked",
                "related",
            ),
            0,
        )

    # -- table ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._conns)

    def __iter__(self) -> Iterator[Conn]:
        return iter(list(self._conns.values()))

    def lookup(self, tup: CtTuple) -> tuple[Conn, int] | None:
        """The confirmed connection carrying ``tup`` and its direction; dying ones are a miss."""
        hit = self._table.get(tup)
        if hit is None or int(hit[0].status) & _DYING:
            return None
        return hit

    def tuple_taken(self, tup: CtTuple, ignore: Conn | None = None) -> bool:
        """``nf_conntrack_tuple_taken``: does another live connection use ``tup``?

        An entry past its deadline is reaped here rather than counted, as lookups do.
        """
        hit = self._live(tup, self.now)
        return hit is not None and hit[0] is not ignore

    def related(self, inner: CtTuple) -> tuple[Conn, int] | None:
        """The connection an ICMP error belongs to, from the tuple of the datagram it quotes.

        The quoted datagram went the other way, so the error travels in the returned direction:
        ``ct state related`` with ctinfo RELATED (ORIGINAL) or RELATED_REPLY (REPLY).
        """
        return self.lookup(reply_tuple(inner))

    # -- per packet ----------------------------------------------------------------------------

    def track_packet(self, pkt: Packet, now: float) -> Tracked:
        """``nf_conntrack_in`` for a parsed IP packet: :meth:`track` with the fields it needs,
        ICMP errors attached to the connection they quote (RELATED / RELATED_REPLY).

        Packets whose L4 header we cannot see (non-first fragments, IPv6 extension headers,
        which the kernel would reassemble or walk first) are INVALID.
        """
        if pkt.family not in (4, 6) or pkt.l4 < 0 or pkt.ext_header or not pkt.first_fragment:
            return self._invalid(ORIGINAL)
        if pkt.is_icmp_error:
            inner = inner_tuple(pkt)
            hit = None if inner is None else self.related(inner)
            if hit is None:
                return self._invalid(ORIGINAL)
            conn, direction = hit
            self.stats["related"] += 1
            ctinfo = CtInfo.RELATED_REPLY if direction == REPLY else CtInfo.RELATED
            return Tracked(conn, direction, ctinfo, CtVerdict.ACCEPT)
        if pkt.proto != IPPROTO_TCP:
            icmp_type = pkt.icmp_type if pkt.proto in _ICMP_PROTOS else None
            return self.track(packet_tuple(pkt), icmp_type=icmp_type, length=pkt.ip_len, now=now)
        seq, ack, offset = _TCP_SEQ.unpack_from(pkt.frame, pkt.l4 + 4)
        window = _WINDOW.unpack_from(pkt.frame, pkt.l4 + 14)[0]
        return self.track(
            packet_tuple(pkt),
            tcp_flags=pkt.tcp_flags,
            length=pkt.ip_len,
            now=now,
            window=window,
            seq=seq,
            ack=ack,
            payload=max(0, pkt.l4_len - (offset >> 4) * 4),
        )

    def track(
        self,
        tup: CtTuple,
        *,
        tcp_flags: int = 0,
        icmp_type: int | None = None,
        length: int = 0,
        now: float,
        window: int = 0,
        seq: int | None = None,
        ack: int | None = None,
        payload: int = 0,
    ) -> Tracked:
        """``nf_conntrack_in`` for one packet of ``tup``: find or create the connection, run the
        protocol tracker, count the packet.

        ICMP errors are not tracked here: they belong to the connection they quote
        (:meth:`related`). For TCP, ``window`` feeds ``TcpTrack.max_window``; ``seq``, ``ack``
        and ``payload`` (data bytes), when known, let RSTs be validated as the kernel does.
        """
        self.now = now
        proto = tup.proto
        if proto in _ICMP_PROTOS:
            early = self._icmp_precheck(tup, icmp_type)
            if early is not None:
                return early
        elif proto == IPPROTO_TCP and tcp_flags & ~(_ECE | _CWR | _PSH) not in _TCP_VALID_FLAGS:
            return self._invalid(ORIGINAL)  # tcp_error: invalid flag combination
        while True:
            hit = self._live(tup, now)
            if hit is None:
                if proto in _ICMP_PROTOS and icmp_type not in _ICMP_ANY_REQUEST:
                    return self._invalid(ORIGINAL)  # only a request can open an ICMP connection
                if len(self._conns) >= self.max_entries and not self._early_drop(now):
                    self.stats["drop_full"] += 1
                    return Tracked(None, ORIGINAL, CtInfo.INVALID, CtVerdict.DROP)
                conn = Conn((tup, reply_tuple(tup)), id=next(self._ids))
                direction = ORIGINAL
            else:
                conn, direction = hit
                if proto in _ICMP_PROTOS and (direction == REPLY) == (
                    icmp_type in _ICMP_ANY_REQUEST
                ):
                    return self._invalid(direction)  # a request seen as a reply, or vice versa
            before = (conn.status, conn.tcp_state)
            segment = TcpSegment(tcp_flags, window, seq, ack, payload)
            result = self._packet(conn, direction, segment, length, now)
            if result is not _L4.REPEAT:
                break
        if result is _L4.INVALID:
            return self._invalid(direction)
        status = int(conn.status)
        self.stats["found" if status & _CONFIRMED else "new"] += 1
        if result is _L4.IGNORE:
            self.stats["ignore"] += 1
        if direction == REPLY:
            ctinfo = CtInfo.ESTABLISHED_REPLY
            if not status & _SEEN_REPLY:
                conn.status |= Status.SEEN_REPLY
        else:
            ctinfo = CtInfo.ESTABLISHED if status & _SEEN_REPLY else CtInfo.NEW
        self._changed(conn, before, now)
        return Tracked(conn, direction, ctinfo, CtVerdict.ACCEPT)

    def confirm(self, conn: Conn, now: float) -> bool:
        """``nf_conntrack_confirm``: insert under both tuples, set CONFIRMED, report NEW.

        False (counted) when the connection is dying, the table is full, or either tuple is
        already in use (possibly under a REPLY tuple that NAT changed).
        """
        if int(conn.status) & _CONFIRMED:
            return True
        orig, reply = conn.tuples
        self.now = now
        if int(conn.status) & _DYING or self._live(orig, now) or self._live(reply, now):
            self.stats["insert_failed"] += 1
            return False
        if len(self._conns) >= self.max_entries and not self._early_drop(now):
            self.stats["drop_full"] += 1
            return False
        self._table[reply] = (conn, REPLY)
        self._table[orig] = (conn, ORIGINAL)  # last: a tuple equal to its own reply is ORIGINAL
        self._conns[conn.id] = conn
        self._schedule(conn)
        if not int(conn.status) & _ASSURED:
            self._unassured[conn.id] = conn
        conn.status |= Status.CONFIRMED
        self.stats["insert"] += 1
        self._emit("NEW", conn, now)
        return True

    # -- timers --------------------------------------------------------------------------------

    def refresh(self, conn: Conn, seconds: float, now: float) -> None:
        """``nf_ct_refresh``: the connection expires ``seconds`` from ``now``."""
        if int(conn.status) & _FIXED_TIMEOUT:
            return
        conn.timeout = now + seconds
        self._reschedule_if_sooner(conn)

    def timeout_for(self, conn: Conn) -> float:
        """The protocol timeout for the connection's current state (what a packet would set)."""
        return state_timeout(self.timeouts, conn)

    def gc(self, now: float) -> int:
        """Expire connections whose deadline passed; returns how many died.

        Connections a flowtable owns (OFFLOAD) are skipped: the flowtable holds their timeout
        far away while they are offloaded and hands them back with a fixed-up one on teardown.
        """
        self.now = now
        heap, scheduled, conns = self._deadlines, self._scheduled, self._conns
        died = 0
        while heap and heap[0][0] <= now:
            deadline, conn_id = heappop(heap)
            conn = conns.get(conn_id)
            if conn is None or scheduled.get(conn_id) != deadline:
                continue  # gone, or superseded by a sooner entry
            if self._expired(conn, now):
                self._kill(conn, now, "expired")
                died += 1
            elif int(conn.status) & _OFFLOAD:  # the flowtable owns it: look again later
                self._schedule(conn, max(conn.timeout, now + 1.0))
            else:  # extended since this entry was pushed
                self._schedule(conn)
        return died

    # -- management ----------------------------------------------------------------------------

    def delete(self, conn: Conn, now: float) -> None:
        """``conntrack -D`` / ``nf_ct_kill``: mark DYING, unlink both tuples, report DESTROY."""
        self._kill(conn, now, "deleted")

    def flush(self, now: float) -> None:
        """``conntrack -F``: delete every connection."""
        for conn in list(self._conns.values()):
            self._kill(conn, now, "deleted")

    def set_status(self, conn: Conn, bits: Status) -> None:
        """Set status bits (OFFLOAD, HW_OFFLOAD) silently, as the kernel's ``set_bit`` /
        ``test_and_set_bit`` on ``ct->status`` do: no ``nf_conntrack_event_cache``, so no
        UPDATE (``nft_flow_offload_eval``, ``flow_offload_work_add``)."""
        conn.status |= bits

    def clear_status(self, conn: Conn, bits: Status) -> None:
        """Clear status bits silently (``clear_bit`` in ``flow_offload_teardown`` and
        ``flow_offload_work_del``): no UPDATE either."""
        conn.status &= ~bits
        if bits & Status.OFFLOAD:
            self._reschedule_if_sooner(conn)  # conntrack's own timeout applies again

    # -- internals -----------------------------------------------------------------------------

    def _emit(self, kind: str, conn: Conn, now: float) -> None:
        if self.on_event is not None:
            self.on_event(CtEvent(kind, conn, now))

    def _changed(self, conn: Conn, before: tuple[Status, TcpState], now: float) -> None:
        """Deliver one UPDATE per packet/call, as the kernel's per-packet event cache does."""
        status = int(conn.status)
        if (status, conn.tcp_state) != before and status & _CONFIRMED and not status & _DYING:
            self._emit("UPDATE", conn, now)

    def _invalid(self, direction: int) -> Tracked:
        self.stats["invalid"] += 1
        return Tracked(None, direction, CtInfo.INVALID, CtVerdict.INVALID)

    def _schedule(self, conn: Conn, at: float | None = None) -> None:
        deadline = conn.timeout if at is None else at
        heappush(self._deadlines, (deadline, conn.id))
        self._scheduled[conn.id] = deadline

    def _reschedule_if_sooner(self, conn: Conn) -> None:
        """A deadline brought forward: make gc look at it then, not at the old entry's time."""
        scheduled = self._scheduled.get(conn.id)
        if scheduled is not None and conn.timeout < scheduled and self._conns.get(conn.id) is conn:
            self._schedule(conn)

    def _live(self, tup: CtTuple, now: float) -> tuple[Conn, int] | None:
        """The entry under ``tup``, reaping it first if its deadline has passed."""
        hit = self._table.get(tup)
        if hit is not None and self._expired(hit[0], now):
            self._kill(hit[0], now, "expired")
            return None
        return hit

    @staticmethod
    def _expired(conn: Conn, now: float) -> bool:
        return conn.timeout <= now and not int(conn.status) & _OFFLOAD

    def _kill(self, conn: Conn, now: float, reason: str) -> None:
        status = int(conn.status)
        if status & _DYING:
            return
        conn.status = Status(status | _DYING)
        if self._conns.get(conn.id) is not conn:
            return  # unconfirmed (or not this table's): never inserted, never reported
        for tup in conn.tuples:
            hit = self._table.get(tup)
            if hit is not None and hit[0] is conn:
                del self._table[tup]
        del self._conns[conn.id]
        self._unassured.pop(conn.id, None)
        self._scheduled.pop(conn.id, None)
        self.stats[reason] += 1
        self._emit("DESTROY", conn, now)

    def _early_drop(self, now: float) -> bool:
        """``early_drop``: evict the oldest entry that is neither ASSURED nor offloaded.

        The kernel picks among a few hash buckets; the oldest unassured entry is the same kind
        of victim (a SYN flood or a UDP probe), found without scanning the table.
        """
        stale: list[int] = []  # assured since they were inserted: never victims again
        victim = None
        skipped = 0
        for conn in self._unassured.values():
            status = int(conn.status)
            if status & _ASSURED:
                stale.append(conn.id)
            elif not status & _OFFLOAD:
                victim = conn
                break
            else:
                skipped += 1
                if skipped >= NF_CT_EVICTION_RANGE:
                    break
        for conn_id in stale:
            del self._unassured[conn_id]
        if victim is None:
            return False
        self._kill(victim, now, "early_drop")
        return True

    def _icmp_precheck(self, tup: CtTuple, icmp_type: int | None) -> Tracked | None:
        """ICMP types conntrack never tracks as a connection of their own."""
        if tup.proto == IPPROTO_ICMPV6:
            if icmp_type in _ICMPV6_UNTRACKED:
                self.stats["untracked"] += 1
                return _UNTRACKED
            known = icmp_type in _ICMPV6_REQUESTS or icmp_type in _ICMPV6_REPLIES
        else:
            known = icmp_type in _ICMP_REQUESTS or icmp_type in _ICMP_REPLIES
        if known:
            return None
        # Errors belong to the connection they quote (``related``); anything else is unknown.
        return self._invalid(ORIGINAL)

    def _packet(
        self, conn: Conn, direction: int, segment: TcpSegment, length: int, now: float
    ) -> _L4:
        """Run the protocol tracker; count the packet when it was accepted into the state."""
        proto = conn.proto
        if proto == IPPROTO_TCP:
            result = self._tcp(conn, direction, segment, now)
        else:
            timeout = self._udp(conn, now) if proto == IPPROTO_UDP else self.timeout_for(conn)
            self.refresh(conn, timeout, now)
            result = _L4.ACCEPT
        if result is _L4.ACCEPT:
            conn.packets[direction] += 1
            conn.bytes[direction] += length
        return result

    def _udp(self, conn: Conn, now: float) -> float:
        """``nf_conntrack_udp_packet``: the timeout to set; ASSURED for a stream.

        Unreplied: 30 s. Once a reply was seen, a packet more than 2 s after the connection
        was created makes it a stream: 120 s and ASSURED (never for NAT_CLASH entries).
        """
        t = self.timeouts
        status = int(conn.status)
        if not status & _CONFIRMED:
            conn.stream_ts = now + 2.0
        if not status & _SEEN_REPLY or now <= conn.stream_ts:
            return t.udp
        if not status & (_ASSURED | _NAT_CLASH):
            conn.status |= Status.ASSURED
        return t.udp_stream

    def _tcp(self, conn: Conn, direction: int, segment: TcpSegment, now: float) -> _L4:
        """``nf_conntrack_tcp_packet`` without the window check (every segment is in window)."""
        flags, seq, ack = segment.flags, segment.seq, segment.ack
        index = tcp_index(flags)
        track = conn.tcp
        status = int(conn.status)
        if not status & _CONFIRMED and conn.tcp_state == TcpState.NONE:
            # tcp_new: only a SYN starts a connection; an ACK picks one up mid-stream (loose=1).
            first = _TCP_CONNTRACKS[ORIGINAL][index][sNO]
            if first >= sIV:
                return _L4.INVALID
            if first != sSS:
                track[ORIGINAL].liberal = track[REPLY].liberal = True
            conn.last_index = TCP_NONE_SET
        old = int(conn.tcp_state)
        new = _TCP_CONNTRACKS[direction][index][old]
        if new == sSS and old >= sTW:
            # RFC 1122 reopen from TIME_WAIT/CLOSE: after a close (either side sent FIN) or an
            # abort by this side, kill the old entry and look the packet up again.
            if (
                track[ORIGINAL].close_init
                or track[REPLY].close_init
                or (conn.last_dir == direction and conn.last_index == TCP_RST_SET)
            ):
                self._kill(conn, now, "deleted")
                return _L4.REPEAT
            new = sIG
        if new == sIG:
            if (
                index == TCP_SYNACK_SET
                and conn.last_index == TCP_SYN_SET
                and conn.last_dir != direction
                and (ack is None or ack == conn.last_end)
            ):
                # b) The SYN/ACK answers a SYN we ignored: both ends are in sync, resync to them.
                old, new = sSS, sSR
                conn.last_flags &= ~_EXP_CHALLENGE_ACK
                _reset(track[direction])
            else:
                conn.last_index, conn.last_dir = index, direction
                if seq is not None:
                    conn.last_end = segment.end
                if index == TCP_SYN_SET and direction == ORIGINAL:
                    conn.last_flags = _EXP_CHALLENGE_ACK if old == sLA else 0
                return _L4.IGNORE
        elif new == sIV:
            return _L4.INVALID
        elif new == sTW:
            if (
                old == sLA
                and index == TCP_ACK_SET
                and conn.last_dir != direction
                and conn.last_index == TCP_SYN_SET
                and conn.last_flags & _EXP_CHALLENGE_ACK
            ):
                conn.last_flags &= ~_EXP_CHALLENGE_ACK  # RFC 5961 challenge ACK, not the last ACK
                return _L4.IGNORE
        elif new == sS2:
            conn.last_flags |= _TCP_SIMULTANEOUS_OPEN
        elif (
            new == sSR
            and direction == REPLY
            and index == TCP_ACK_SET
            and conn.last_flags & _TCP_SIMULTANEOUS_OPEN
        ):
            new = sES  # the table cannot express the end of a simultaneous open
        elif new == sCL and index == TCP_RST_SET and seq is not None:
            peer = track[1 - direction]
            if peer.maxack_set:
                if _before(seq, peer.max_ack):
                    return _L4.INVALID  # resets data the peer has already acknowledged
                established = old == sES and status & _ASSURED
                if (
                    established
                    and seq != peer.max_ack
                    and not (
                        conn.last_index == TCP_ACK_SET
                        and conn.last_dir == direction
                        and seq == conn.last_end
                    )
                ):
                    new = old  # not exact: keep the state for a possible challenge ACK
        # In window from here on.
        conn.last_index, conn.last_dir = index, direction
        sender = track[direction]
        if segment.window > sender.max_window:
            sender.max_window = segment.window
        elif sender.max_window == 0:
            sender.max_window = 1
        if flags & _ACK and ack is not None:
            if not sender.maxack_set or _before(sender.max_ack, ack):
                sender.max_ack = ack
            sender.maxack_set = True
        if index == TCP_ACK_SET and seq is not None:
            conn.last_end = segment.end
        conn.tcp_state = TcpState(new)
        if old != new and new == sFW:
            sender.close_init = True
        t = self.timeouts
        timeout = t.tcp_close if index == TCP_RST_SET else t.tcp[new]
        if not status & _SEEN_REPLY:
            if index == TCP_RST_SET:
                # The only answer was a RST: no connection worth keeping (nf_ct_kill_acct).
                self._kill(conn, now, "deleted")
                return _L4.ACCEPT
            if new == sES and timeout > t.tcp_unacknowledged:
                timeout = t.tcp_unacknowledged  # picked up mid-stream, not answered yet
        elif not status & _ASSURED and old in (sSR, sES) and new == sES:
            conn.status |= Status.ASSURED
        self.refresh(conn, timeout, now)
        return _L4.ACCEPT


def _reset(track: TcpTrack) -> None:
    """Forget one direction's window data (the kernel's memset of ``seen[dir]``)."""
    track.max_window = 0
    track.max_ack = 0
    track.maxack_set = False
    track.close_init = False


# -- listing: conntrack -L ----------------------------------------------------------------------

_PROTO_NAMES = {
    IPPROTO_ICMP: "icmp",
    IPPROTO_TCP: "tcp",
    IPPROTO_UDP: "udp",
    47: "gre",
    IPPROTO_ICMPV6: "icmpv6",
    132: "sctp",
    136: "udplite",
}
_ECHO_TYPES = {IPPROTO_ICMP: (8, 0), IPPROTO_ICMPV6: (128, 129)}
_SHOWN_STATUS = tuple((bit.name, int(bit)) for bit in (
    Status.SEEN_REPLY,
    Status.ASSURED,
    Status.CONFIRMED,
    Status.SRC_NAT,
    Status.DST_NAT,
    Status.DYING,
    Status.NAT_CLASH,
    Status.OFFLOAD,
    Status.HW_OFFLOAD,
))


@lru_cache(maxsize=4096)
def _address_text(address: int | bytes) -> str:
    """An address as text; events describe the same few hosts' addresses over and over."""
    return str(ipaddress.ip_address(address))


def _l4_fields(conn: Conn, direction: int) -> dict[str, object]:
    tup = conn.tuples[direction]
    fields: dict[str, object] = {
        "src": _address_text(tup.src),
        "dst": _address_text(tup.dst),
    }
    if tup.proto in _ICMP_PROTOS:
        # Only the identifier is kept; echo is by far the usual request.
        fields.update(type=_ECHO_TYPES[tup.proto][direction], code=0, id=tup.sport)
    elif tup.sport or tup.dport or tup.proto in _PORT_PROTOS:
        fields.update(sport=tup.sport, dport=tup.dport)
    fields.update(packets=conn.packets[direction], bytes=conn.bytes[direction])
    return fields


def describe(conn: Conn, now: float) -> dict[str, object]:
    """One entry as data (``p4ft flows --json``). Offloaded entries show neither timeout nor TCP
    state, as ``ctnetlink`` omits them while a flowtable owns the connection."""
    status = int(conn.status)  # int operations: IntFlag's & builds a member per call
    offloaded = bool(status & Status.OFFLOAD.value)
    proto = conn.proto
    return {
        "id": conn.id,
        "family": f"ipv{conn.family}",
        "proto": _PROTO_NAMES.get(proto, "unknown"),
        "protonum": proto,
        "timeout": None if offloaded else max(0, int(conn.timeout - now)),
        "state": conn.tcp_state.name if proto == IPPROTO_TCP and not offloaded else None,
        "original": _l4_fields(conn, ORIGINAL),
        "reply": _l4_fields(conn, REPLY),
        "status": [name for name, bit in _SHOWN_STATUS if status & bit],
        "mark": conn.mark,
        "zone": conn.zone,
    }


def format_conn(conn: Conn, now: float) -> str:
    """One ``conntrack -L`` line: ``[UNREPLIED]`` after the original tuple, then the first of
    ``[HW_OFFLOAD]``, ``[OFFLOAD]``, ``[ASSURED]`` that applies (``ct_seq_show``)."""
    info = describe(conn, now)
    words = [f"{info['proto']:<8} {conn.proto}"]
    if info["timeout"] is not None:
        words.append(str(info["timeout"]))
    if info["state"] is not None:
        words.append(str(info["state"]))
    words += [f"{k}={v}" for k, v in _l4_fields(conn, ORIGINAL).items()]
    status = conn.status
    if not status & Status.SEEN_REPLY:
        words.append("[UNREPLIED]")
    words += [f"{k}={v}" for k, v in _l4_fields(conn, REPLY).items()]
    for bit in (Status.HW_OFFLOAD, Status.OFFLOAD, Status.ASSURED):
        if status & bit:
            words.append(f"[{bit.name}]")
            break
    words.append(f"mark={conn.mark}")
    if conn.zone:
        words.append(f"zone={conn.zone}")
    return " ".join(words)
