"""Rewrites: incremental checksums must equal what scapy recomputes from scratch."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet as ScapyPacket

from controller.ip.mangle import (
    decrement_ttl,
    recompute_icmp_checksum,
    set_dst_addr,
    set_dst_port,
    set_macs,
    set_src_addr,
    set_src_port,
)
from controller.ip.packet import l4_checksum_ok, parse, parse_inner

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def recomputed(raw: bytes | bytearray) -> bytes:
    """The frame with every checksum scapy knows recomputed from scratch."""
    pkt = Ether(bytes(raw))
    for layer in (IP, TCP, UDP, ICMP):
        if layer in pkt and not (layer is UDP and IP in pkt and pkt[UDP].chksum == 0):
            del pkt[layer].chksum  # IPv4 UDP checksum 0 means "none" and must stay so
    for layer in (ICMPv6EchoRequest, ICMPv6EchoReply):
        if layer in pkt:
            del pkt[layer].cksum
    return bytes(pkt.__class__(bytes(pkt)))


def v4(proto: ScapyPacket) -> bytes:
    return bytes(ETH / IP(src="10.0.0.1", dst="192.168.1.2", ttl=64) / proto)


def v6(proto: ScapyPacket) -> bytes:
    return bytes(ETH / IPv6(src="2001:db8::1", dst="2001:db8:1::2", hlim=64) / proto)


FRAMES = {
    "tcp4": v4(TCP(sport=40000, dport=80, flags="S") / b"hello"),
    "udp4": v4(UDP(sport=5000, dport=53) / b"query"),
    "icmp4": v4(ICMP(id=300, seq=1) / b"ping"),
    "tcp6": v6(TCP(sport=40000, dport=443, flags="A") / b"hello6"),
    "udp6": v6(UDP(sport=5000, dport=53) / b"q6"),
    "icmp6": v6(ICMPv6EchoRequest(id=300, seq=2)),
}
ADDR4 = st.integers(0, 2**32 - 1).map(lambda n: n.to_bytes(4, "big"))
ADDR6 = st.integers(0, 2**128 - 1).map(lambda n: n.to_bytes(16, "big"))


@settings(max_examples=40)
@given(st.sampled_from(sorted(FRAMES)), st.data())
def test_nat_matches_full_recompute(name: str, data: st.DataObject) -> None:
    pkt = parse(bytearray(FRAMES[name]))
    addrs = ADDR4 if pkt.family == 4 else ADDR6
    set_src_addr(pkt, data.draw(addrs))
    set_dst_addr(pkt, data.draw(addrs))
    set_src_port(pkt, data.draw(st.integers(0, 0xFFFF)))
    if pkt.proto in (6, 17):
        set_dst_port(pkt, data.draw(st.integers(0, 0xFFFF)))
    decrement_ttl(pkt)
    assert bytes(pkt.frame) == recomputed(pkt.frame)
    assert l4_checksum_ok(parse(pkt.frame))


def test_fields_follow_the_rewrite() -> None:
    pkt = parse(bytearray(FRAMES["tcp4"]))
    set_src_addr(pkt, bytes([1, 2, 3, 4]))
    set_dst_port(pkt, 8080)
    decrement_ttl(pkt)
    again = parse(pkt.frame)
    assert again.src == pkt.src == bytes([1, 2, 3, 4])
    assert again.dport == pkt.dport == 8080
    assert again.ttl == pkt.ttl == 63


def test_ipv6_hop_limit() -> None:
    pkt = parse(bytearray(FRAMES["udp6"]))
    decrement_ttl(pkt)
    assert IPv6(bytes(pkt.frame[14:])).hlim == 63 == pkt.ttl


def test_icmp4_address_change_leaves_icmp_checksum() -> None:
    pkt = parse(bytearray(FRAMES["icmp4"]))
    before = bytes(pkt.frame[pkt.l4 + 2 : pkt.l4 + 4])
    set_dst_addr(pkt, bytes([10, 9, 8, 7]))
    assert bytes(pkt.frame[pkt.l4 + 2 : pkt.l4 + 4]) == before
    assert ipaddress.ip_address(Ether(bytes(pkt.frame))[IP].dst) == ipaddress.ip_address("10.9.8.7")


def test_echo_identifier_is_the_port() -> None:
    pkt = parse(bytearray(FRAMES["icmp6"]))
    set_dst_port(pkt, 4242)
    assert pkt.icmp_id == 4242
    assert Ether(bytes(pkt.frame))[ICMPv6EchoRequest].id == 4242
    assert bytes(pkt.frame) == recomputed(pkt.frame)


def test_udp4_zero_checksum_stays_zero() -> None:
    raw = bytearray(FRAMES["udp4"])
    raw[40:42] = b"\0\0"
    pkt = parse(raw)
    set_src_addr(pkt, bytes([172, 16, 0, 1]))
    set_src_port(pkt, 1)
    assert raw[40:42] == b"\0\0"
    assert bytes(raw) == recomputed(raw)  # the IPv4 header checksum was still fixed


def test_udp_result_zero_becomes_ffff() -> None:
    # Find a source port that makes the real checksum come out as 0 (sent as 0xffff).
    base = Ether(FRAMES["udp6"])
    target = base[UDP].chksum
    for port in range(1, 0x10000):
        pkt = parse(bytearray(FRAMES["udp6"]))
        set_src_port(pkt, port)
        check = int.from_bytes(pkt.frame[60:62], "big")
        if check == 0xFFFF:
            assert bytes(pkt.frame) == recomputed(pkt.frame)
            return
        assert check != 0
    pytest.fail(f"no port zeroes the checksum (from {target:#x})")


def test_non_first_fragment_only_ip_header_changes() -> None:
    raw = bytearray(bytes(ETH / IP(src="10.0.0.1", dst="10.0.0.2", frag=10, proto=6) / (b"x" * 24)))
    pkt = parse(raw)
    set_src_addr(pkt, bytes([8, 8, 8, 8]))
    assert raw[34:] == b"x" * 24
    assert bytes(raw) == recomputed(raw)


def test_ttl_decrement_like_ip_decrease_ttl() -> None:
    # The kernel adds htons(0x0100) with end-around carry; a checksum of 0xfeff becomes 0.
    raw = bytearray(FRAMES["udp4"])
    pkt = parse(raw)
    raw[24:26] = b"\xfe\xff"
    decrement_ttl(pkt)
    assert raw[24:26] == b"\x00\x00"


def test_set_macs() -> None:
    pkt = parse(bytearray(FRAMES["tcp4"]))
    set_macs(pkt, b"\xaa" * 6, b"\xbb" * 6)
    eth = Ether(bytes(pkt.frame))
    assert (eth.src, eth.dst) == ("aa:aa:aa:aa:aa:aa", "bb:bb:bb:bb:bb:bb")


def test_bad_requests_raise_value_error() -> None:
    pkt = parse(bytearray(FRAMES["tcp4"]))
    with pytest.raises(ValueError):
        set_src_addr(pkt, bytes(16))
    with pytest.raises(ValueError):
        set_src_port(pkt, 70000)
    zero = parse(bytearray(v4(UDP())))
    zero.frame[22] = zero.ttl = 0
    with pytest.raises(ValueError):
        decrement_ttl(zero)
    arp = parse(bytes(ETH / ARP()))
    with pytest.raises(ValueError):
        decrement_ttl(arp)


def test_icmp_error_reverse_nat_restores_the_original_quote() -> None:
    # A masqueraded UDP query (10.0.1.1:40000 -> 192.0.2.1:1024) draws a port unreachable; the
    # router translates the quote back and sends the error to the inside host.
    original = bytes(IP(src="10.0.1.1", dst="8.8.8.8", ttl=63) / UDP(sport=40000, dport=53) / b"q")
    natted = parse(bytearray(bytes(ETH / IP(original))))
    set_src_addr(natted, bytes([192, 0, 2, 1]))
    set_src_port(natted, 1024)
    quote = bytes(natted.frame[14:])
    err = parse(
        bytearray(bytes(ETH / IP(src="8.8.8.8", dst="192.0.2.1") / ICMP(type=3, code=3) / quote))
    )
    inner = parse_inner(err)
    set_src_addr(inner, bytes([10, 0, 1, 1]))
    set_src_port(inner, 40000)
    recompute_icmp_checksum(err)
    set_dst_addr(err, bytes([10, 0, 1, 1]))
    expected = ETH / IP(src="8.8.8.8", dst="10.0.1.1") / ICMP(type=3, code=3) / original
    assert bytes(err.frame) == bytes(expected)


def test_icmp_error_with_cut_tcp_quote_keeps_unquoted_checksum_alone() -> None:
    original = bytes(IP(src="10.0.1.1", dst="8.8.8.8") / TCP(sport=40000, dport=80))
    natted = parse(bytearray(bytes(ETH / IP(original))))
    set_src_addr(natted, bytes([192, 0, 2, 1]))
    quote = bytes(natted.frame[14 : 14 + 28])  # IP header + 8 bytes: no TCP checksum
    err = parse(bytearray(bytes(ETH / IP(src="8.8.8.8", dst="192.0.2.1") / ICMP(type=11) / quote)))
    inner = parse_inner(err)
    set_src_addr(inner, bytes([10, 0, 1, 1]))
    recompute_icmp_checksum(err)
    set_dst_addr(err, bytes([10, 0, 1, 1]))
    expected = ETH / IP(src="8.8.8.8", dst="10.0.1.1") / ICMP(type=11) / original[:28]
    assert bytes(err.frame) == bytes(expected)


def test_icmpv6_error_reverse_nat() -> None:
    original = bytes(IPv6(src="fd00::1", dst="2001:db8::9") / UDP(sport=5000, dport=53))
    natted = parse(bytearray(bytes(ETH / IPv6(original))))
    set_src_addr(natted, bytes.fromhex("20010db8000000000000000000000001"))
    quote = bytes(natted.frame[14:])
    err = parse(
        bytearray(
            bytes(
                ETH / IPv6(src="2001:db8::9", dst="2001:db8::1") / ICMPv6DestUnreach(code=4) / quote
            )
        )
    )
    set_src_addr(parse_inner(err), ipaddress.ip_address("fd00::1").packed)
    recompute_icmp_checksum(err)
    set_dst_addr(err, ipaddress.ip_address("fd00::1").packed)
    expected = ETH / IPv6(src="2001:db8::9", dst="fd00::1") / ICMPv6DestUnreach(code=4) / original
    assert bytes(err.frame) == bytes(expected)


def test_recompute_refuses_non_icmp() -> None:
    with pytest.raises(ValueError):
        recompute_icmp_checksum(parse(bytearray(FRAMES["udp4"])))
