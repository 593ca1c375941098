"""The classic forwarding path: routing, TTL, NAT, ICMP errors, ARP/NDP, drops by reason.

The path is driven through a :class:`Router` whose ruleset has no ``flow add``, so every packet
takes it; outputs are checked with scapy.
"""

from __future__ import annotations

import random

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, IPOption_NOP, TCPerror
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6PacketTooBig,
    IPv6,
)
from scapy.layers.l2 import ARP, Ether

from controller.router import Router
from tests.unit.router_helpers import (
    H1,
    H1_6,
    H1_MAC,
    H2,
    H2_MAC,
    INTERNET,
    NAT,
    R1,
    R1_6,
    R1_MAC,
    R2,
    R2_MAC,
    arp_who_has,
    assert_checksums,
    ping4,
    router_config,
    tcp4,
    tcp4_reply,
    tcp6,
    udp4,
)

PLAIN = """
table inet filter {
    chain forward { type filter hook forward priority 0; policy accept; }
}
"""
NOW = 100.0


def make_router(ruleset: str = PLAIN, **kw: object) -> Router:
    return Router(router_config(ruleset, **kw))  # type: ignore[arg-type]


def only_send(router: Router, frame: bytes, port: int) -> tuple[int, Ether]:
    outcome = router.receive(frame, port, NOW)
    assert outcome.path in ("classic", "to_router"), outcome
    assert len(outcome.sends) == 1, outcome.sends
    out_port, out = outcome.sends[0]
    return out_port, assert_checksums(out)


def test_tcp_handshake_and_data_between_subnets_with_ttl_minus_one() -> None:
    r = make_router()
    for frame, in_port, want_port, src_mac, dst_mac in (
        (tcp4("S"), 1, 2, R2_MAC, H2_MAC),
        (tcp4_reply("SA"), 2, 1, R1_MAC, H1_MAC),
        (tcp4("A"), 1, 2, R2_MAC, H2_MAC),
        (tcp4("PA", payload=b"hello world"), 1, 2, R2_MAC, H2_MAC),
        (tcp4_reply("PA", payload=b"hi"), 2, 1, R1_MAC, H1_MAC),
    ):
        port, out = only_send(r, frame, in_port)
        sent = Ether(frame)
        assert port == want_port
        assert (out.src, out.dst) == (src_mac, dst_mac)
        assert out[IP].ttl == sent[IP].ttl - 1
        assert (out[IP].src, out[IP].dst) == (sent[IP].src, sent[IP].dst)
        assert bytes(out[TCP].payload) == bytes(sent[TCP].payload)
    (conn,) = list(r.conntrack)
    assert conn.tcp_state.name == "ESTABLISHED"


def test_ipv6_forwarded_with_hop_limit_minus_one() -> None:
    r = make_router()
    port, out = only_send(r, tcp6("S", hlim=9), 1)
    assert port == 2
    assert out[IPv6].hlim == 8 and out.dst == H2_MAC


def test_udp_checksum_zero_stays_zero() -> None:
    r = make_router()
    frame = Ether(udp4())
    frame[UDP].chksum = 0
    port, out = only_send(r, bytes(frame), 1)
    assert port == 2 and out[UDP].chksum == 0


def test_masquerade_rewrites_both_directions() -> None:
    r = make_router(PLAIN + NAT)
    port, out = only_send(r, tcp4("S", dst=INTERNET), 1)
    assert port == 2 and out.dst == H2_MAC  # via the gateway h2
    assert out[IP].src == R2 and out[IP].dst == INTERNET
    public_port = out[TCP].sport
    reply = tcp4_reply("SA", src=INTERNET, dst=R2, dport=public_port)
    port, back = only_send(r, reply, 2)
    assert port == 1 and back.dst == H1_MAC
    assert (back[IP].src, back[IP].dst) == (INTERNET, H1)
    assert (back[TCP].sport, back[TCP].dport) == (80, 40000)


def test_dnat_port_forward_rewrites_both_directions() -> None:
    r = make_router(PLAIN + NAT)
    syn = tcp4_reply("S", src=INTERNET, dst=R2, sport=5555, dport=8080)
    port, out = only_send(r, syn, 2)
    assert port == 1 and out.dst == H1_MAC
    assert (out[IP].src, out[IP].dst, out[TCP].dport) == (INTERNET, H1, 80)
    synack = tcp4("SA", src=H1, dst=INTERNET, sport=80, dport=5555)
    port, back = only_send(r, synack, 1)
    assert port == 2
    assert (back[IP].src, back[TCP].sport, back[IP].dst) == (R2, 8080, INTERNET)


