"""In-place header rewrites with incremental checksums, as the kernel's NAT and flowtable do them.

Mirrors ``nf_flow_table_ip.c`` (``nf_flow_nat_ip*``, ``nf_flow_nat_port*``) and ``nf_nat_proto.c``:
an address change fixes the IPv4 header checksum and the L4 checksum that covers it through the
pseudo-header; a port change fixes the L4 checksum; an IPv4 UDP checksum of 0 ("none") stays 0,
and an updated UDP checksum that comes out 0 is sent as 0xffff (``CSUM_MANGLED_0``). Every
function also updates the parsed fields of ``pkt`` so it keeps describing its frame.
"""

from __future__ import annotations

import struct

from controller.ip.packet import ICMP_ID_TYPES, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, Packet
from controller.netfilter.ct import IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP
from inet.checksum import apply_delta, checksum, pseudo_header_sum, replace_delta

_H = struct.Struct("!H")
_CSUM_MANGLED_0 = 0xFFFF
_PORT_PROTOS = (IPPROTO_TCP, IPPROTO_UDP)

# Offset of the checksum inside each L4 header, and the header length that must be present
# for the kernel to update it (a quote in an ICMP error may be cut after 8 bytes).
_L4_CHECK = {
    IPPROTO_TCP: (16, 20),
    IPPROTO_UDP: (6, 8),
    IPPROTO_ICMP: (2, 8),
    IPPROTO_ICMPV6: (2, 8),
}


def set_src_addr(pkt: Packet, addr: bytes) -> None:
    """Source NAT of the address (``nf_flow_snat_ip`` / ``nf_flow_snat_ipv6``)."""
    _set_addr(pkt, addr, 12 if pkt.family == 4 else 8)
    pkt.src = bytes(addr)


def set_dst_addr(pkt: Packet, addr: bytes) -> None:
    """Destination NAT of the address (``nf_flow_dnat_ip`` / ``nf_flow_dnat_ipv6``)."""
    _set_addr(pkt, addr, 16 if pkt.family == 4 else 24)
    pkt.dst = bytes(addr)


def set_src_port(pkt: Packet, port: int) -> None:
    """Source port (TCP/UDP) or echo identifier (ICMP/ICMPv6 echo: conntrack's "port")."""
    _set_port(pkt, port, 0)
    pkt.sport = port


def set_dst_port(pkt: Packet, port: int) -> None:
    """Destination port (TCP/UDP) or echo identifier of a reply-direction ICMP echo."""
    _set_port(pkt, port, 2)
    pkt.dport = port


def decrement_ttl(pkt: Packet) -> None:
    """TTL - 1 with the IPv4 header checksum fixed as ``ip_decrease_ttl`` does; IPv6 hop limit - 1.

    The caller checks ``pkt.ttl > 1`` first (a router sends time exceeded instead).
    """
    frame, l3 = pkt.frame, pkt.l3
    if pkt.ttl == 0:
        raise ValueError("TTL / hop limit is already 0")
    if pkt.family == 4:
        check = _H.unpack_from(frame, l3 + 10)[0] + 0x0100
        _H.pack_into(frame, l3 + 10, (check + (check >= 0xFFFF)) & 0xFFFF)
        frame[l3 + 8] -= 1
    elif pkt.family == 6:
        frame[l3 + 7] -= 1
    else:
        raise ValueError("not an IP packet")
    pkt.ttl -= 1


def set_macs(pkt: Packet, src: bytes, dst: bytes) -> None:
    """Rewrite the Ethernet addresses (``nf_flow_queue_xmit`` / neighbour output)."""
    pkt.frame[0:6] = dst
    pkt.frame[6:12] = src
    pkt.eth_dst, pkt.eth_src = bytes(dst), bytes(src)


def recompute_icmp_checksum(pkt: Packet) -> None:
    """Recompute an ICMP/ICMPv6 checksum from scratch, after NAT rewrote the quoted datagram.

    ``nf_nat_icmp_reply_translation`` does the same: a quote may be cut anywhere, so the outer
    checksum is summed again rather than updated field by field.
    """
    if pkt.l4 < 0 or pkt.proto not in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        raise ValueError("not an ICMP message")
    frame, l4, end = pkt.frame, pkt.l4, pkt.end
    frame[l4 + 2 : l4 + 4] = b"\0\0"
    initial = 0
    if pkt.proto == IPPROTO_ICMPV6:
        initial = pseudo_header_sum(6, pkt.src, pkt.dst, IPPROTO_ICMPV6, end - l4)
    _H.pack_into(frame, l4 + 2, checksum(memoryview(frame)[l4:end], initial))


