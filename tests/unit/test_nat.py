"""NAT bindings: masquerade, SNAT ranges, DNAT port forwards, unique tuples, ICMP errors."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, UDPerror
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet as ScapyPacket

from controller.ip.frames import ip_frame
from controller.ip.icmp import time_exceeded
from controller.ip.packet import Packet, l4_checksum_ok, parse, parse_inner
from controller.netfilter.conntrack import Conntrack, CtVerdict, reply_tuple
from controller.netfilter.ct import (
    IPPROTO_GRE,
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
from controller.netfilter.nat import (
    Manip,
    Nat,
    NatRange,
    RelatedRewrite,
    Rewrite,
    mangle_postrouting,
    mangle_prerouting,
    translate,
    translate_related,
)
from inet.checksum import ones_sum

T0 = 50.0
SYN, SYNACK, ACK = 0x02, 0x12, 0x10


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


H1, H2 = ip("10.0.1.1"), ip("10.0.1.2")
WAN, DNS, X = ip("192.0.2.1"), ip("8.8.8.8"), ip("203.0.113.9")
CLIENT, SERVER, ROUTER_IN = ip("198.51.100.7"), ip("10.0.2.5"), ip("10.0.2.254")


@dataclass(frozen=True)
class Action:
    """The shape of ``controller.netfilter.ruleset``'s NatAction."""

    kind: str
    addr: bytes | None = None
    port_min: int | None = None
    port_max: int | None = None


MASQ = Action("masquerade")


class Router:
    def __init__(self, seed: int = 1) -> None:
        self.ct = Conntrack()
        self.nat = Nat(self.ct, rng=random.Random(seed))

    def new(self, tup: CtTuple, *actions: Action, egress: bytes | None = WAN, **kw: object) -> Conn:
        """First packet: track, DNAT/SNAT as the ruleset says, confirm."""
        flags = SYN if tup.proto == IPPROTO_TCP else 0
        r = self.ct.track(tup, tcp_flags=flags, now=T0, **kw)  # type: ignore[arg-type]
        assert r.conn is not None
        for action in actions:
            assert self.nat.apply(r.conn, action, egress_addr=egress)
        return r.conn

    def open(self, tup: CtTuple, *actions: Action, **kw: object) -> Conn:
        conn = self.new(tup, *actions, **kw)
        assert self.ct.confirm(conn, T0)
        return conn


def udp(src: bytes, sport: int, dst: bytes, dport: int) -> CtTuple:
    return CtTuple(4, IPPROTO_UDP, src, dst, sport, dport)


def tcp(src: bytes, sport: int, dst: bytes, dport: int) -> CtTuple:
    return CtTuple(4, IPPROTO_TCP, src, dst, sport, dport)


def test_masquerade_rewrites_the_reply_tuple_and_translates_both_ways() -> None:
    r = Router()
    orig = udp(H1, 40000, DNS, 53)
    conn = r.open(orig, MASQ)
    assert conn.tuples == (orig, udp(DNS, 53, WAN, 40000))
    assert conn.status & Status.SRC_NAT and not conn.status & Status.DST_NAT
    assert conn.status & Status.SRC_NAT_DONE
    assert translate(conn, ORIGINAL) == Rewrite(WAN, 40000, DNS, 53)
    assert translate(conn, REPLY) == Rewrite(DNS, 53, H1, 40000)
    back = r.ct.track(udp(DNS, 53, WAN, 40000), now=T0 + 1)
    assert back.conn is conn and back.direction == REPLY
    assert r.nat.stats["masquerade"] == 1


def test_dnat_port_forward_both_ways() -> None:
    r = Router()
    orig = tcp(CLIENT, 5555, WAN, 8080)
    conn = r.open(orig, Action("dnat", SERVER, 80, 80))
    assert conn.tuples[REPLY] == tcp(SERVER, 80, CLIENT, 5555)
    assert conn.status & Status.DST_NAT and not conn.status & Status.SRC_NAT
    assert translate(conn, ORIGINAL) == Rewrite(CLIENT, 5555, SERVER, 80)
    assert translate(conn, REPLY) == Rewrite(WAN, 8080, CLIENT, 5555)
    synack = r.ct.track(tcp(SERVER, 80, CLIENT, 5555), tcp_flags=SYNACK, now=T0)
    assert synack.conn is conn and synack.direction == REPLY


