"""Build frames and headers with correct checksums (struct only: this runs in the router).

Layered like the wire: an L4 builder returns the segment, :func:`ipv4`/:func:`ipv6` wrap it in a
datagram, :func:`ethernet` in a frame. Addresses are raw bytes (4 or 16), MACs 6 bytes; the
family of a TCP/UDP/ICMPv6 checksum follows from the address length.
"""

from __future__ import annotations

import struct

from controller.ip.packet import (
    ARP_REPLY,
    ARP_REQUEST,
    ETH_P_8021Q,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_IPV6,
    IP_DF,
    ND_NA_OVERRIDE,
    ND_NA_ROUTER,
    ND_NA_SOLICITED,
    ND_OPT_SOURCE_LL_ADDR,
    ND_OPT_TARGET_LL_ADDR,
    NDISC_NEIGHBOUR_ADVERTISEMENT,
    NDISC_NEIGHBOUR_SOLICITATION,
)
from controller.netfilter.ct import IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP
from inet.checksum import checksum, pseudo_header_sum

BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = bytes(6)
DEFAULT_TTL = 64  # net.ipv4.ip_default_ttl / net.ipv6.conf.*.hop_limit
NDP_HOP_LIMIT = 255  # RFC 4861 §7.1: receivers drop NDP with any other hop limit

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_ICMP = struct.Struct("!BBH")
_SOLICITED_NODE_PREFIX = bytes.fromhex("ff02" + "00" * 9 + "01ff")  # ff02::1:ff00:0/104


def ethernet(
    dst: bytes, src: bytes, ethertype: int, payload: bytes, vlan: int | None = None
) -> bytes:
    """An Ethernet II frame, with an 802.1Q tag when ``vlan`` is given (no padding added)."""
    if vlan is None:
        return dst + src + struct.pack("!H", ethertype) + payload
    return dst + src + struct.pack("!HHH", ETH_P_8021Q, vlan & 0x0FFF, ethertype) + payload


def arp(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    """An Ethernet/IPv4 ARP packet (RFC 826)."""
    return struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, op, sha, spa, tha, tpa)


def arp_request(src_mac: bytes, src_ip: bytes, target_ip: bytes) -> bytes:
    """A broadcast who-has frame for ``target_ip``."""
    payload = arp(ARP_REQUEST, src_mac, src_ip, ZERO_MAC, target_ip)
    return ethernet(BROADCAST_MAC, src_mac, ETH_P_ARP, payload)


def arp_reply(src_mac: bytes, src_ip: bytes, dst_mac: bytes, dst_ip: bytes) -> bytes:
    """A unicast is-at frame: ``src_ip`` is at ``src_mac``."""
    payload = arp(ARP_REPLY, src_mac, src_ip, dst_mac, dst_ip)
    return ethernet(dst_mac, src_mac, ETH_P_ARP, payload)


def ipv4(
    src: bytes,
    dst: bytes,
    proto: int,
    payload: bytes,
    *,
    ttl: int = DEFAULT_TTL,
    ident: int = 0,
    df: bool = False,
    tos: int = 0,
    options: bytes = b"",
) -> bytes:
    """An IPv4 datagram with a valid header checksum; ``options`` is padded to 4 bytes."""
    options += bytes(-len(options) % 4)
    if len(options) > 40:
        raise ValueError("IPv4 options longer than 40 bytes")
    ihl = 5 + len(options) // 4
    total = ihl * 4 + len(payload)
    if total > 0xFFFF:
        raise ValueError("IPv4 datagram longer than 65535 bytes")
    frag = IP_DF if df else 0
    header = bytearray(_IPV4.pack(0x40 | ihl, tos, total, ident, frag, ttl, proto, 0, src, dst))
    header += options
    struct.pack_into("!H", header, 10, checksum(header))
    return bytes(header) + payload


def ipv6(
    src: bytes,
    dst: bytes,
    next_header: int,
    payload: bytes,
    *,
    hop_limit: int = DEFAULT_TTL,
    traffic_class: int = 0,
    flow_label: int = 0,
) -> bytes:
    """An IPv6 datagram (no extension headers)."""
    if len(payload) > 0xFFFF:
        raise ValueError("IPv6 payload longer than 65535 bytes")
    first = (6 << 28) | (traffic_class << 20) | (flow_label & 0xFFFFF)
    return _IPV6.pack(first, len(payload), next_header, hop_limit, src, dst) + payload


def ip(src: bytes, dst: bytes, proto: int, payload: bytes, *, ttl: int = DEFAULT_TTL) -> bytes:
    """An IPv4 or IPv6 datagram, by address length."""
    if len(src) == 4:
        return ipv4(src, dst, proto, payload, ttl=ttl)
    return ipv6(src, dst, proto, payload, hop_limit=ttl)


def ip_frame(dst_mac: bytes, src_mac: bytes, datagram: bytes, vlan: int | None = None) -> bytes:
    """Wrap an IP datagram in Ethernet, the ethertype taken from its version nibble."""
    ethertype = ETH_P_IP if datagram[0] >> 4 == 4 else ETH_P_IPV6
    return ethernet(dst_mac, src_mac, ethertype, datagram, vlan)