def set_header_bits(pkt: Packet, base: str, bit_offset: int, bits: int, value: int) -> bool:
    """nft's payload set (``nft_payload_set_eval``) of a field in the network (``nh``) or
    transport (``th``) header: the bits change and the checksums covering them follow (the
    IPv4 header checksum, the L4 checksum), unless the field is that checksum itself.
    False when the header is not in the packet."""
    start = pkt.l3 if base == "nh" else pkt.l4
    end = pkt.l3 + pkt.ip_len
    if start < 0 or start + (bit_offset + bits + 7) // 8 > end:
        return False
    if base == "th" and not pkt.first_fragment:
        return False
    frame = pkt.frame
    lo = start + (bit_offset // 8 & ~1)  # whole 16-bit words, for the checksum deltas
    hi = start + (((bit_offset + bits + 7) // 8 + 1) & ~1)
    old = bytes(frame[lo:hi])
    width = (hi - lo) * 8
    shift = width - (bit_offset - (lo - start) * 8) - bits
    mask = ((1 << bits) - 1) << shift
    word = (int.from_bytes(old, "big") & ~mask) | ((value << shift) & mask)
    frame[lo:hi] = word.to_bytes(hi - lo, "big")
    delta = replace_delta(old, bytes(frame[lo:hi]))
    if base == "nh" and pkt.family == 4 and not lo <= pkt.l3 + 10 < hi:
        where = pkt.l3 + 10
        _H.pack_into(frame, where, apply_delta(_H.unpack_from(frame, where)[0], delta))
    if base == "th":
        layout = _L4_CHECK.get(pkt.proto)
        if layout is None or not lo <= pkt.l4 + layout[0] < hi:
            _fix_l4(pkt, delta)
    return True


def _set_addr(pkt: Packet, addr: bytes, offset: int) -> None:
    family = pkt.family
    size = 4 if family == 4 else 16
    if family not in (4, 6):
        raise ValueError("not an IP packet")
    if len(addr) != size:
        raise ValueError(f"IPv{family} address must be {size} bytes")
    frame, start = pkt.frame, pkt.l3 + offset
    delta = replace_delta(frame[start : start + size], addr)
    frame[start : start + size] = addr
    if family == 4:
        where = pkt.l3 + 10
        _H.pack_into(frame, where, apply_delta(_H.unpack_from(frame, where)[0], delta))
    # ICMPv4's checksum does not cover the addresses; TCP, UDP and ICMPv6 do.
    if pkt.l4 >= 0 and pkt.first_fragment and pkt.proto != IPPROTO_ICMP:
        _fix_l4(pkt, delta)


def _set_port(pkt: Packet, port: int, offset: int) -> None:
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port out of range: {port}")
    if pkt.l4 < 0:
        raise ValueError("no L4 header to rewrite")
    if pkt.proto in _PORT_PROTOS:
        start = pkt.l4 + offset
    elif _is_echo(pkt):
        start = pkt.l4 + 4  # the identifier stands for both "ports"
    else:
        raise ValueError(f"protocol {pkt.proto} has no ports")
    old = _H.unpack_from(pkt.frame, start)[0]
    _H.pack_into(pkt.frame, start, port)
    _fix_l4(pkt, (~old & 0xFFFF) + port)
    if pkt.proto not in _PORT_PROTOS:
        pkt.icmp_id = port


def _is_echo(pkt: Packet) -> bool:
    if pkt.proto == IPPROTO_ICMP:
        return pkt.icmp_type in ICMP_ID_TYPES
    return pkt.proto == IPPROTO_ICMPV6 and pkt.icmp_type in (ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY)


def _fix_l4(pkt: Packet, delta: int) -> None:
    """Add ``delta`` to the L4 checksum with the kernel's UDP zero-checksum rules."""
    layout = _L4_CHECK.get(pkt.proto)
    if layout is None or pkt.l4 + layout[1] > pkt.l3 + pkt.ip_len:
        return
    where = pkt.l4 + layout[0]
    check = _H.unpack_from(pkt.frame, where)[0]
    if pkt.proto == IPPROTO_UDP:
        if check == 0:
            return  # no checksum (IPv4); the kernel leaves it alone
        check = apply_delta(check, delta) or _CSUM_MANGLED_0
    else:
        check = apply_delta(check, delta)
    _H.pack_into(pkt.frame, where, check)