def test_dnat_to_an_address_keeps_the_port() -> None:
    r = Router()
    conn = r.open(tcp(CLIENT, 5555, WAN, 443), Action("dnat", SERVER))
    assert translate(conn, ORIGINAL) == Rewrite(CLIENT, 5555, SERVER, 443)


def test_dnat_then_snat_on_the_same_connection() -> None:
    r = Router()
    conn = r.open(
        tcp(CLIENT, 5555, WAN, 8080), Action("dnat", SERVER, 80), Action("snat", ROUTER_IN)
    )
    assert conn.tuples[REPLY] == tcp(SERVER, 80, ROUTER_IN, 5555)
    assert conn.status & Status.NAT_MASK == Status.NAT_MASK
    assert translate(conn, ORIGINAL) == Rewrite(ROUTER_IN, 5555, SERVER, 80)
    assert translate(conn, REPLY) == Rewrite(WAN, 8080, CLIENT, 5555)


def test_source_port_clash_picks_another_port() -> None:
    r = Router()
    first = r.open(udp(H1, 40000, DNS, 53), MASQ)
    second = r.open(udp(H2, 40000, DNS, 53), MASQ)
    port = second.tuples[REPLY].dport
    assert first.tuples[REPLY].dport == 40000
    assert port != 40000 and 1024 <= port <= 65535
    assert translate(second, ORIGINAL) == Rewrite(WAN, port, DNS, 53)
    assert r.ct.lookup(udp(DNS, 53, WAN, port)) == (second, REPLY)
    assert r.nat.stats["remapped"] == 1


@pytest.mark.parametrize(("sport", "low", "high"), [(123, 1, 511), (800, 600, 1023)])
def test_clashing_privileged_ports_stay_in_their_class(sport: int, low: int, high: int) -> None:
    r = Router()
    r.open(udp(H1, sport, DNS, 53), MASQ)
    second = r.open(udp(H2, sport, DNS, 53), MASQ)
    assert second.tuples[REPLY].dport != sport
    assert low <= second.tuples[REPLY].dport <= high


def test_snat_port_range_is_used_then_exhausted() -> None:
    r = Router()
    ranged = Action("snat", WAN, 2000, 2001)
    a = r.open(udp(H1, 40000, DNS, 53), ranged)
    b = r.open(udp(H2, 40000, DNS, 53), ranged)
    assert {a.tuples[REPLY].dport, b.tuples[REPLY].dport} == {2000, 2001}
    third = r.ct.track(udp(ip("10.0.1.3"), 40000, DNS, 53), now=T0).conn
    assert third is not None
    assert not r.nat.apply(third, ranged)
    assert r.nat.stats["exhausted"] == 1


def test_snat_keeps_a_port_already_in_range() -> None:
    r = Router()
    conn = r.open(udp(H1, 2001, DNS, 53), Action("snat", WAN, 2000, 2010))
    assert conn.tuples[REPLY].dport == 2001


def test_single_port_mapping_already_taken_is_exhausted() -> None:
    r = Router()
    one = Action("snat", WAN, 3000, 3000)
    r.open(udp(H1, 40000, DNS, 53), one)
    clash = r.new(udp(H2, 40000, DNS, 53))
    assert not r.nat.apply(clash, one) and r.nat.stats["exhausted"] == 1
    assert clash.tuples[REPLY] == udp(DNS, 53, H2, 40000)  # untouched: the packet is dropped


def test_icmp_echo_clash_changes_the_identifier() -> None:
    r = Router()
    a = r.open(CtTuple(4, IPPROTO_ICMP, H1, DNS, 7, 0), MASQ, icmp_type=8)
    b = r.open(CtTuple(4, IPPROTO_ICMP, H2, DNS, 7, 0), MASQ, icmp_type=8)
    assert a.tuples[REPLY] == CtTuple(4, IPPROTO_ICMP, DNS, WAN, 7, 0)
    new_id = b.tuples[REPLY].sport
    assert new_id != 7 and b.tuples[REPLY].dport == 0
    assert translate(b, ORIGINAL) == Rewrite(WAN, new_id, DNS, 0)
    assert translate(b, REPLY) == Rewrite(DNS, 7, H2, 0)
    reply = r.ct.track(b.tuples[REPLY], icmp_type=0, now=T0)
    assert reply.conn is b and reply.verdict is CtVerdict.ACCEPT