def _l4_checksum(src: bytes, dst: bytes, proto: int, segment: bytes) -> int:
    family = 4 if len(src) == 4 else 6
    return checksum(segment, pseudo_header_sum(family, src, dst, proto, len(segment)))


def tcp(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    payload: bytes = b"",
    *,
    seq: int = 0,
    ack: int = 0,
    flags: int = 0,
    window: int = 65535,
    options: bytes = b"",
) -> bytes:
    """A TCP segment whose checksum covers the pseudo-header of ``src``/``dst``."""
    options += bytes(-len(options) % 4)
    doff = (20 + len(options)) // 4
    header = _TCP.pack(sport, dport, seq, ack, doff << 4, flags, window, 0, 0) + options
    segment = bytearray(header + payload)
    struct.pack_into("!H", segment, 16, _l4_checksum(src, dst, IPPROTO_TCP, segment))
    return bytes(segment)


def udp(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    payload: bytes = b"",
    *,
    with_checksum: bool = True,
) -> bytes:
    """A UDP datagram; a computed checksum of 0 is sent as 0xffff (RFC 768).

    ``with_checksum=False`` sends 0 ("no checksum"), legal for IPv4 only.
    """
    segment = bytearray(_UDP.pack(sport, dport, 8 + len(payload), 0) + payload)
    if with_checksum:
        check = _l4_checksum(src, dst, IPPROTO_UDP, segment) or 0xFFFF
        struct.pack_into("!H", segment, 6, check)
    return bytes(segment)


def icmp(icmp_type: int, code: int, body: bytes) -> bytes:
    """An ICMPv4 message; ``body`` is everything after the checksum (rest-of-header + data)."""
    message = bytearray(_ICMP.pack(icmp_type, code, 0) + body)
    struct.pack_into("!H", message, 2, checksum(message))
    return bytes(message)


def icmpv6(src: bytes, dst: bytes, icmp_type: int, code: int, body: bytes) -> bytes:
    """An ICMPv6 message; its checksum covers the IPv6 pseudo-header (RFC 4443 §2.3)."""
    message = bytearray(_ICMP.pack(icmp_type, code, 0) + body)
    struct.pack_into("!H", message, 2, _l4_checksum(src, dst, IPPROTO_ICMPV6, message))
    return bytes(message)


def echo_body(ident: int, seq: int, data: bytes = b"") -> bytes:
    """Identifier, sequence number and data of an echo request/reply."""
    return struct.pack("!HH", ident, seq) + data


def solicited_node(addr: bytes) -> bytes:
    """The solicited-node multicast address ff02::1:ffXX:XXXX of an IPv6 address."""
    return _SOLICITED_NODE_PREFIX + addr[13:]


def multicast_mac(addr: bytes) -> bytes:
    """The Ethernet address 33:33:xx:xx:xx:xx of an IPv6 multicast address (RFC 2464 §7)."""
    return b"\x33\x33" + addr[12:]


def ndp_ns(src_mac: bytes, src_ip: bytes, target: bytes, dst_ip: bytes | None = None) -> bytes:
    """A Neighbour Solicitation frame for ``target`` with our link-layer address option.

    Sent to the solicited-node group unless ``dst_ip`` (unicast re-probe) is given.
    """
    dst = solicited_node(target) if dst_ip is None else dst_ip
    body = bytes(4) + target + bytes([ND_OPT_SOURCE_LL_ADDR, 1]) + src_mac
    message = icmpv6(src_ip, dst, NDISC_NEIGHBOUR_SOLICITATION, 0, body)
    datagram = ipv6(src_ip, dst, IPPROTO_ICMPV6, message, hop_limit=NDP_HOP_LIMIT)
    dst_mac = multicast_mac(dst) if dst[0] == 0xFF else BROADCAST_MAC
    return ethernet(dst_mac, src_mac, ETH_P_IPV6, datagram)


def ndp_na(
    src_mac: bytes,
    src_ip: bytes,
    dst_mac: bytes,
    dst_ip: bytes,
    target: bytes,
    *,
    solicited: bool = True,
    override: bool = True,
    router: bool = True,
) -> bytes:
    """A Neighbour Advertisement frame: ``target`` is at ``src_mac`` (target LL option)."""
    flags = (
        (ND_NA_ROUTER if router else 0)
        | (ND_NA_SOLICITED if solicited else 0)
        | (ND_NA_OVERRIDE if override else 0)
    )
    body = bytes([flags, 0, 0, 0]) + target + bytes([ND_OPT_TARGET_LL_ADDR, 1]) + src_mac
    message = icmpv6(src_ip, dst_ip, NDISC_NEIGHBOUR_ADVERTISEMENT, 0, body)
    datagram = ipv6(src_ip, dst_ip, IPPROTO_ICMPV6, message, hop_limit=NDP_HOP_LIMIT)
    return ethernet(dst_mac, src_mac, ETH_P_IPV6, datagram)
