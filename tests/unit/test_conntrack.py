"""Conntrack: the kernel's TCP table, UDP streams, ICMP, RELATED, timeouts, bound and events."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, ICMPv6ND_NS, IPv6
from scapy.layers.l2 import Ether

from controller.ip.frames import ip_frame
from controller.ip.icmp import time_exceeded
from controller.ip.packet import Packet, parse
from controller.netfilter.conntrack import (
    Conntrack,
    CtEvent,
    CtVerdict,
    Timeouts,
    Tracked,
    describe,
    format_conn,
    inner_tuple,
    packet_tuple,
    reply_tuple,
)
from controller.netfilter.ct import (
    IPPROTO_GRE,
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
)

CLIENT = ipaddress.ip_address("10.0.1.1").packed
SERVER = ipaddress.ip_address("10.0.2.1").packed
ROUTER = ipaddress.ip_address("10.0.1.254").packed
C6 = ipaddress.ip_address("2001:db8:1::1").packed
S6 = ipaddress.ip_address("2001:db8:2::1").packed

SYN, ACK, SYNACK, FINACK, RST, RSTACK, PSHACK = 0x02, 0x10, 0x12, 0x11, 0x04, 0x14, 0x18
FIN_ONLY, SYNFIN, NULL = 0x01, 0x03, 0x00

T0 = 1000.0
MAC1, MAC2 = bytes.fromhex("020000000001"), bytes.fromhex("0200000001fe")


def tcp_tuple(sport: int = 40000, dport: int = 80) -> CtTuple:
    return CtTuple(4, IPPROTO_TCP, CLIENT, SERVER, sport, dport)


ORIG = tcp_tuple()
REPL = reply_tuple(ORIG)


class Table:
    """A Conntrack with an event log; ``send`` tracks one packet and confirms it like the hooks."""

    def __init__(self, **kw: object) -> None:
        self.events: list[CtEvent] = []
        self.ct = Conntrack(on_event=self.events.append, **kw)  # type: ignore[arg-type]

    def send(
        self, tup: CtTuple, flags: int = 0, now: float = T0, *, length: int = 60, **kw: object
    ) -> Tracked:
        r = self.ct.track(tup, tcp_flags=flags, length=length, now=now, **kw)  # type: ignore[arg-type]
        if r.conn is not None and not r.conn.dying:
            assert self.ct.confirm(r.conn, now)
        return r

    def kinds(self) -> list[str]:
        return [e.type for e in self.events]

    def handshake(self, now: float = T0, orig: CtTuple = ORIG) -> Conn:
        self.send(orig, SYN, now)
        self.send(reply_tuple(orig), SYNACK, now)
        r = self.send(orig, ACK, now)
        assert r.conn is not None
        return r.conn


def left(conn: Conn, now: float = T0) -> float:
    return conn.timeout - now


# -- TCP ----------------------------------------------------------------------------------------


def test_tcp_handshake_reaches_established_and_assured_on_the_third_packet() -> None:
    t = Table()
    syn = t.send(ORIG, SYN, length=74)
    assert syn.verdict is CtVerdict.ACCEPT and syn.direction == ORIGINAL
    assert syn.ctinfo is CtInfo.NEW
    conn = syn.conn
    assert conn is not None and conn.tcp_state is TcpState.SYN_SENT
    assert conn.tuples == (ORIG, REPL)
    assert left(conn) == 120

    synack = t.send(REPL, SYNACK, length=74)
    assert synack.conn is conn and synack.direction == REPLY
    assert synack.ctinfo is CtInfo.ESTABLISHED_REPLY
    assert conn.tcp_state is TcpState.SYN_RECV and conn.status & Status.SEEN_REPLY
    assert not conn.status & Status.ASSURED
    assert left(conn) == 60

    ack = t.send(ORIG, ACK, length=66)
    assert ack.ctinfo is CtInfo.ESTABLISHED
    assert conn.tcp_state is TcpState.ESTABLISHED and conn.status & Status.ASSURED
    assert left(conn) == 432000
    assert conn.packets == [2, 1] and conn.bytes == [140, 74]
    assert t.kinds() == ["NEW", "UPDATE", "UPDATE"]
    assert t.ct.lookup(REPL) == (conn, REPLY) and t.ct.lookup(ORIG) == (conn, ORIGINAL)
    assert len(t.ct) == 1 and list(t.ct) == [conn]


def test_first_packet_is_unconfirmed_until_confirm() -> None:
    ct = Conntrack()
    r = ct.track(ORIG, tcp_flags=SYN, now=T0)
    assert r.conn is not None and not r.conn.confirmed
    assert ct.lookup(ORIG) is None and len(ct) == 0
    assert ct.confirm(r.conn, T0) and r.conn.confirmed
    assert ct.lookup(ORIG) == (r.conn, ORIGINAL)


_CLOSE_PATH = [
    (ORIG, SYN),
    (REPL, SYNACK),
    (ORIG, ACK),
    (ORIG, FINACK),
    (REPL, ACK),
    (REPL, FINACK),
    (ORIG, ACK),
]
_STEPS = {
    TcpState.SYN_SENT: 1,
    TcpState.SYN_RECV: 2,
    TcpState.ESTABLISHED: 3,
    TcpState.FIN_WAIT: 4,
    TcpState.CLOSE_WAIT: 5,
    TcpState.LAST_ACK: 6,
    TcpState.TIME_WAIT: 7,
}


def _to_state(t: Table, state: TcpState) -> Conn:
    """Drive one connection into ``state`` with ordinary segments (CLOSE: reset after setup)."""
    steps = (
        [*_CLOSE_PATH[:3], (ORIG, RSTACK)]
        if state is TcpState.CLOSE
        else _CLOSE_PATH[: _STEPS[state]]
    )
    for tup, flags in steps:
        r = t.send(tup, flags)
    assert r.conn is not None and r.conn.tcp_state is state
    return r.conn


@pytest.mark.parametrize(
    ("state", "seconds"),
    [
        (TcpState.SYN_SENT, 120),
        (TcpState.SYN_RECV, 60),
        (TcpState.ESTABLISHED, 432000),
        (TcpState.FIN_WAIT, 120),
        (TcpState.CLOSE_WAIT, 60),
        (TcpState.LAST_ACK, 30),
        (TcpState.TIME_WAIT, 120),
        (TcpState.CLOSE, 10),
    ],
)
def test_tcp_timeout_per_state(state: TcpState, seconds: float) -> None:
    t = Table()
    conn = _to_state(t, state)
    assert left(conn) == seconds
    assert t.ct.timeout_for(conn) == seconds
    assert t.ct.gc(T0 + seconds - 0.5) == 0 and len(t.ct) == 1
    assert t.ct.gc(T0 + seconds) == 1 and len(t.ct) == 0
    assert t.kinds()[-1] == "DESTROY" and conn.dying


def test_timeouts_default_to_the_kernel_values() -> None:
    t = Timeouts()
    assert t.tcp[TcpState.SYN_SENT2] == 120 and t.tcp_unacknowledged == 300
    assert t.tcp_max_retrans == 300
    assert (t.udp, t.udp_stream, t.icmp, t.generic) == (30, 120, 30, 600)
    custom = Timeouts(tcp_established=7200)
    assert custom.tcp[TcpState.ESTABLISHED] == 7200


def test_tcp_fin_from_each_side_closes_through_time_wait() -> None:
    t = Table()
    conn = t.handshake()
    t.send(ORIG, FINACK)
    assert conn.tcp_state is TcpState.FIN_WAIT and conn.tcp[ORIGINAL].close_init
    assert not conn.tcp[REPLY].close_init
    t.send(REPL, ACK)
    assert conn.tcp_state is TcpState.CLOSE_WAIT
    t.send(REPL, FINACK)
    assert conn.tcp_state is TcpState.LAST_ACK
    t.send(ORIG, ACK, T0 + 1)
    assert conn.tcp_state is TcpState.TIME_WAIT and left(conn, T0 + 1) == 120
    t.send(ORIG, ACK, T0 + 2)  # retransmitted last ACK stays in TIME_WAIT
    assert conn.tcp_state is TcpState.TIME_WAIT
    assert t.ct.gc(T0 + 122) == 1 and t.ct.lookup(ORIG) is None


def test_tcp_simultaneous_close() -> None:
    t = Table()
    conn = t.handshake()
    t.send(ORIG, FINACK)
    t.send(REPL, FINACK)
    assert conn.tcp_state is TcpState.LAST_ACK
    t.send(REPL, ACK)
    assert conn.tcp_state is TcpState.TIME_WAIT


def test_tcp_rst_moves_to_close_with_the_close_timeout() -> None:
    t = Table()
    conn = t.handshake()
    r = t.send(REPL, RSTACK, T0 + 5)
    assert r.verdict is CtVerdict.ACCEPT
    assert conn.tcp_state is TcpState.CLOSE and left(conn, T0 + 5) == 10
    assert t.ct.lookup(ORIG) is not None  # still there until it times out
    assert t.ct.gc(T0 + 15) == 1


def test_tcp_rst_answering_a_syn_kills_the_connection_at_once() -> None:
    t = Table()
    t.send(ORIG, SYN)
    r = t.send(REPL, RSTACK)
    assert r.verdict is CtVerdict.ACCEPT and r.conn is not None and r.conn.dying
    assert t.ct.lookup(ORIG) is None and len(t.ct) == 0
    assert t.kinds() == ["NEW", "DESTROY"]


def test_tcp_syn_reopens_a_time_wait_connection() -> None:
    t = Table()
    old = _to_state(t, TcpState.TIME_WAIT)
    r = t.send(ORIG, SYN, T0 + 3)
    assert r.conn is not None and r.conn is not old
    assert old.dying and r.conn.tcp_state is TcpState.SYN_SENT and r.ctinfo is CtInfo.NEW
    assert t.ct.lookup(ORIG) == (r.conn, ORIGINAL)
    assert t.kinds()[-2:] == ["DESTROY", "NEW"]


def test_tcp_server_may_reopen_a_time_wait_connection_in_the_other_direction() -> None:
    t = Table()
    old = _to_state(t, TcpState.TIME_WAIT)
    r = t.send(REPL, SYN)
    assert old.dying and r.conn is not None and r.conn.tuples[ORIGINAL] == REPL
    assert r.direction == ORIGINAL and r.conn.tcp_state is TcpState.SYN_SENT


def test_tcp_syn_reopens_after_an_abort_by_the_same_side() -> None:
    t = Table()
    old = t.handshake()
    t.send(ORIG, RSTACK)
    assert old.tcp_state is TcpState.CLOSE
    r = t.send(ORIG, SYN)
    assert old.dying and r.conn is not old and r.conn is not None
    assert r.conn.tcp_state is TcpState.SYN_SENT


def test_tcp_syn_after_the_peer_reset_is_ignored() -> None:
    t = Table()
    conn = t.handshake()
    t.send(REPL, RSTACK)
    packets = list(conn.packets)
    r = t.send(ORIG, SYN, T0 + 1)
    assert r.conn is conn and r.verdict is CtVerdict.ACCEPT
    assert conn.tcp_state is TcpState.CLOSE and conn.packets == packets
    assert left(conn, T0 + 1) == 9  # ignored packets do not refresh
    assert t.ct.stats["ignore"] == 1


def test_tcp_syn_in_established_is_ignored_and_a_matching_synack_resyncs() -> None:
    t = Table()
    conn = t.handshake()
    r = t.send(ORIG, SYN)
    assert r.verdict is CtVerdict.ACCEPT and conn.tcp_state is TcpState.ESTABLISHED
    t.send(REPL, SYNACK)  # the peers agree on a new connection we had missed
    assert conn.tcp_state is TcpState.SYN_RECV


def test_tcp_simultaneous_open() -> None:
    t = Table()
    t.send(ORIG, SYN)
    r = t.send(REPL, SYN)
    conn = r.conn
    assert conn is not None and conn.tcp_state is TcpState.SYN_SENT2
    t.send(ORIG, SYNACK)
    assert conn.tcp_state is TcpState.SYN_RECV
    t.send(REPL, ACK)
    assert conn.tcp_state is TcpState.ESTABLISHED and conn.status & Status.ASSURED


@pytest.mark.parametrize("flags", [FIN_ONLY, SYNFIN, NULL, SYN | RST, 0x29])
def test_tcp_invalid_flag_combinations_are_invalid(flags: int) -> None:
    t = Table()
    r = t.ct.track(ORIG, tcp_flags=flags, now=T0)
    assert r == Tracked(None, ORIGINAL, CtInfo.INVALID, CtVerdict.INVALID)
    assert t.ct.stats["invalid"] == 1 and t.ct.stats["new"] == 0


@pytest.mark.parametrize("flags", [SYNACK, FINACK, RST])
def test_tcp_only_syn_or_ack_can_open_a_connection(flags: int) -> None:
    t = Table()
    r = t.ct.track(ORIG, tcp_flags=flags, now=T0)
    assert r.verdict is CtVerdict.INVALID and r.conn is None and len(t.ct) == 0


def test_tcp_out_of_state_packet_is_invalid_and_changes_nothing() -> None:
    t = Table()
    conn = t.send(ORIG, SYN).conn
    assert conn is not None
    r = t.ct.track(ORIG, tcp_flags=ACK, now=T0 + 1)  # ACK before any SYN/ACK
    assert r.verdict is CtVerdict.INVALID and r.ctinfo is CtInfo.INVALID and r.conn is None
    assert conn.tcp_state is TcpState.SYN_SENT and conn.packets == [1, 0]
    assert left(conn) == 120


def test_tcp_mid_stream_pickup_is_liberal_and_short_lived_until_answered() -> None:
    t = Table()
    r = t.send(ORIG, PSHACK, window=29200)
    conn = r.conn
    assert conn is not None and conn.tcp_state is TcpState.ESTABLISHED
    assert conn.tcp[ORIGINAL].liberal and conn.tcp[REPLY].liberal
    assert conn.tcp[ORIGINAL].max_window == 29200
    assert left(conn) == 300 and not conn.status & Status.ASSURED
    t.send(REPL, ACK)
    assert not conn.status & Status.ASSURED
    t.send(ORIG, ACK)
    assert conn.status & Status.ASSURED and left(conn) == 432000


# -- UDP ----------------------------------------------------------------------------------------

U_ORIG = CtTuple(4, IPPROTO_UDP, CLIENT, SERVER, 5353, 53)
U_REPL = reply_tuple(U_ORIG)


def test_udp_unreplied_then_replied_then_assured_as_a_stream() -> None:
    t = Table()
    conn = t.send(U_ORIG, now=T0).conn
    assert conn is not None and left(conn) == 30 and t.kinds() == ["NEW"]
    r = t.send(U_REPL, now=T0 + 0.5)
    assert r.ctinfo is CtInfo.ESTABLISHED_REPLY and conn.status & Status.SEEN_REPLY
    assert left(conn, T0 + 0.5) == 30 and not conn.status & Status.ASSURED
    t.send(U_ORIG, now=T0 + 1.5)  # both ways, but within 2 s of creation: still a probe
    assert left(conn, T0 + 1.5) == 30 and not conn.status & Status.ASSURED
    r = t.send(U_ORIG, now=T0 + 3)
    assert r.ctinfo is CtInfo.ESTABLISHED
    assert conn.status & Status.ASSURED and left(conn, T0 + 3) == 120
    assert t.kinds() == ["NEW", "UPDATE", "UPDATE"]
    assert t.ct.timeout_for(conn) == 120


def test_udp_request_reply_expires_after_the_unreplied_timeout() -> None:
    t = Table()
    t.send(U_ORIG, now=T0)
    t.send(U_REPL, now=T0 + 0.01)
    assert t.ct.gc(T0 + 30) == 0
    assert t.ct.gc(T0 + 30.01) == 1


def test_udp_never_assured_for_nat_clash_entries() -> None:
    t = Table()
    conn = t.send(U_ORIG, now=T0).conn
    assert conn is not None
    conn.status |= Status.NAT_CLASH
    t.send(U_REPL, now=T0 + 1)
    t.send(U_ORIG, now=T0 + 5)
    assert not conn.status & Status.ASSURED and left(conn, T0 + 5) == 120


def test_expired_entry_found_by_a_packet_is_replaced() -> None:
    t = Table()
    old = t.send(U_ORIG, now=T0).conn
    r = t.send(U_ORIG, now=T0 + 31)
    assert old is not None and old.dying and r.conn is not old and r.ctinfo is CtInfo.NEW
    assert t.kinds() == ["NEW", "DESTROY", "NEW"] and t.ct.stats["expired"] == 1


def test_other_protocols_use_the_generic_timeout() -> None:
    t = Table()
    gre = CtTuple(4, IPPROTO_GRE, CLIENT, SERVER, 0, 0)
    conn = t.send(gre).conn
    assert conn is not None and left(conn) == 600
    assert t.send(reply_tuple(gre)).direction == REPLY


# -- ICMP ---------------------------------------------------------------------------------------

E_ORIG = CtTuple(4, IPPROTO_ICMP, CLIENT, SERVER, 0x1234, 0)


def test_icmp_echo_is_tracked_by_identifier() -> None:
    t = Table()
    req = t.send(E_ORIG, icmp_type=8, length=98)
    conn = req.conn
    assert conn is not None and req.ctinfo is CtInfo.NEW and left(conn) == 30
    assert conn.tuples[REPLY] == CtTuple(4, IPPROTO_ICMP, SERVER, CLIENT, 0x1234, 0)
    rep = t.send(conn.tuples[REPLY], now=T0 + 1, icmp_type=0, length=98)
    assert rep.conn is conn and rep.ctinfo is CtInfo.ESTABLISHED_REPLY
    assert conn.packets == [1, 1] and left(conn, T0 + 1) == 30
    other = t.send(E_ORIG._replace(sport=0x1235), icmp_type=8).conn
    assert other is not None and other is not conn


def test_icmp_reply_without_request_is_invalid() -> None:
    t = Table()
    r = t.ct.track(E_ORIG, icmp_type=0, now=T0)
    assert r.verdict is CtVerdict.INVALID and len(t.ct) == 0


def test_icmp_request_in_the_reply_direction_is_invalid() -> None:
    t = Table()
    conn = t.send(E_ORIG, icmp_type=8).conn
    assert conn is not None
    assert t.ct.track(conn.tuples[REPLY], icmp_type=8, now=T0).verdict is CtVerdict.INVALID


def test_icmpv6_echo_and_ndp() -> None:
    t = Table()
    echo = CtTuple(6, IPPROTO_ICMPV6, C6, S6, 7, 0)
    conn = t.send(echo, icmp_type=128).conn
    assert conn is not None
    assert t.send(conn.tuples[REPLY], icmp_type=129).direction == REPLY
    ns = t.ct.track(CtTuple(6, IPPROTO_ICMPV6, C6, S6, 0, 0), icmp_type=135, now=T0)
    assert ns == Tracked(None, ORIGINAL, CtInfo.UNTRACKED, CtVerdict.ACCEPT)


def test_icmp_errors_are_not_tracked_as_connections() -> None:
    t = Table()
    r = t.ct.track(CtTuple(4, IPPROTO_ICMP, ROUTER, CLIENT, 0, 0), icmp_type=11, now=T0)
    assert r.verdict is CtVerdict.INVALID and len(t.ct) == 0


def test_icmp_error_is_related_to_the_connection_it_quotes() -> None:
    t = Table()
    conn = t.handshake()
    assert t.ct.related(ORIG) == (conn, REPLY)  # quotes a client packet: goes back to the client
    assert t.ct.related(REPL) == (conn, ORIGINAL)
    assert t.ct.related(tcp_tuple(sport=1)) is None


def test_inner_tuple_of_a_router_error_matches_the_quoted_packet() -> None:
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:01:fe")
    tcp = parse(bytes(eth / IP(src="10.0.1.1", dst="10.0.2.1", ttl=1) / TCP(sport=40000, dport=80)))
    assert packet_tuple(tcp) == ORIG
    error = time_exceeded(tcp, ROUTER)
    assert error is not None
    pkt = parse(ip_frame(MAC1, MAC2, error))
    assert pkt.is_icmp_error and inner_tuple(pkt) == ORIG
    echo = parse(bytes(eth / IP(src="10.0.1.1", dst="10.0.2.1", ttl=1) / ICMP(id=0x1234)))
    assert packet_tuple(echo) == E_ORIG
    quoted = time_exceeded(echo, ROUTER)
    assert quoted is not None and inner_tuple(parse(ip_frame(MAC1, MAC2, quoted))) == E_ORIG
    v6 = parse(bytes(eth / IPv6(src="2001:db8:1::1", dst="2001:db8:2::1", hlim=1) / UDP(dport=53)))
    quoted6 = time_exceeded(v6, ipaddress.ip_address("2001:db8:1::fe").packed)
    assert quoted6 is not None
    assert inner_tuple(parse(ip_frame(MAC1, MAC2, quoted6))) == CtTuple(
        6, IPPROTO_UDP, C6, S6, 53, 53
    )


def test_inner_tuple_of_a_truncated_error_is_none() -> None:
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:01:fe")
    short = IP(src="10.0.1.1", dst="10.0.2.1") / TCP()
    frame = bytes(eth / IP(src="10.0.1.254", dst="10.0.1.1") / ICMP(type=11) / bytes(short)[:24])
    assert inner_tuple(parse(frame)) is None


def test_packet_tuple_for_icmpv6_echo_and_ndp() -> None:
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:01:fe")
    echo = parse(
        bytes(eth / IPv6(src="2001:db8:1::1", dst="2001:db8:2::1") / ICMPv6EchoRequest(id=7))
    )
    assert packet_tuple(echo) == CtTuple(6, IPPROTO_ICMPV6, C6, S6, 7, 0)
    ns = parse(
        bytes(
            eth / IPv6(src="2001:db8:1::1", dst="2001:db8:2::1") / ICMPv6ND_NS(tgt="2001:db8:2::1")
        )
    )
    assert packet_tuple(ns).sport == 0


# -- table bound, management, events ------------------------------------------------------------


def test_full_table_refuses_new_connections_and_counts_them() -> None:
    t = Table(max_entries=2)
    a = t.handshake(orig=tcp_tuple(sport=1))
    b = t.handshake(orig=tcp_tuple(sport=2))
    r = t.ct.track(tcp_tuple(sport=3), tcp_flags=SYN, now=T0)
    assert r.verdict is CtVerdict.DROP and r.conn is None
    assert t.ct.stats["drop_full"] == 1 and len(t.ct) == 2
    assert t.ct.track(tcp_tuple(sport=1), tcp_flags=ACK, now=T0).conn is a  # existing ones work
    t.ct.delete(b, T0)
    assert t.ct.track(tcp_tuple(sport=3), tcp_flags=SYN, now=T0).verdict is CtVerdict.ACCEPT


def test_full_table_early_drops_an_unassured_entry() -> None:
    t = Table(max_entries=2)
    probe = t.send(U_ORIG).conn
    kept = t.handshake()
    r = t.send(tcp_tuple(sport=9), SYN)
    assert r.verdict is CtVerdict.ACCEPT and probe is not None and probe.dying
    assert not kept.dying and len(t.ct) == 2 and t.ct.stats["early_drop"] == 1


def test_confirm_fails_on_a_clash_and_when_full() -> None:
    ct = Conntrack(max_entries=1)
    first = ct.track(U_ORIG, now=T0).conn
    second = ct.track(U_ORIG, now=T0).conn
    assert first is not None and second is not None
    assert ct.confirm(first, T0) and not ct.confirm(second, T0)
    assert ct.stats["insert_failed"] == 1
    assert ct.confirm(first, T0)  # confirming twice is harmless
    ct.set_status(first, Status.ASSURED)
    other = ct.track(CtTuple(4, IPPROTO_UDP, CLIENT, SERVER, 1, 2), now=T0)
    assert other.verdict is CtVerdict.DROP and ct.stats["drop_full"] == 1


def test_delete_and_flush_report_destroy_and_unlink() -> None:
    t = Table()
    conn = t.handshake()
    udp = t.send(U_ORIG).conn
    t.ct.delete(conn, T0 + 1)
    assert conn.dying and t.ct.lookup(ORIG) is None and t.ct.lookup(REPL) is None
    t.ct.delete(conn, T0 + 2)  # already gone: nothing more
    assert t.kinds().count("DESTROY") == 1
    t.ct.flush(T0 + 3)
    assert udp is not None and udp.dying and len(t.ct) == 0
    assert t.events[-1] == CtEvent("DESTROY", udp, T0 + 3)


def test_gc_skips_offloaded_connections() -> None:
    t = Table()
    conn = t.send(U_ORIG).conn
    assert conn is not None
    t.ct.set_status(conn, Status.OFFLOAD)
    assert t.ct.gc(T0 + 100) == 0 and t.ct.lookup(U_ORIG) is not None
    t.ct.clear_status(conn, Status.OFFLOAD)
    assert t.ct.gc(T0 + 100) == 1


def test_offload_bits_set_and_cleared_with_bit_ops_send_no_update() -> None:
    """set_bit / clear_bit on ct->status never reach nf_conntrack_event_cache."""
    t = Table()
    conn = t.send(U_ORIG).conn
    assert conn is not None
    n = len(t.events)
    t.ct.set_status(conn, Status.OFFLOAD)
    t.ct.set_status(conn, Status.HW_OFFLOAD)
    t.ct.clear_status(conn, Status.HW_OFFLOAD)
    t.ct.clear_status(conn, Status.OFFLOAD)
    assert len(t.events) == n


def test_refresh_sets_a_deadline_unless_the_timeout_is_fixed() -> None:
    ct = Conntrack()
    conn = ct.track(U_ORIG, now=T0).conn
    assert conn is not None
    ct.refresh(conn, 86400, T0 + 5)
    assert conn.timeout == T0 + 5 + 86400
    conn.status |= Status.FIXED_TIMEOUT
    ct.refresh(conn, 1, T0 + 6)
    assert conn.timeout == T0 + 5 + 86400


def test_tuple_equal_to_its_own_reply_is_found_as_original() -> None:
    t = Table()
    loop = CtTuple(4, IPPROTO_UDP, CLIENT, CLIENT, 7, 7)
    conn = t.send(loop).conn
    assert conn is not None and t.ct.lookup(loop) == (conn, ORIGINAL)
    t.ct.delete(conn, T0)
    assert t.ct.lookup(loop) is None


def test_bad_bound_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        Conntrack(max_entries=0)


# -- listing ------------------------------------------------------------------------------------


def test_format_conn_reads_like_conntrack_list() -> None:
    t = Table()
    conn = t.send(ORIG, SYN, length=74).conn
    assert conn is not None
    assert format_conn(conn, T0 + 0.5) == (
        "tcp      6 119 SYN_SENT src=10.0.1.1 dst=10.0.2.1 sport=40000 dport=80 packets=1 "
        "bytes=74 [UNREPLIED] src=10.0.2.1 dst=10.0.1.1 sport=80 dport=40000 packets=0 bytes=0 "
        "mark=0"
    )
    t.send(REPL, SYNACK)
    t.send(ORIG, ACK)
    assert "[ASSURED]" in format_conn(conn, T0) and "[UNREPLIED]" not in format_conn(conn, T0)
    t.ct.set_status(conn, Status.OFFLOAD)
    offloaded = format_conn(conn, T0)
    assert offloaded.startswith("tcp      6 src=10.0.1.1") and offloaded.count("[") == 1
    assert "[OFFLOAD]" in offloaded
    t.ct.set_status(conn, Status.HW_OFFLOAD)
    assert "[HW_OFFLOAD]" in format_conn(conn, T0) and "[OFFLOAD]" not in format_conn(conn, T0)


def test_describe_and_event_json() -> None:
    t = Table()
    conn = t.send(E_ORIG, icmp_type=8, length=98).conn
    assert conn is not None
    info = describe(conn, T0)
    assert info["proto"] == "icmp" and info["timeout"] == 30 and info["state"] is None
    assert info["original"] == {
        "src": "10.0.1.1",
        "dst": "10.0.2.1",
        "type": 8,
        "code": 0,
        "id": 0x1234,
        "packets": 1,
        "bytes": 98,
    }
    assert info["reply"]["type"] == 0  # type: ignore[index]
    assert info["status"] == ["CONFIRMED"]
    event = t.events[0]
    assert event.to_dict() == {"type": "NEW", **info}
    assert str(event).startswith("[NEW] icmp     1 30 src=10.0.1.1")


# -- properties ---------------------------------------------------------------------------------

_PACKET = st.tuples(
    st.sampled_from([IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_GRE]),
    st.booleans(),  # reply direction
    st.integers(0, 2),  # which of three flows
    st.integers(0, 255),  # TCP flags
    st.sampled_from([0, 3, 8, 11, 13, 14, 42]),  # ICMP type
    st.floats(0, 200),  # time step
    st.sampled_from(["confirm", "skip", "delete", "gc", "offload", "unoffload", "refresh"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PACKET, max_size=40), st.integers(1, 3))
def test_any_packet_sequence_keeps_the_table_consistent(
    packets: list[tuple[int, bool, int, int, int, float, str]], bound: int
) -> None:
    t = Table(max_entries=bound)
    live: set[int] = set()  # ids announced by NEW and not yet by DESTROY

    def follow(event: CtEvent) -> None:
        if event.type == "NEW":
            live.add(event.conn.id)
        elif event.type == "DESTROY":
            live.remove(event.conn.id)

    t.ct.on_event = follow
    now = T0
    for proto, reply, flow, flags, icmp_type, step, then in packets:
        now += step
        tup = CtTuple(4, proto, CLIENT, SERVER, 1000 + flow, 0 if proto == IPPROTO_ICMP else 80)
        if reply:
            tup = reply_tuple(tup)
        r = t.ct.track(tup, tcp_flags=flags, icmp_type=icmp_type, length=60, now=now)
        assert (r.conn is None) == (
            r.verdict is not CtVerdict.ACCEPT or r.ctinfo is CtInfo.UNTRACKED
        )
        if r.conn is not None:
            if then == "confirm":
                t.ct.confirm(r.conn, now)
            elif then == "delete":
                t.ct.delete(r.conn, now)
            elif then == "offload" and r.conn.confirmed:
                t.ct.set_status(r.conn, Status.OFFLOAD)
            elif then == "unoffload":
                t.ct.clear_status(r.conn, Status.OFFLOAD)
            elif then == "refresh":
                t.ct.refresh(r.conn, 5.0, now)
        if then == "gc":
            t.ct.gc(now)
            assert all(c.timeout > now or c.status & Status.OFFLOAD for c in t.ct)
        assert len(t.ct) <= bound
        assert {c.id for c in t.ct} == live
        for conn in t.ct:
            assert not conn.dying and conn.confirmed
            assert t.ct.lookup(conn.tuples[ORIGINAL]) == (conn, ORIGINAL)
            assert t.ct.lookup(conn.tuples[REPLY])[0] is conn  # type: ignore[index]


# -- parsed packets -----------------------------------------------------------------------------

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:01:fe")


def test_track_packet_follows_a_connection_and_relates_its_errors() -> None:
    ct = Conntrack()
    syn = parse(
        bytes(
            ETH
            / IP(src="10.0.1.1", dst="10.0.2.1")
            / TCP(sport=40000, dport=80, flags="S", window=64240)
        )
    )
    r = ct.track_packet(syn, T0)
    assert r.conn is not None and r.ctinfo is CtInfo.NEW and r.conn.tuples[ORIGINAL] == ORIG
    assert r.conn.bytes == [40, 0] and r.conn.tcp[ORIGINAL].max_window == 64240
    assert ct.confirm(r.conn, T0)
    synack = parse(
        bytes(ETH / IP(src="10.0.2.1", dst="10.0.1.1") / TCP(sport=80, dport=40000, flags="SA"))
    )
    assert ct.track_packet(synack, T0).direction == REPLY
    error = time_exceeded(synack, ROUTER)  # the SYN/ACK died on its way to the client
    assert error is not None
    related = ct.track_packet(parse(ip_frame(MAC1, MAC2, error)), T0)
    assert related == Tracked(r.conn, ORIGINAL, CtInfo.RELATED, CtVerdict.ACCEPT)
    about_syn = time_exceeded(syn, ROUTER)
    assert about_syn is not None
    back = ct.track_packet(parse(ip_frame(MAC1, MAC2, about_syn)), T0)
    assert back.ctinfo is CtInfo.RELATED_REPLY and back.direction == REPLY
    assert r.conn.packets == [1, 1] and ct.stats["related"] == 2


def test_track_packet_refuses_what_it_cannot_see() -> None:
    ct = Conntrack()
    stray = parse(bytes(ETH / IP(src="10.0.1.1", dst="10.0.2.1", ttl=1) / UDP(sport=5, dport=6)))
    error = time_exceeded(stray, ROUTER)
    assert error is not None
    unrelated = ct.track_packet(parse(ip_frame(MAC1, MAC2, error)), T0)
    assert unrelated.verdict is CtVerdict.INVALID
    fragment = parse(bytes(ETH / IP(src="10.0.1.1", dst="10.0.2.1", frag=10) / (b"x" * 16)))
    assert ct.track_packet(fragment, T0).verdict is CtVerdict.INVALID
    echo = parse(bytes(ETH / IP(src="10.0.1.1", dst="10.0.2.1") / ICMP(id=0x1234)))
    assert ct.track_packet(echo, T0).conn is not None
    assert ct.stats["invalid"] == 2


def test_error_about_an_echo_reply_travels_in_the_original_direction() -> None:
    t = Table()
    conn = t.send(E_ORIG, icmp_type=8).conn
    assert conn is not None
    pong = parse(bytes(ETH / IP(src="10.0.2.1", dst="10.0.1.1", ttl=1) / ICMP(type=0, id=0x1234)))
    error = time_exceeded(pong, ROUTER)
    assert error is not None
    r = t.ct.track_packet(parse(ip_frame(MAC1, MAC2, error)), T0)
    assert (r.conn, r.direction, r.ctinfo) == (conn, ORIGINAL, CtInfo.RELATED)


def test_an_expired_entry_does_not_block_a_new_one() -> None:
    t = Table()
    old = t.send(U_ORIG, now=T0).conn
    assert old is not None
    t.ct.now = T0 + 60
    assert not t.ct.tuple_taken(U_REPL) and old.dying  # reaped, not counted as taken
    fresh = t.ct.track(U_ORIG, now=T0 + 60).conn
    assert fresh is not None and t.ct.confirm(fresh, T0 + 60)
    late = Conntrack()
    first = late.track(U_ORIG, now=T0).conn
    second = late.track(U_ORIG, now=T0 + 60).conn
    assert first is not None and second is not None and late.confirm(first, T0)
    assert late.confirm(second, T0 + 60) and first.dying  # the stale entry gave way


# -- RST validation with sequence numbers (track_packet reads them) ------------------------------


def _segment(reply: bool, flags: str, seq: int, ack: int, data: bytes = b"") -> Packet:
    ends = ("10.0.2.1", "10.0.1.1", 80, 40000) if reply else ("10.0.1.1", "10.0.2.1", 40000, 80)
    src, dst, sport, dport = ends
    tcp = TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack)
    return parse(bytes(ETH / IP(src=src, dst=dst) / tcp / data))


def _established_with_seqs() -> tuple[Conntrack, Conn]:
    """Client ISN 1000, server ISN 5000; the client sent 10 bytes, the server acked them."""
    ct = Conntrack()
    for reply, flags, seq, ack, data in [
        (False, "S", 1000, 0, b""),
        (True, "SA", 5000, 1001, b""),
        (False, "A", 1001, 5001, b""),
        (False, "PA", 1001, 5001, b"0123456789"),
        (True, "A", 5001, 1011, b""),
    ]:
        r = ct.track_packet(_segment(reply, flags, seq, ack, data), T0)
        assert r.conn is not None and ct.confirm(r.conn, T0)
    assert r.conn is not None and r.conn.tcp[REPLY].max_ack == 1011
    return ct, r.conn


def test_rst_at_the_acknowledged_sequence_closes() -> None:
    ct, conn = _established_with_seqs()
    r = ct.track_packet(_segment(False, "R", 1011, 0), T0)
    assert r.verdict is CtVerdict.ACCEPT and conn.tcp_state is TcpState.CLOSE


def test_rst_below_the_acknowledged_sequence_is_invalid() -> None:
    ct, conn = _established_with_seqs()
    r = ct.track_packet(_segment(False, "R", 1005, 0), T0 + 1)
    assert r.verdict is CtVerdict.INVALID and conn.tcp_state is TcpState.ESTABLISHED
    assert conn.timeout == T0 + 432000


def test_inexact_rst_keeps_the_state_but_shortens_the_timeout() -> None:
    ct, conn = _established_with_seqs()
    r = ct.track_packet(_segment(False, "R", 1500, 0), T0 + 1)
    assert r.verdict is CtVerdict.ACCEPT and conn.tcp_state is TcpState.ESTABLISHED
    assert conn.timeout == T0 + 1 + 10  # room for a challenge ACK, then gone


def test_rst_right_after_the_senders_data_closes() -> None:
    ct, conn = _established_with_seqs()
    ct.track_packet(_segment(True, "PA", 5001, 1011, b"x" * 19), T0)  # not acked by the client yet
    r = ct.track_packet(_segment(True, "R", 5020, 1011), T0)
    assert r.verdict is CtVerdict.ACCEPT and conn.tcp_state is TcpState.CLOSE


def test_rst_is_not_checked_once_maxack_is_cleared() -> None:
    ct, conn = _established_with_seqs()
    for track in conn.tcp:  # what the flowtable's teardown fix-up does
        track.maxack_set = False
    ct.track_packet(_segment(False, "R", 1005, 0), T0)
    assert conn.tcp_state is TcpState.CLOSE


def test_synack_resyncs_only_when_it_acknowledges_the_ignored_syn() -> None:
    ct, conn = _established_with_seqs()
    ct.track_packet(_segment(False, "S", 90000, 0), T0)  # ignored: a new ISN, end 90001
    ct.track_packet(_segment(True, "SA", 7000, 12345), T0)  # not an answer to it
    assert conn.tcp_state is TcpState.ESTABLISHED
    ct.track_packet(_segment(False, "S", 90000, 0), T0)
    ct.track_packet(_segment(True, "SA", 7000, 90001), T0)
    assert conn.tcp_state is TcpState.SYN_RECV


def test_challenge_ack_in_last_ack_is_not_taken_for_the_last_ack() -> None:
    t = Table()
    conn = _to_state(t, TcpState.LAST_ACK)
    t.send(ORIG, SYN)  # ignored; the server may answer with an RFC 5961 challenge ACK
    t.send(REPL, ACK)
    assert conn.tcp_state is TcpState.LAST_ACK
    t.send(ORIG, ACK)  # the real last ACK
    assert conn.tcp_state is TcpState.TIME_WAIT


def test_early_drop_finds_a_syn_flood_behind_established_connections() -> None:
    t = Table(max_entries=20)
    kept = [t.handshake(orig=tcp_tuple(sport=i)) for i in range(1, 11)]
    flood = [t.send(tcp_tuple(sport=100 + i), SYN).conn for i in range(10)]
    offloaded = flood[0]
    assert offloaded is not None
    t.ct.set_status(offloaded, Status.OFFLOAD)
    r = t.send(tcp_tuple(sport=999), SYN)
    assert r.verdict is CtVerdict.ACCEPT
    assert [c.dying for c in flood[:3]] == [False, True, False]  # oldest not offloaded
    assert not any(c.dying for c in kept) and t.ct.stats["early_drop"] == 1


def test_deleting_a_connection_this_table_never_held_only_marks_it_dying() -> None:
    t = Table()
    foreign = Conn((ORIG, REPL), status=Status.CONFIRMED, id=1)
    mine = t.send(U_ORIG).conn
    assert mine is not None and mine.id == 1
    t.ct.delete(foreign, T0)
    assert foreign.dying and not mine.dying and t.ct.lookup(U_ORIG) == (mine, ORIGINAL)
    assert t.kinds() == ["NEW"]


def test_timeout_for_an_unanswered_pickup_is_capped() -> None:
    t = Table()
    conn = t.send(ORIG, ACK).conn
    assert conn is not None and conn.tcp_state is TcpState.ESTABLISHED
    assert t.ct.timeout_for(conn) == 300 == left(conn)