def test_null_binding_keeps_reply_tuples_unique() -> None:
    r = Router()
    r.open(udp(H1, 40000, DNS, 53), MASQ)
    plain = r.new(udp(H1, 40001, DNS, 53))
    assert r.nat.null_binding(plain)
    assert plain.tuples[REPLY] == udp(DNS, 53, H1, 40001) and not plain.status & Status.SRC_NAT
    own = r.new(udp(WAN, 40000, DNS, 53))  # the router itself, same reply tuple as the masquerade
    assert r.nat.null_binding(own)
    assert own.status & Status.SRC_NAT and own.tuples[REPLY].dport != 40000
    assert r.ct.confirm(own, T0)


def test_first_binding_per_manip_wins() -> None:
    r = Router()
    conn = r.new(udp(H1, 40000, DNS, 53), Action("snat", WAN))
    assert r.nat.apply(conn, Action("snat", X))
    assert r.nat.null_binding(conn)
    assert conn.tuples[REPLY].dst == WAN


def test_gre_has_no_ports_to_move() -> None:
    r = Router()
    r.open(CtTuple(4, IPPROTO_GRE, H1, DNS, 0, 0), MASQ)
    clash = r.new(CtTuple(4, IPPROTO_GRE, H2, DNS, 0, 0))
    assert not r.nat.apply(clash, MASQ, egress_addr=WAN) and r.nat.stats["exhausted"] == 1


def test_ipv6_masquerade() -> None:
    r = Router()
    h, s, wan = ip("2001:db8:1::1"), ip("2001:db8:9::53"), ip("2001:db8:ff::1")
    conn = r.open(CtTuple(6, IPPROTO_UDP, h, s, 1000, 53), MASQ, egress=wan)
    assert translate(conn, ORIGINAL) == Rewrite(wan, 1000, s, 53)


def test_bad_actions_are_refused_and_counted() -> None:
    r = Router()
    conn = r.new(udp(H1, 40000, DNS, 53))
    assert not r.nat.apply(conn, MASQ, egress_addr=None)
    assert not r.nat.apply(conn, Action("snat", ip("2001:db8::1")))
    assert r.nat.stats["bad_address"] == 2 and conn.tuples[REPLY] == reply_tuple(conn.tuples[0])
    assert not r.nat.apply(conn, Action("redirect"), egress_addr=None)
    with pytest.raises(ValueError, match="unknown NAT action"):
        r.nat.apply(conn, Action("netmap"))


def test_bindings_are_refused_after_confirm() -> None:
    r = Router()
    conn = r.open(udp(H1, 40000, DNS, 53))
    with pytest.raises(ValueError, match="confirmed"):
        r.nat.setup(conn, NatRange(WAN), Manip.SRC)


def test_random_range_stays_within_bounds_and_is_seeded() -> None:
    ports = []
    for _ in range(2):
        r = Router(seed=7)
        conn = r.open(udp(H1, 40000, DNS, 53))
        clash = r.new(udp(H2, 40000, DNS, 53))
        assert r.nat.setup(clash, NatRange(H1, 5000, 5100, random=True), Manip.SRC)
        ports.append(clash.tuples[REPLY].dport)
        assert conn.tuples[REPLY].dport == 40000
    assert ports[0] == ports[1] and 5000 <= ports[0] <= 5100


def test_icmp_error_to_a_masqueraded_host_is_translated() -> None:
    r = Router()
    conn = r.open(udp(H1, 40000, DNS, 53), MASQ)
    quoted = udp(WAN, 40000, DNS, 53)  # what the far router saw and quotes
    found = r.ct.related(quoted)
    assert found == (conn, REPLY)
    out = translate_related(conn, REPLY, X, WAN)
    assert out == RelatedRewrite(X, H1, Rewrite(H1, 40000, DNS, 53))