def test_ttl_one_gets_time_exceeded_and_no_connection() -> None:
    r = make_router()
    frame = tcp4("S", ttl=1)
    outcome = r.receive(frame, 1, NOW)
    assert outcome.path == "drop" and outcome.reason == "ttl_exceeded"
    ((port, raw),) = outcome.sends
    err = assert_checksums(raw)
    assert port == 1 and err.dst == H1_MAC
    assert (err[IP].src, err[IP].dst) == (R1, H1)
    assert (err[ICMP].type, err[ICMP].code) == (11, 0)
    assert err[IPerror].dst == H2 and err[TCPerror].dport == 80
    assert len(r.conntrack) == 0  # ip_forward drops it before the forward hook: never confirmed
    assert r.snapshot(NOW)["stats"]["drops"]["ttl_exceeded"] == 1


def test_no_route_gets_net_unreachable() -> None:
    r = make_router()
    outcome = r.receive(tcp4("S", dst="192.0.2.1"), 1, NOW)
    assert outcome.reason == "no_route"
    ((port, raw),) = outcome.sends
    err = assert_checksums(raw)
    assert port == 1
    assert (err[ICMP].type, err[ICMP].code) == (3, 0) and err[IP].dst == H1


def test_oversize_with_df_gets_frag_needed_with_the_mtu() -> None:
    r = make_router(mtu2=1400)
    outcome = r.receive(tcp4("PA", payload=bytes(1400), df=True), 1, NOW)
    assert outcome.reason == "frag_needed"
    err = assert_checksums(outcome.sends[0][1])
    assert (err[ICMP].type, err[ICMP].code, err[ICMP].nexthopmtu) == (3, 4, 1400)


def test_oversize_without_df_is_fragmented() -> None:
    r = make_router(mtu2=1400)
    payload = bytes(range(256)) * 10
    outcome = r.receive(tcp4("PA", payload=payload), 1, NOW)
    assert outcome.path == "classic" and len(outcome.sends) == 2
    pieces = [assert_checksums(raw) for port, raw in outcome.sends if port == 2]
    first, second = pieces
    assert first[IP].flags == "MF" and first[IP].frag == 0 and first[IP].len <= 1400
    assert (first[IP].len - 20) % 8 == 0 and second[IP].flags == 0
    assert second[IP].frag * 8 == first[IP].len - 20
    assert all(p[IP].ttl == 63 and p[IP].id == first[IP].id for p in pieces)
    whole = bytes(first[IP].payload) + bytes(second[IP].payload)[: second[IP].len - 20]
    assert whole[20:] == payload  # TCP header, then the data in order


def test_oversize_with_options_without_df_is_a_counted_drop() -> None:
    r = make_router(mtu2=1400)
    frame = (
        Ether(dst=R1_MAC, src=H1_MAC)
        / IP(src=H1, dst=H2, options=[IPOption_NOP()] * 4)
        / TCP(dport=80, flags="PA")
        / bytes(1400)
    )
    outcome = r.receive(bytes(frame), 1, NOW)
    assert (outcome.path, outcome.reason) == ("drop", "fragment_with_options")


def test_oversize_ipv6_gets_packet_too_big() -> None:
    r = make_router(mtu2=1400)
    outcome = r.receive(tcp6("PA", payload=bytes(1400)), 1, NOW)
    assert outcome.reason == "packet_too_big"
    err = assert_checksums(outcome.sends[0][1])
    assert err[ICMPv6PacketTooBig].mtu == 1400 and err[IPv6].dst == H1_6


def test_arp_request_for_the_router_is_answered() -> None:
    r = make_router(static_neighbors=False)
    port, out = only_send(r, arp_who_has(R1), 1)
    assert port == 1 and out[ARP].op == 2
    assert (out[ARP].psrc, out[ARP].hwsrc, out[ARP].pdst) == (R1, R1_MAC, H1)
    assert r.neighbors.lookup(bytes([10, 0, 1, 1]), 1) is not None  # learnt from the request


def test_ndp_solicitation_for_the_router_is_answered() -> None:
    r = make_router(static_neighbors=False)
    ns = (
        Ether(dst="33:33:ff:00:00:fe", src=H1_MAC)
        / IPv6(src=H1_6, dst="ff02::1:ff00:fe", hlim=255)
        / ICMPv6ND_NS(tgt=R1_6)
        / ICMPv6NDOptSrcLLAddr(lladdr=H1_MAC)
    )
    port, out = only_send(r, bytes(ns), 1)
    assert port == 1 and out[ICMPv6ND_NA].tgt == R1_6 and out.dst == H1_MAC


def test_echo_to_the_router_is_answered() -> None:
    r = make_router()
    port, out = only_send(r, ping4(), 1)
    assert port == 1 and out[ICMP].type == 0 and out[IP].dst == H1
    ping6 = Ether(dst=R1_MAC, src=H1_MAC) / IPv6(src=H1_6, dst=R1_6) / ICMPv6EchoRequest(id=3)
    port, out = only_send(r, bytes(ping6), 1)
    assert out[ICMPv6EchoReply].id == 3


def test_other_local_traffic_is_a_counted_drop() -> None:
    r = make_router()
    outcome = r.receive(tcp4("S", dst=R1), 1, NOW)
    assert (outcome.path, outcome.reason) == ("drop", "local_unhandled")


