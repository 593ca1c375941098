"""Parsing: fields of valid frames, and Malformed (never another exception) for bad ones."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether

from controller.ip.packet import (
    ETH_P_ARP,
    ETH_P_IP,
    TCP_ACK,
    TCP_SYN,
    Malformed,
    l4_checksum_ok,
    parse,
    parse_inner,
)
from inet.checksum import checksum

MAC1, MAC2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
ETH = Ether(src=MAC1, dst=MAC2)

VALID_FRAMES = {
    "tcp4": ETH / IP(src="10.0.0.1", dst="10.0.1.2", ttl=7) / TCP(sport=1, dport=2) / b"data",
    "tcp4_options": ETH
    / IP(src="10.0.0.1", dst="10.0.1.2", options=b"\x01\x01\x01\x00")
    / TCP(options=[("MSS", 1460)]),
    "udp4": ETH / IP(src="10.0.0.1", dst="10.0.1.2") / UDP(sport=53, dport=5353) / (b"x" * 9),
    "icmp4": ETH / IP(src="10.0.0.1", dst="10.0.1.2") / ICMP(id=77, seq=1) / b"ping",
    "tcp6": ETH / IPv6(src="2001:db8::1", dst="2001:db8:1::2") / TCP(sport=5, dport=6),
    "udp6": ETH / IPv6(src="2001:db8::1", dst="2001:db8:1::2") / UDP(sport=7, dport=8) / b"zz",
    "echo6": ETH / IPv6(src="2001:db8::1", dst="2001:db8:1::2") / ICMPv6EchoRequest(id=9),
    "ns": ETH
    / IPv6(src="2001:db8::1", dst="ff02::1:ff00:2", hlim=255)
    / ICMPv6ND_NS(tgt="2001:db8::2")
    / ICMPv6NDOptSrcLLAddr(lladdr=MAC1),
    "arp": ETH / ARP(op=1, hwsrc=MAC1, psrc="10.0.0.1", pdst="10.0.0.254"),
    "vlan_udp4": ETH / Dot1Q(vlan=42) / IP(src="1.2.3.4", dst="5.6.7.8") / UDP(),
}


def frame(name: str) -> bytes:
    return bytes(VALID_FRAMES[name])


def test_tcp4_fields() -> None:
    pkt = parse(
        bytes(
            ETH
            / IP(src="10.0.0.1", dst="10.0.1.2", ttl=7, flags="DF")
            / TCP(sport=1000, dport=80, flags="SA")
            / b"data"
        )
    )
    assert (pkt.family, pkt.proto, pkt.ttl) == (4, 6, 7)
    assert pkt.src == bytes([10, 0, 0, 1]) and pkt.dst == bytes([10, 0, 1, 2])
    assert (pkt.sport, pkt.dport, pkt.tcp_flags) == (1000, 80, TCP_SYN | TCP_ACK)
    assert pkt.eth_src == bytes.fromhex("020000000001") and pkt.ethertype == ETH_P_IP
    assert pkt.dont_fragment and not pkt.fragment and not pkt.options
    assert (pkt.l3, pkt.l4, pkt.ip_len, pkt.l4_len) == (14, 34, 44, 24)
    assert l4_checksum_ok(pkt)


def test_parse_keeps_a_bytearray_in_place() -> None:
    buf = bytearray(frame("udp4"))
    assert parse(buf).frame is buf


def test_options_detected_and_l4_after_them() -> None:
    pkt = parse(frame("tcp4_options"))
    assert pkt.options and pkt.l4 == 14 + 24 and pkt.tcp_flags == TCP_SYN


def test_fragments() -> None:
    first = parse(bytes(ETH / IP(flags="MF", frag=0) / UDP(sport=1, dport=2) / (b"x" * 8)))
    assert first.fragment and first.first_fragment and first.sport == 1 and first.l4 == 34
    later = parse(bytes(ETH / IP(frag=3, proto=17) / (b"x" * 16)))
    assert later.fragment and not later.first_fragment and later.l4 == -1


def test_vlan_tag_tolerated() -> None:
    pkt = parse(frame("vlan_udp4"))
    assert pkt.encap == ((42, 0x8100),) and pkt.l3 == 18 and pkt.family == 4 and pkt.proto == 17


def test_ethernet_padding_tolerated() -> None:
    raw = frame("udp4")
    pkt = parse(raw + bytes(20))
    assert pkt.end == len(raw) and pkt.sport == 53 and l4_checksum_ok(pkt)


def test_udp4_and_icmp4() -> None:
    udp = parse(frame("udp4"))
    assert (udp.sport, udp.dport, udp.l4_len) == (53, 5353, 17)
    icmp = parse(frame("icmp4"))
    assert (icmp.icmp_type, icmp.icmp_code, icmp.icmp_id) == (8, 0, 77)
    assert not icmp.is_icmp_error and l4_checksum_ok(icmp)


def test_ipv6_tcp_udp_echo() -> None:
    tcp = parse(frame("tcp6"))
    assert (tcp.family, tcp.proto, tcp.sport, tcp.dport, tcp.ttl) == (6, 6, 5, 6, 64)
    assert tcp.ip_len == 60 and l4_checksum_ok(tcp)
    assert parse(frame("udp6")).dport == 8
    echo = parse(frame("echo6"))
    assert (echo.icmp_type, echo.icmp_id) == (128, 9) and l4_checksum_ok(echo)


def test_ipv6_extension_headers_detected() -> None:
    hbh = parse(bytes(ETH / IPv6() / IPv6ExtHdrHopByHop() / UDP()))
    assert hbh.ext_header and not hbh.fragment and hbh.l4 == -1 and hbh.proto == 0
    frag = parse(bytes(ETH / IPv6() / IPv6ExtHdrFragment() / UDP()))
    assert frag.ext_header and frag.fragment


def test_ndp_ns_and_na() -> None:
    ns = parse(frame("ns"))
    assert ns.icmp_type == 135 and ns.ttl == 255
    assert ns.nd_target == bytes.fromhex("20010db8" + "00" * 11 + "02")
    assert ns.nd_lladdr == bytes.fromhex("020000000001") and l4_checksum_ok(ns)
    na = parse(
        bytes(
            ETH
            / IPv6(hlim=255)
            / ICMPv6ND_NA(tgt="2001:db8::2", R=0, S=1, O=1)
            / ICMPv6NDOptDstLLAddr(lladdr=MAC2)
        )
    )
    assert na.icmp_type == 136 and na.nd_flags == 0x60
    assert na.nd_lladdr == bytes.fromhex("020000000002")
    bare = parse(bytes(ETH / IPv6(hlim=255) / ICMPv6ND_NS(tgt="2001:db8::2")))
    assert bare.nd_lladdr == b""


def test_arp_fields() -> None:
    pkt = parse(frame("arp"))
    assert pkt.ethertype == ETH_P_ARP and pkt.family == 0 and pkt.arp_op == 1
    assert pkt.arp_spa == bytes([10, 0, 0, 1]) and pkt.arp_tpa == bytes([10, 0, 0, 254])
    assert pkt.arp_sha == bytes.fromhex("020000000001")


def test_non_ip_passes_as_family_zero() -> None:
    pkt = parse(bytes(Ether(type=0x88CC) / b"lldp-ish"))
    assert pkt.family == 0 and pkt.ethertype == 0x88CC and pkt.l4 == -1


@pytest.mark.parametrize("name", sorted(VALID_FRAMES))
def test_every_truncation_is_malformed(name: str) -> None:
    raw = frame(name)
    parse(raw)
    for cut in range(len(raw)):
        with pytest.raises(Malformed):
            parse(raw[:cut])


def _with(raw: bytes, offset: int, fmt: str, value: int) -> bytes:
    buf = bytearray(raw)
    struct.pack_into(fmt, buf, offset, value)
    return bytes(buf)


def _fix(buf: bytearray) -> bytearray:
    """Recompute the IPv4 header checksum so that only the field under test is wrong."""
    ihl = min((buf[14] & 0x0F) * 4, len(buf) - 14)
    buf[24:26] = b"\0\0"
    buf[24:26] = struct.pack("!H", checksum(buf[14 : 14 + ihl]))
    return buf


@pytest.mark.parametrize(
    ("name", "offset", "fmt", "value", "reason"),
    [
        ("udp4", 14 + 2, "!H", 200, "ipv4_bad_length"),  # total length beyond the frame
        ("udp4", 14 + 2, "!H", 19, "ipv4_bad_length"),  # total length below the header
        ("udp4", 14, "!B", 0x44, "ipv4_bad_ihl"),
        ("udp4", 14, "!B", 0x4F, "ipv4_truncated"),  # IHL 60 bytes beyond the frame
        ("udp4", 14, "!B", 0x65, "ipv4_bad_version"),
        ("udp4", 34 + 4, "!H", 7, "udp_bad_length"),
        ("udp4", 34 + 4, "!H", 100, "udp_bad_length"),
        ("tcp4", 34 + 12, "!B", 0x40, "tcp_bad_offset"),
        ("tcp4", 34 + 12, "!B", 0xF0, "tcp_bad_offset"),
    ],
)
def test_wrong_ipv4_length_fields(
    name: str, offset: int, fmt: str, value: int, reason: str
) -> None:
    bad = _fix(bytearray(_with(frame(name), offset, fmt, value)))
    with pytest.raises(Malformed) as err:
        parse(bad)
    assert err.value.reason == reason


def test_bad_ipv4_header_checksum() -> None:
    raw = bytearray(frame("udp4"))
    raw[24] ^= 0xFF
    with pytest.raises(Malformed) as err:
        parse(raw)
    assert err.value.reason == "ipv4_bad_checksum"


@pytest.mark.parametrize(
    ("name", "offset", "value", "reason"),
    [
        ("udp6", 14 + 4, 500, "ipv6_bad_length"),
        ("udp6", 14 + 4, 4, "udp_truncated"),
        ("tcp6", 14 + 4, 12, "tcp_truncated"),
        ("udp6", 54 + 4, 3, "udp_bad_length"),
    ],
)
def test_wrong_ipv6_length_fields(name: str, offset: int, value: int, reason: str) -> None:
    with pytest.raises(Malformed) as err:
        parse(_with(frame(name), offset, "!H", value))
    assert err.value.reason == reason


def test_ipv6_bad_version_and_bad_nd_option() -> None:
    with pytest.raises(Malformed, match="ipv6_bad_version"):
        parse(_with(frame("udp6"), 14, "!B", 0x40))
    raw = bytearray(frame("ns"))
    raw[-7] = 0  # option length 0 would loop forever in a naive parser
    with pytest.raises(Malformed, match="ndp_bad_option"):
        parse(raw)


def test_arp_for_other_protocols_is_refused() -> None:
    with pytest.raises(Malformed, match="arp_unsupported"):
        parse(_with(frame("arp"), 14 + 2, "!H", 0x86DD))


@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_else(data: bytes) -> None:
    with contextlib.suppress(Malformed):
        parse(data)


@given(st.sampled_from(sorted(VALID_FRAMES)), st.data())
def test_corrupted_valid_frames_never_raise_anything_else(name: str, data: st.DataObject) -> None:
    buf = bytearray(frame(name))
    for _ in range(data.draw(st.integers(1, 4))):
        buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
    try:
        pkt = parse(buf)
    except Malformed:
        return
    l4_checksum_ok(pkt)


def test_l4_checksum_detects_corruption_and_accepts_udp4_zero() -> None:
    raw = bytearray(frame("tcp4"))
    raw[-1] ^= 0x55
    assert not l4_checksum_ok(parse(raw))
    zero = bytearray(frame("udp4"))
    zero[40:42] = b"\0\0"
    assert l4_checksum_ok(parse(zero))
    zero6 = bytearray(frame("udp6"))
    zero6[60:62] = b"\0\0"
    assert not l4_checksum_ok(parse(zero6))


def test_parse_inner_of_an_icmp_error() -> None:
    quoted = bytes(IP(src="10.0.2.2", dst="10.0.1.1", ttl=3) / TCP(sport=80, dport=4000, flags="R"))
    err = parse(bytes(ETH / IP(src="10.0.1.254", dst="10.0.2.2") / ICMP(type=11) / quoted))
    inner = parse_inner(err)
    assert inner.frame is err.frame and inner.l3 == err.l4 + 8
    assert (inner.family, inner.proto, inner.ttl) == (4, 6, 3)
    assert (inner.src, inner.dst) == (bytes([10, 0, 2, 2]), bytes([10, 0, 1, 1]))
    assert (inner.sport, inner.dport, inner.tcp_flags) == (80, 4000, 0x04)
    assert inner.ip_len == len(quoted)


def test_parse_inner_of_cut_quotes_and_ipv6() -> None:
    quoted = bytes(IP(src="10.0.2.2", dst="10.0.1.1") / TCP(sport=80, dport=4000))[:28]
    err = parse(bytes(ETH / IP() / ICMP(type=3, code=1) / quoted))
    inner = parse_inner(err)
    assert inner.l4 == inner.l3 + 20 and inner.dport == 4000 and inner.ip_len == 28
    cut = parse(bytes(ETH / IP() / ICMP(type=3, code=1) / quoted[:24]))
    assert parse_inner(cut).l4 == -1
    echo = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest(id=99))
    err6 = parse(bytes(ETH / IPv6() / ICMPv6DestUnreach() / echo))
    inner6 = parse_inner(err6)
    assert (inner6.family, inner6.proto, inner6.icmp_type, inner6.icmp_id) == (6, 58, 128, 99)


def test_parse_inner_refuses_non_errors_and_garbage() -> None:
    with pytest.raises(Malformed, match="not_icmp_error"):
        parse_inner(parse(frame("icmp4")))
    with pytest.raises(Malformed, match="icmp_inner_truncated"):
        parse_inner(parse(bytes(ETH / IP() / ICMP(type=3) / b"short")))


@given(st.binary(max_size=80), st.sampled_from([4, 6]))
def test_parse_inner_of_random_quotes_never_raises_anything_else(quote: bytes, family: int) -> None:
    outer = IP() / ICMP(type=3) if family == 4 else IPv6() / ICMPv6DestUnreach()
    err = parse(bytes(ETH / outer / quote))
    with contextlib.suppress(Malformed):
        inner = parse_inner(err)
        assert inner.l3 + inner.ip_len <= len(err.frame)


def test_ipv6_fragment_offset() -> None:
    first = parse(bytes(ETH / IPv6() / IPv6ExtHdrFragment(offset=0, m=1) / UDP()))
    later = parse(bytes(ETH / IPv6() / IPv6ExtHdrFragment(offset=100, nh=17) / (b"x" * 8)))
    assert first.fragment and first.first_fragment
    assert later.fragment and not later.first_fragment
    with pytest.raises(Malformed, match="ipv6_truncated"):
        parse(bytes(ETH / IPv6(nh=44, plen=4) / b"abcd"))