def test_icmp_error_about_a_port_forward_comes_from_the_public_address() -> None:
    r = Router()
    conn = r.open(tcp(CLIENT, 5555, WAN, 8080), Action("dnat", SERVER, 80))
    inside_router = ip("10.0.2.1")
    assert r.ct.related(tcp(CLIENT, 5555, SERVER, 80)) == (conn, REPLY)
    out = translate_related(conn, REPLY, inside_router, CLIENT)
    assert out == RelatedRewrite(WAN, CLIENT, Rewrite(CLIENT, 5555, WAN, 8080))
    # An error about the server's translated reply, sent to the public address, goes inside.
    assert r.ct.related(tcp(WAN, 8080, CLIENT, 5555)) == (conn, ORIGINAL)
    back = translate_related(conn, ORIGINAL, X, WAN)
    assert back == RelatedRewrite(X, SERVER, Rewrite(SERVER, 80, CLIENT, 5555))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 6), st.sampled_from([80, 1023, 40000])), max_size=60),
    st.sampled_from([None, (2000, 2015)]),
)
def test_masqueraded_reply_tuples_stay_unique(
    flows: list[tuple[int, int]], ports: tuple[int, int] | None
) -> None:
    r = Router()
    action = Action("masquerade", None, *(ports or (None, None)))
    replies = set()
    for host, sport in flows:
        conn = r.ct.track(udp(bytes([10, 0, 1, host]), sport, DNS, 53), now=T0).conn
        assert conn is not None
        if conn.confirmed:
            continue  # the same flow again
        if not r.nat.apply(conn, action, egress_addr=WAN):
            assert ports is not None and len(replies) == 16  # only a full range refuses
            continue
        assert r.ct.confirm(conn, T0)
        reply = conn.tuples[REPLY]
        assert reply not in replies and reply.dst == WAN
        if ports is not None:
            assert 2000 <= reply.dport <= 2015
        replies.add(reply)


# -- packets ------------------------------------------------------------------------------------

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:01:fe")


def frame_of(layers: ScapyPacket) -> Packet:
    return parse(bytes(ETH / layers))


def ip_header_ok(pkt: Packet) -> bool:
    return pkt.family == 6 or ones_sum(memoryview(pkt.frame)[pkt.l3 : pkt.l3 + 20]) == 0xFFFF


def forward(r: Router, pkt: Packet) -> Packet:
    """Conntrack, then the two NAT hooks, as the classic path runs them."""
    hit = r.ct.track_packet(pkt, T0)
    assert hit.conn is not None
    mangle_prerouting(pkt, hit.conn, hit.direction)
    mangle_postrouting(pkt, hit.conn, hit.direction)
    assert ip_header_ok(pkt) and l4_checksum_ok(pkt)
    return parse(pkt.frame)


def test_masqueraded_packets_are_rewritten_both_ways() -> None:
    r = Router()
    r.open(udp(H2, 40000, DNS, 53), MASQ)  # takes port 40000 on WAN
    out = frame_of(IP(src="10.0.1.1", dst="8.8.8.8") / UDP(sport=40000, dport=53) / b"query")
    conn = r.ct.track_packet(out, T0).conn
    assert conn is not None and r.nat.apply(conn, MASQ, egress_addr=WAN)
    assert r.ct.confirm(conn, T0)
    port = conn.tuples[REPLY].dport
    mangle_prerouting(out, conn, ORIGINAL)
    mangle_postrouting(out, conn, ORIGINAL)
    sent = Ether(bytes(out.frame))
    assert (sent[IP].src, sent[UDP].sport, sent[IP].dst, sent[UDP].dport) == (
        "192.0.2.1",
        port,
        "8.8.8.8",
        53,
    )
    assert ip_header_ok(out) and l4_checksum_ok(out)
    back = forward(r, frame_of(IP(src="8.8.8.8", dst="192.0.2.1") / UDP(sport=53, dport=port)))
    assert (back.dst, back.dport, back.src, back.sport) == (H1, 40000, DNS, 53)


def test_port_forward_is_rewritten_both_ways() -> None:
    r = Router()
    syn = frame_of(IP(src="198.51.100.7", dst="192.0.2.1") / TCP(sport=5555, dport=8080, flags="S"))
    conn = r.ct.track_packet(syn, T0).conn
    assert conn is not None and r.nat.apply(conn, Action("dnat", SERVER, 80))
    mangle_prerouting(syn, conn, ORIGINAL)
    assert (syn.dst, syn.dport) == (SERVER, 80)  # before routing: the route is to the server
    mangle_postrouting(syn, conn, ORIGINAL)
    assert ip_header_ok(syn) and l4_checksum_ok(syn) and (syn.src, syn.sport) == (CLIENT, 5555)
    assert r.ct.confirm(conn, T0)
    synack = frame_of(
        IP(src="10.0.2.5", dst="198.51.100.7") / TCP(sport=80, dport=5555, flags="SA")
    )
    back = forward(r, synack)
    assert (back.src, back.sport, back.dst, back.dport) == (WAN, 8080, CLIENT, 5555)