def test_unknown_next_hop_queues_until_arp_answers() -> None:
    r = make_router(static_neighbors=False)
    r.receive(arp_who_has(R1), 1, NOW)  # h1 is learnt (STALE) from its request
    outcome = r.receive(tcp4("S"), 1, NOW)
    ((port, raw),) = outcome.sends
    request = Ether(raw)
    assert port == 2 and request[ARP].op == 1 and request[ARP].pdst == H2
    answer = Ether(dst=R2_MAC, src=H2_MAC) / ARP(op=2, hwsrc=H2_MAC, psrc=H2, hwdst=R2_MAC, pdst=R2)
    port, syn = only_send(r, bytes(answer), 2)
    assert port == 2 and syn.dst == H2_MAC and syn[TCP].flags == "S"


def test_forward_policy_drop_is_counted() -> None:
    r = make_router("table ip f { chain fw { type filter hook forward priority 0; policy drop; } }")
    outcome = r.receive(tcp4("S"), 1, NOW)
    assert (outcome.path, outcome.reason) == ("drop", "ruleset_forward")
    assert len(r.conntrack) == 0


def test_frame_for_another_mac_is_dropped() -> None:
    r = make_router()
    outcome = r.receive(tcp4("S", mac="00:00:00:00:99:99"), 1, NOW)
    assert outcome.reason == "otherhost"


def test_every_truncation_of_a_valid_frame_is_a_counted_drop_or_handled() -> None:
    r = make_router(PLAIN + NAT)
    frames = [tcp4("S", payload=b"abc"), tcp6("S"), udp4(), ping4(), arp_who_has(R1)]
    for frame in frames:
        for cut in range(len(frame)):
            outcome = r.receive(frame[:cut], 1, NOW)
            assert outcome.path in ("drop", "classic", "to_router")
    drops = r.snapshot(NOW)["stats"]["drops"]
    assert sum(drops.values()) >= sum(len(f) for f in frames) - 5 * 20  # most cuts are drops
    assert any(k.startswith("malformed_") for k in drops)


def test_random_bytes_never_raise() -> None:
    r = make_router(PLAIN + NAT)
    rng = random.Random(7)
    for _ in range(2000):
        frame = bytearray(rng.randrange(256) for _ in range(rng.randrange(80)))
        if rng.random() < 0.5 and len(frame) > 14:  # make some look like IPv4 to the router
            frame[0:6] = bytes.fromhex(R1_MAC.replace(":", ""))
            frame[12:14] = b"\x08\x00"
        outcome = r.receive(bytes(frame), rng.choice((1, 2, 7)), NOW)
        assert outcome.path in ("drop", "classic", "to_router")


@pytest.mark.parametrize("length_field", [0, 19, 41, 2000])
def test_wrong_ipv4_length_is_a_counted_drop(length_field: int) -> None:
    r = make_router()
    frame = Ether(tcp4("S"))
    frame[IP].len = length_field
    frame[IP].chksum = None
    outcome = r.receive(bytes(frame), 1, NOW)
    assert outcome.path == "drop" and outcome.reason.startswith("malformed_")


def test_bad_tcp_checksum_is_forwarded_untracked() -> None:
    r = make_router()
    frame = Ether(tcp4("S"))
    frame[TCP].chksum = 0x1234
    outcome = r.receive(bytes(frame), 1, NOW)
    assert outcome.path == "classic" and len(r.conntrack) == 0  # ct state invalid, no entry
    assert r.classic.counters["ct_bad_checksum"] == 1


def test_icmp_error_from_beyond_the_nat_reaches_the_inside_host() -> None:
    r = make_router(PLAIN + NAT)
    _, out = only_send(r, tcp4("S", dst=INTERNET), 1)
    quoted = out[IP]
    err = (
        Ether(dst=R2_MAC, src=H2_MAC)
        / IP(src=INTERNET, dst=R2)
        / ICMP(type=3, code=3)
        / bytes(quoted)[:28]
    )
    port, back = only_send(r, bytes(err), 2)
    assert port == 1 and back[IP].dst == H1
    assert back[IPerror].src == H1 and back[TCPerror].sport == 40000
    assert r.conntrack.stats["related"] == 1


def test_h2_host_reached_without_gateway() -> None:
    r = make_router()
    _, out = only_send(r, udp4(dst=H2), 1)
    assert out[IP].dst == H2 and out.dst == H2_MAC


def test_forward_chain_sees_the_address_after_dnat() -> None:
    ruleset = NAT + (
        "table inet filter { chain forward { type filter hook forward priority 0; policy drop;"
        " ip daddr 10.0.1.1 tcp dport 80 accept } }"
    )
    r = make_router(ruleset)
    syn = tcp4_reply("S", src=INTERNET, dst=R2, sport=5555, dport=8080)
    port, out = only_send(r, syn, 2)
    assert port == 1 and out[TCP].dport == 80
