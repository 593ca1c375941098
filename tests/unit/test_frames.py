"""Builders produce what scapy (an independent implementation) reads back as valid."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether

from controller.ip import frames
from controller.ip.packet import TCP_ACK, TCP_SYN, parse
from controller.netfilter.ct import IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
A4, B4 = ipaddress.ip_address("10.0.0.1").packed, ipaddress.ip_address("10.0.1.2").packed
A6 = ipaddress.ip_address("2001:db8::1").packed
B6 = ipaddress.ip_address("2001:db8:1::2").packed


def checksums_valid(raw: bytes) -> bool:
    """True when scapy, recomputing every checksum, produces the same bytes."""
    pkt = Ether(raw)
    for layer in pkt.iterpayloads():
        for field in ("chksum", "cksum"):
            if field in layer.fields:
                delattr(layer, field)
    return bytes(Ether(bytes(pkt))) == raw


def test_tcp_over_ipv4() -> None:
    segment = frames.tcp(A4, B4, 1234, 80, b"data", seq=7, ack=9, flags=TCP_SYN | TCP_ACK)
    raw = frames.ip_frame(MAC_B, MAC_A, frames.ipv4(A4, B4, IPPROTO_TCP, segment, ttl=9, df=True))
    assert checksums_valid(raw)
    pkt = Ether(raw)
    assert (pkt[IP].src, pkt[IP].dst, pkt[IP].ttl, pkt[IP].flags) == ("10.0.0.1", "10.0.1.2", 9, 2)
    assert (pkt[TCP].sport, pkt[TCP].dport, pkt[TCP].seq, pkt[TCP].ack) == (1234, 80, 7, 9)
    assert pkt[TCP].flags == "SA" and bytes(pkt[TCP].payload) == b"data"


def test_ipv4_options_are_padded() -> None:
    datagram = frames.ipv4(A4, B4, IPPROTO_UDP, frames.udp(A4, B4, 1, 2), options=b"\x01")
    raw = frames.ip_frame(MAC_B, MAC_A, datagram)
    assert checksums_valid(raw) and Ether(raw)[IP].ihl == 6 and parse(raw).options


def test_udp_over_ipv6_and_vlan() -> None:
    segment = frames.udp(A6, B6, 53, 5353, b"query")
    raw = frames.ip_frame(MAC_B, MAC_A, frames.ipv6(A6, B6, IPPROTO_UDP, segment), vlan=7)
    assert checksums_valid(raw)
    pkt = Ether(raw)
    assert pkt[Dot1Q].vlan == 7 and pkt[IPv6].dst == "2001:db8:1::2" and pkt[UDP].dport == 5353


def test_udp_without_checksum() -> None:
    segment = frames.udp(A4, B4, 1, 2, b"x", with_checksum=False)
    assert segment[6:8] == b"\0\0"


def test_tcp_over_ipv6() -> None:
    raw = frames.ip_frame(MAC_B, MAC_A, frames.ip(A6, B6, IPPROTO_TCP, frames.tcp(A6, B6, 1, 2)))
    assert checksums_valid(raw) and Ether(raw)[TCP].dport == 2


def test_icmp_echo_v4_and_v6() -> None:
    msg = frames.icmp(8, 0, frames.echo_body(5, 6, b"ping"))
    raw4 = frames.ip_frame(MAC_B, MAC_A, frames.ipv4(A4, B4, IPPROTO_ICMP, msg))
    assert checksums_valid(raw4) and Ether(raw4)[ICMP].id == 5
    msg6 = frames.icmpv6(A6, B6, 128, 0, frames.echo_body(5, 6, b"ping"))
    raw6 = frames.ip_frame(MAC_B, MAC_A, frames.ipv6(A6, B6, IPPROTO_ICMPV6, msg6))
    assert checksums_valid(raw6) and Ether(raw6)[ICMPv6EchoRequest].seq == 6


def test_arp_request_and_reply() -> None:
    req = Ether(frames.arp_request(MAC_A, A4, B4))
    assert req.dst == "ff:ff:ff:ff:ff:ff" and req[ARP].op == 1
    assert (req[ARP].psrc, req[ARP].pdst, req[ARP].hwsrc) == ("10.0.0.1", "10.0.1.2", req.src)
    rep = Ether(frames.arp_reply(MAC_B, B4, MAC_A, A4))
    assert rep.dst == "02:00:00:00:00:01" and rep[ARP].op == 2 and rep[ARP].hwsrc == rep.src


def test_solicited_node_and_multicast_mac() -> None:
    target = ipaddress.ip_address("2001:db8::abcd:1234").packed
    assert ipaddress.ip_address(frames.solicited_node(target)) == ipaddress.ip_address(
        "ff02::1:ffcd:1234"
    )
    assert frames.multicast_mac(frames.solicited_node(target)).hex() == "3333ffcd1234"


def test_ndp_ns() -> None:
    raw = frames.ndp_ns(MAC_A, A6, B6)
    assert checksums_valid(raw)
    pkt = Ether(raw)
    assert pkt[IPv6].hlim == 255 and pkt[IPv6].dst == "ff02::1:ff00:2"
    assert pkt.dst == "33:33:ff:00:00:02"
    assert pkt[ICMPv6ND_NS].tgt == "2001:db8:1::2"
    assert pkt[ICMPv6NDOptSrcLLAddr].lladdr == "02:00:00:00:00:01"
    unicast = Ether(frames.ndp_ns(MAC_A, A6, B6, dst_ip=B6))
    assert unicast[IPv6].dst == "2001:db8:1::2"


def test_ndp_na() -> None:
    raw = frames.ndp_na(MAC_B, B6, MAC_A, A6, B6, solicited=True, override=False, router=True)
    assert checksums_valid(raw)
    pkt = Ether(raw)
    na = pkt[ICMPv6ND_NA]
    assert (na.R, na.S, na.O, na.tgt) == (1, 1, 0, "2001:db8:1::2")
    assert pkt[ICMPv6NDOptDstLLAddr].lladdr == "02:00:00:00:00:02"
    parsed = parse(raw)
    assert parsed.nd_lladdr == MAC_B and parsed.nd_target == B6


def test_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        frames.ipv4(A4, B4, IPPROTO_UDP, b"", options=bytes(41))
    with pytest.raises(ValueError):
        frames.ipv4(A4, B4, IPPROTO_UDP, bytes(65516))
    with pytest.raises(ValueError):
        frames.ipv6(A6, B6, IPPROTO_UDP, bytes(65536))