def test_masqueraded_echo_identifier_is_rewritten_both_ways() -> None:
    r = Router()
    r.open(CtTuple(4, IPPROTO_ICMP, H2, DNS, 7, 0), MASQ, icmp_type=8)
    ping = frame_of(IP(src="10.0.1.1", dst="8.8.8.8") / ICMP(id=7, seq=1) / b"ping")
    conn = r.ct.track_packet(ping, T0).conn
    assert conn is not None and r.nat.apply(conn, MASQ, egress_addr=WAN)
    assert r.ct.confirm(conn, T0)
    mangle_prerouting(ping, conn, ORIGINAL)
    assert ping.icmp_id == 7  # source NAT, identifier included, happens after routing
    mangle_postrouting(ping, conn, ORIGINAL)
    new_id = conn.tuples[REPLY].sport
    assert ping.icmp_id == new_id != 7 and ping.src == WAN and l4_checksum_ok(ping)
    pong = forward(r, frame_of(IP(src="8.8.8.8", dst="192.0.2.1") / ICMP(type=0, id=new_id)))
    assert (pong.dst, pong.icmp_id) == (H1, 7)


def test_icmp_error_for_a_masqueraded_flow_reaches_the_inside_host() -> None:
    r = Router()
    r.open(udp(H2, 40000, DNS, 53), MASQ)
    conn = r.open(udp(H1, 40000, DNS, 53), MASQ)
    port = conn.tuples[REPLY].dport
    sent = frame_of(IP(src="192.0.2.1", dst="8.8.8.8", ttl=1) / UDP(sport=port, dport=53) / b"q")
    quoted = time_exceeded(sent, X)
    assert quoted is not None
    error = parse(ip_frame(bytes(6), bytes(6), quoted))
    back = forward(r, error)
    assert (back.src, back.dst) == (X, H1)  # the far router stays visible
    inner = parse_inner(back)
    assert (inner.src, inner.sport, inner.dst, inner.dport) == (H1, 40000, DNS, 53)
    assert ones_sum(memoryview(inner.frame)[inner.l3 : inner.l3 + 20]) == 0xFFFF
    assert Ether(bytes(back.frame))[UDPerror].sport == 40000


def test_icmp_error_about_a_port_forward_comes_from_the_public_address_v6() -> None:
    r = Router()
    client, public, server = ip("2001:db8:c::7"), ip("2001:db8:ff::1"), ip("2001:db8:2::5")
    conn = r.open(CtTuple(6, IPPROTO_TCP, client, public, 5555, 8080), Action("dnat", server, 80))
    forwarded = frame_of(
        IPv6(src="2001:db8:c::7", dst="2001:db8:2::5", hlim=1) / TCP(sport=5555, dport=80)
    )
    quoted = time_exceeded(forwarded, ip("2001:db8:2::1"))
    assert quoted is not None
    back = forward(r, parse(ip_frame(bytes(6), bytes(6), quoted)))
    assert (back.src, back.dst) == (public, client) and back.proto == IPPROTO_ICMPV6
    inner = parse_inner(back)
    assert (inner.dst, inner.dport) == (public, 8080)
    assert r.ct.lookup(conn.tuples[REPLY]) == (conn, REPLY)


def test_a_remapped_source_keeps_its_outside_port_for_other_destinations() -> None:
    r = Router()
    r.open(udp(H2, 40000, DNS, 53), MASQ)  # H2 holds WAN:40000 towards DNS
    first = r.open(udp(H1, 40000, DNS, 53), MASQ)
    port = first.tuples[REPLY].dport
    assert port != 40000
    second = r.open(udp(H1, 40000, X, 123), MASQ)  # WAN:40000 would be free towards X
    assert second.tuples[REPLY] == udp(X, 123, WAN, port)
    r.ct.delete(first, T0)
    third = r.open(udp(H1, 40000, ip("203.0.113.10"), 123), MASQ)
    assert third.tuples[REPLY].dport == port  # the second connection still holds the mapping
