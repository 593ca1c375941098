"""Router-originated ICMP: well formed (checked with scapy), quoting limits, suppression rules."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.inet import ICMP, IP, UDP, IPerror, UDPerror
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    ICMPv6TimeExceeded,
    IPerror6,
    IPv6,
    IPv6ExtHdrFragment,
)
from scapy.layers.l2 import Ether

from controller.ip.icmp import (
    RateLimiter,
    Unreachable,
    dest_unreachable,
    echo_reply,
    may_send_error,
    packet_too_big,
    time_exceeded,
)
from controller.ip.packet import parse

ROUTER4 = ipaddress.ip_address("10.0.1.254").packed
ROUTER6 = ipaddress.ip_address("2001:db8:1::fe").packed
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:01:fe")


def v4(payload=None, **ip):  # type: ignore[no-untyped-def]
    ip = {"src": "10.0.1.1", "dst": "10.0.2.2", **ip}
    return parse(bytes(ETH / IP(**ip) / (payload if payload is not None else UDP(dport=33434))))


def v6(payload=None, **ip):  # type: ignore[no-untyped-def]
    ip = {"src": "2001:db8:1::1", "dst": "2001:db8:2::2", **ip}
    return parse(bytes(ETH / IPv6(**ip) / (payload if payload is not None else UDP(dport=33434))))


def valid_v4(datagram: bytes) -> IP:
    """Parse with scapy and check that every checksum scapy recomputes is unchanged."""
    pkt = IP(datagram)
    rebuilt = pkt.copy()
    del rebuilt.chksum
    del rebuilt[ICMP].chksum
    assert bytes(IP(bytes(rebuilt))) == datagram
    return pkt


def valid_v6(datagram: bytes) -> IPv6:
    pkt = IPv6(datagram)
    icmp = pkt.payload
    rebuilt = pkt.copy()
    del rebuilt.payload.cksum
    assert bytes(IPv6(bytes(rebuilt))) == datagram, icmp.summary()
    return pkt


def test_time_exceeded_v4() -> None:
    orig = v4(ttl=1)
    err = valid_v4(time_exceeded(orig, ROUTER4))
    assert (err.src, err.dst, err.ttl, err.tos) == ("10.0.1.254", "10.0.1.1", 64, 0xC0)
    assert (err[ICMP].type, err[ICMP].code) == (11, 0)
    assert err[IPerror].dst == "10.0.2.2" and err[IPerror].ttl == 1
    assert err[UDPerror].dport == 33434


def test_unreachable_codes_per_family() -> None:
    for why, code4, code6 in [
        (Unreachable.NET, 0, 0),
        (Unreachable.HOST, 1, 3),
        (Unreachable.PORT, 3, 4),
        (Unreachable.ADMIN, 13, 1),
    ]:
        assert valid_v4(dest_unreachable(v4(), ROUTER4, why))[ICMP].code == code4
        err6 = valid_v6(dest_unreachable(v6(), ROUTER6, why))
        assert err6[ICMPv6DestUnreach].code == code6


def test_frag_needed_carries_mtu_and_needs_df() -> None:
    big = v4(UDP() / (b"x" * 1600), flags="DF")
    err = valid_v4(packet_too_big(big, ROUTER4, 1500))
    assert (err[ICMP].type, err[ICMP].code, err[ICMP].nexthopmtu) == (3, 4, 1500)
    assert packet_too_big(v4(UDP() / (b"x" * 1600)), ROUTER4, 1500) is None


def test_packet_too_big_v6() -> None:
    err = valid_v6(packet_too_big(v6(UDP() / (b"x" * 1600)), ROUTER6, 1400))
    assert err[ICMPv6PacketTooBig].mtu == 1400
    assert len(bytes(err)) == 1280  # quoted up to the IPv6 minimum MTU


def test_quote_limits() -> None:
    err4 = time_exceeded(v4(UDP() / (b"x" * 1000), ttl=1), ROUTER4)
    assert len(err4) == 576
    small = time_exceeded(v4(UDP() / b"abc", ttl=1), ROUTER4)
    assert len(small) == 20 + 8 + 20 + 8 + 3  # whole datagram quoted
    # Ethernet padding is not quoted.
    padded = parse(bytes(ETH / IP(src="10.0.1.1", dst="10.0.2.2", ttl=1) / UDP()) + bytes(18))
    assert len(time_exceeded(padded, ROUTER4)) == 20 + 8 + 28
    err6 = valid_v6(time_exceeded(v6(hlim=1), ROUTER6))
    assert err6[ICMPv6TimeExceeded].type == 3 and err6[IPerror6].hlim == 1


def test_no_error_about_an_icmp_error() -> None:
    inner = IP(src="10.0.2.2", dst="10.0.1.1") / UDP()
    error4 = v4(ICMP(type=3, code=3) / inner)
    assert time_exceeded(error4, ROUTER4) is None
    assert time_exceeded(v4(ICMP(type=8), ttl=1), ROUTER4) is not None  # queries do get errors
    error6 = v6(ICMPv6DestUnreach() / IPv6())
    assert time_exceeded(error6, ROUTER6) is None
    assert time_exceeded(v6(ICMPv6EchoRequest()), ROUTER6) is not None


def test_no_error_for_non_first_fragments() -> None:
    assert time_exceeded(v4(b"x" * 16, frag=5, proto=17), ROUTER4) is None
    assert time_exceeded(v4(UDP() / (b"x" * 16), flags="MF"), ROUTER4) is not None
    later6 = v6(IPv6ExtHdrFragment(offset=8, nh=17) / (b"x" * 8))
    assert time_exceeded(later6, ROUTER6) is None
    first6 = v6(IPv6ExtHdrFragment(offset=0, m=1, nh=17) / UDP())
    assert time_exceeded(first6, ROUTER6) is not None


@pytest.mark.parametrize(
    "pkt",
    [
        v4(dst="224.0.0.5"),
        v4(dst="255.255.255.255"),
        v4(src="0.0.0.0"),
        v4(src="127.0.0.1"),
        v4(src="240.0.0.1"),
        v4(src="239.1.1.1"),
        v6(dst="ff02::1"),
        v6(src="::"),
        parse(bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / IP(src="10.0.1.1", dst="10.0.2.2") / UDP())),
    ],
)
def test_no_error_for_group_or_bad_sources(pkt) -> None:  # type: ignore[no-untyped-def]
    assert not may_send_error(pkt)
    assert dest_unreachable(pkt, ROUTER4 if pkt.family == 4 else ROUTER6, Unreachable.HOST) is None


def test_packet_too_big_v6_even_for_multicast() -> None:
    pkt = v6(UDP() / (b"x" * 1500), dst="ff0e::1")
    assert packet_too_big(pkt, ROUTER6, 1280) is not None
    assert time_exceeded(pkt, ROUTER6) is None


def test_echo_reply_v4() -> None:
    req = parse(bytes(ETH / IP(src="10.0.1.1", dst="10.0.1.254") / ICMP(id=7, seq=3) / b"ping"))
    rep = valid_v4(echo_reply(req))
    assert (rep.src, rep.dst) == ("10.0.1.254", "10.0.1.1")
    assert (rep[ICMP].type, rep[ICMP].id, rep[ICMP].seq, bytes(rep[ICMP].payload)) == (
        0,
        7,
        3,
        b"ping",
    )


def test_echo_reply_v6() -> None:
    req = v6(ICMPv6EchoRequest(id=7, seq=3, data=b"ping6"), dst="2001:db8:1::fe")
    rep = valid_v6(echo_reply(req))
    assert rep.src == "2001:db8:1::fe" and rep.dst == "2001:db8:1::1"
    assert (rep[ICMPv6EchoReply].id, rep[ICMPv6EchoReply].data) == (7, b"ping6")


def test_echo_reply_only_for_requests() -> None:
    assert echo_reply(v4(ICMP(type=0))) is None
    assert echo_reply(v4()) is None
    assert echo_reply(v6(ICMPv6EchoReply())) is None


def test_rate_limit_per_destination_burst_then_one_per_second() -> None:
    limiter = RateLimiter()
    err = time_exceeded(v4(ttl=1), ROUTER4)
    assert [limiter.allow(err, 0.0) for _ in range(8)] == [True] * 6 + [False] * 2
    assert limiter.suppressed == 2
    assert not limiter.allow(err, 0.5)
    assert limiter.allow(err, 1.0) and not limiter.allow(err, 1.0)
    other = time_exceeded(v4(src="10.0.1.2", ttl=1), ROUTER4)
    assert limiter.allow(other, 1.0)  # another destination has its own bucket


def test_rate_limit_spares_pmtu_and_echo() -> None:
    limiter = RateLimiter()
    big = v4(UDP() / (b"x" * 1600), flags="DF")
    frag_needed = packet_too_big(big, ROUTER4, 1500)
    too_big6 = packet_too_big(v6(UDP() / (b"x" * 1600)), ROUTER6, 1400)
    reply = echo_reply(parse(bytes(ETH / IP(src="10.0.1.1", dst="10.0.1.254") / ICMP())))
    for _ in range(20):
        assert limiter.allow(frag_needed, 0.0) and limiter.allow(too_big6, 0.0)
        assert limiter.allow(reply, 0.0)


def test_rate_limit_ipv6_and_global_budget() -> None:
    limiter = RateLimiter(msgs_per_sec=10, msgs_burst=3)
    errors = [
        dest_unreachable(v6(src=f"2001:db8:1::{i}"), ROUTER6, Unreachable.PORT) for i in range(1, 6)
    ]
    assert [limiter.allow(e, 0.0) for e in errors] == [True, True, True, False, False]
    assert limiter.allow(errors[3], 0.1)  # 10/s refills one credit in 0.1 s
    limiter.forget_before(0.05)
    assert len(limiter) == 1
