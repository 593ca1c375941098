"""Parse Ethernet frames into a flat, mutable view: one pass, struct and offsets, no copies.

The classic path, conntrack and the software flowtable all need the same few fields (addresses,
ports, TTL, flags); a flat object with header offsets lets ``mangle`` rewrite the frame
in place afterwards. Anything that would make the kernel drop the packet as malformed raises
:class:`Malformed` with a short reason that drop counters use as their key; nothing else escapes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from controller.netfilter.ct import IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP
from inet import encap
from inet.checksum import ones_sum, pseudo_header_sum
from inet.encap import Encaps

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_IPV6 = 0x86DD

ETH_HLEN = 14
IPV4_HLEN = 20
IPV6_HLEN = 40
TCP_HLEN = 20
UDP_HLEN = 8
ICMP_HLEN = 8

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10

ARP_REQUEST = 1
ARP_REPLY = 2

ICMP_ECHOREPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_ECHO = 8
ICMP_TIME_EXCEEDED = 11
ICMP_PARAMETERPROB = 12
ICMP_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})
ICMP_ID_TYPES = frozenset({0, 8, 13, 14, 15, 16, 17, 18})

ICMPV6_DEST_UNREACH = 1
ICMPV6_PKT_TOOBIG = 2
ICMPV6_TIME_EXCEED = 3
ICMPV6_PARAMPROB = 4
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129
NDISC_NEIGHBOUR_SOLICITATION = 135
NDISC_NEIGHBOUR_ADVERTISEMENT = 136
ND_OPT_SOURCE_LL_ADDR = 1
ND_OPT_TARGET_LL_ADDR = 2
ND_NA_ROUTER = 0x80
ND_NA_SOLICITED = 0x40
ND_NA_OVERRIDE = 0x20

_ICMPV6_ECHO = frozenset({ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY})

IPPROTO_FRAGMENT = 44  # IPv6 fragment header

IP_DF = 0x4000
IP_MF = 0x2000
IP_OFFSET = 0x1FFF

_ETH = struct.Struct("!6s6sH")
_ENCAP_TYPES = frozenset({*encap.VLAN_PROTOS, encap.ETH_P_PPP_SES, encap.ETH_P_PPP_DISC})
_H = struct.Struct("!H")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_PORTS = struct.Struct("!HH")
_UDP = struct.Struct("!HHH")
_ICMP = struct.Struct("!BBHH")


class Malformed(Exception):
    """A frame the router must drop; ``reason`` is the drop counter's key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(slots=True)
class Packet:
    """A parsed view over a mutable frame. Offsets index ``frame``; -1 means absent."""

    frame: bytearray
    eth_dst: bytes
    eth_src: bytes
    ethertype: int  # after the encapsulations (a PPPoE session's IP mapped to 0x0800/0x86DD)
    encap: Encaps = ()  # 802.1Q/802.1ad tags and PPPoE session, outermost first (inet.encap)
    l3: int = ETH_HLEN
    family: int = 0  # 0 (not IP), 4, 6
    proto: int = 0  # L4 protocol; IPv6: the first next-header
    src: bytes = b""
    dst: bytes = b""
    ttl: int = 0  # TTL / hop limit
    ip_len: int = 0  # IPv4 total length / IPv6 40 + payload length
    options: bool = False
    fragment: bool = False  # any fragment, first included
    first_fragment: bool = True  # False for fragments with offset != 0 (no L4 header)
    dont_fragment: bool = False
    ext_header: bool = False
    l4: int = -1
    sport: int = 0
    dport: int = 0
    tcp_flags: int = 0
    icmp_type: int = 0
    icmp_code: int = 0
    icmp_id: int = 0
    arp_op: int = 0
    arp_sha: bytes = b""
    arp_spa: bytes = b""
    arp_tha: bytes = b""
    arp_tpa: bytes = b""
    nd_target: bytes = b""  # NDP NS/NA target address
    nd_lladdr: bytes = b""  # source (NS) or target (NA) link-layer address option, if present
    nd_flags: int = 0  # NA router/solicited/override bits

    @property
    def end(self) -> int:
        """Offset just past the IP datagram (Ethernet padding, if any, follows)."""
        return self.l3 + self.ip_len

    @property
    def l4_len(self) -> int:
        """Bytes from the L4 header to the end of the datagram (0 without an L4 header)."""
        return self.l3 + self.ip_len - self.l4 if self.l4 >= 0 else 0

    @property
    def is_icmp_error(self) -> bool:
        if self.family == 4:
            return self.proto == IPPROTO_ICMP and self.icmp_type in ICMP_ERROR_TYPES
        return self.family == 6 and self.proto == IPPROTO_ICMPV6 and self.icmp_type < 128


def parse(frame: bytes | bytearray | memoryview) -> Packet:
    """Parse an Ethernet frame; raise :class:`Malformed` (and nothing else) on bad input.

    A ``bytearray`` is used as is, so rewrites through ``controller.ip.mangle`` change the caller's
    buffer; other buffers are copied once.
    """
    buf = frame if isinstance(frame, bytearray) else bytearray(frame)
    try:
        return _parse(buf)
    except Malformed:
        raise
    except (struct.error, IndexError, ValueError) as exc:  # a length check we missed
        raise Malformed("truncated", str(exc)) from exc


def _parse(buf: bytearray) -> Packet:
    size = len(buf)
    if size < ETH_HLEN:
        raise Malformed("eth_truncated")
    eth_dst, eth_src, ethertype = _ETH.unpack_from(buf, 0)
    pkt = Packet(buf, eth_dst, eth_src, ethertype)
    if ethertype in _ENCAP_TYPES:
        found = encap.walk(buf)
        if found is None:
            raise Malformed("encap_truncated")
        pkt.encap, pkt.l3 = found.encaps, found.offset
        pkt.ethertype = ethertype = found.ethertype if not found.unsupported else 0
    if ethertype == ETH_P_IP:
        _parse_ipv4(pkt, buf)
    elif ethertype == ETH_P_IPV6:
        _parse_ipv6(pkt, buf)
    elif ethertype == ETH_P_ARP:
        _parse_arp(pkt, buf)
    return pkt


def _parse_arp(pkt: Packet, buf: bytearray) -> None:
    if len(buf) - pkt.l3 < _ARP.size:
        raise Malformed("arp_truncated")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(buf, pkt.l3)
    if htype != 1 or ptype != ETH_P_IP or hlen != 6 or plen != 4:
        raise Malformed("arp_unsupported")
    pkt.arp_op, pkt.arp_sha, pkt.arp_spa, pkt.arp_tha, pkt.arp_tpa = op, sha, spa, tha, tpa


def _parse_ipv4(pkt: Packet, buf: bytearray) -> None:
    l3 = pkt.l3
    avail = len(buf) - l3
    if avail < IPV4_HLEN:
        raise Malformed("ipv4_truncated")
    vihl, _tos, total, _id, frag, ttl, proto, _check, src, dst = _IPV4.unpack_from(buf, l3)
    if vihl >> 4 != 4:
        raise Malformed("ipv4_bad_version")
    ihl = (vihl & 0x0F) * 4
    if ihl < IPV4_HLEN:
        raise Malformed("ipv4_bad_ihl")
    if ihl > avail:
        raise Malformed("ipv4_truncated")
    if total < ihl or total > avail:
        raise Malformed("ipv4_bad_length")
    if ones_sum(memoryview(buf)[l3 : l3 + ihl]) != 0xFFFF:
        raise Malformed("ipv4_bad_checksum")
    pkt.family, pkt.proto, pkt.src, pkt.dst, pkt.ttl, pkt.ip_len = 4, proto, src, dst, ttl, total
    pkt.options = ihl > IPV4_HLEN
    pkt.dont_fragment = bool(frag & IP_DF)
    if frag & (IP_MF | IP_OFFSET):
        pkt.fragment = True
        if frag & IP_OFFSET:
            pkt.first_fragment = False
            return  # no L4 header in this fragment
    pkt.l4 = l3 + ihl
    _parse_l4(pkt, buf, l3 + total)


def _parse_ipv6(pkt: Packet, buf: bytearray) -> None:
    l3 = pkt.l3
    avail = len(buf) - l3
    if avail < IPV6_HLEN:
        raise Malformed("ipv6_truncated")
    vtcfl, plen, nexthdr, hlim, src, dst = _IPV6.unpack_from(buf, l3)
    if vtcfl >> 28 != 6:
        raise Malformed("ipv6_bad_version")
    if IPV6_HLEN + plen > avail:
        raise Malformed("ipv6_bad_length")
    pkt.family, pkt.proto, pkt.src, pkt.dst, pkt.ttl = 6, nexthdr, src, dst, hlim
    pkt.ip_len = IPV6_HLEN + plen
    if nexthdr not in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6):
        pkt.ext_header = True
        if nexthdr == IPPROTO_FRAGMENT:  # a fragment header right away: note its offset
            if pkt.ip_len < IPV6_HLEN + 8:
                raise Malformed("ipv6_truncated")
            pkt.fragment = True
            pkt.first_fragment = not _H.unpack_from(buf, l3 + IPV6_HLEN + 2)[0] & 0xFFF8
        return
    pkt.l4 = l3 + IPV6_HLEN
    _parse_l4(pkt, buf, l3 + pkt.ip_len)


def _parse_l4(pkt: Packet, buf: bytearray, end: int) -> None:
    """Parse TCP/UDP/ICMP/ICMPv6 between ``pkt.l4`` and ``end``.

    In a first fragment the datagram ends early, so only the header itself must fit.
    """
    l4 = pkt.l4
    avail = end - l4
    proto = pkt.proto
    if proto == IPPROTO_TCP:
        if avail < TCP_HLEN:
            raise Malformed("tcp_truncated")
        pkt.sport, pkt.dport = _PORTS.unpack_from(buf, l4)
        doff = (buf[l4 + 12] >> 4) * 4
        if doff < TCP_HLEN or (doff > avail and not pkt.fragment):
            raise Malformed("tcp_bad_offset")
        pkt.tcp_flags = buf[l4 + 13]
    elif proto == IPPROTO_UDP:
        if avail < UDP_HLEN:
            raise Malformed("udp_truncated")
        pkt.sport, pkt.dport, ulen = _UDP.unpack_from(buf, l4)
        if not pkt.fragment and (ulen < UDP_HLEN or ulen > avail):
            raise Malformed("udp_bad_length")
    elif proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        if avail < ICMP_HLEN:
            raise Malformed("icmp_truncated")
        pkt.icmp_type, pkt.icmp_code, _check, ident = _ICMP.unpack_from(buf, l4)
        if proto == IPPROTO_ICMP:
            if pkt.icmp_type in ICMP_ID_TYPES:
                pkt.icmp_id = ident
        elif pkt.icmp_type in _ICMPV6_ECHO:
            pkt.icmp_id = ident
        elif pkt.icmp_type in (NDISC_NEIGHBOUR_SOLICITATION, NDISC_NEIGHBOUR_ADVERTISEMENT):
            _parse_ndp(pkt, buf, end)


def _parse_ndp(pkt: Packet, buf: bytearray, end: int) -> None:
    """NS/NA body: flags, target, and the link-layer address option (RFC 4861 §4.3-4.4, §4.6)."""
    l4 = pkt.l4
    if end - l4 < 24:
        raise Malformed("ndp_truncated")
    pkt.nd_flags = buf[l4 + 4]
    pkt.nd_target = bytes(buf[l4 + 8 : l4 + 24])
    wanted = (
        ND_OPT_SOURCE_LL_ADDR
        if pkt.icmp_type == NDISC_NEIGHBOUR_SOLICITATION
        else ND_OPT_TARGET_LL_ADDR
    )
    off = l4 + 24
    while off < end:
        if end - off < 2:
            raise Malformed("ndp_bad_option")
        opt_type, opt_len = buf[off], buf[off + 1] * 8
        if opt_len == 0 or off + opt_len > end:
            raise Malformed("ndp_bad_option")
        if opt_type == wanted and opt_len >= 8:
            pkt.nd_lladdr = bytes(buf[off + 2 : off + 8])
        off += opt_len


def l4_checksum_ok(pkt: Packet) -> bool:
    """True when the TCP/UDP/ICMP checksum verifies (IPv4 UDP checksum 0 means "none").

    Conntrack checks this in PREROUTING (``nf_conntrack_checksum``); fragments cannot be checked.
    """
    if pkt.l4 < 0 or pkt.fragment:
        return True
    data = memoryview(pkt.frame)[pkt.l4 : pkt.end]
    proto = pkt.proto
    if proto == IPPROTO_UDP and pkt.family == 4 and pkt.frame[pkt.l4 + 6 : pkt.l4 + 8] == b"\0\0":
        return True
    if proto == IPPROTO_ICMP:
        return ones_sum(data) == 0xFFFF
    if proto not in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6):
        return True
    initial = pseudo_header_sum(pkt.family, pkt.src, pkt.dst, proto, len(data))
    return ones_sum(data, initial) == 0xFFFF


def parse_inner(pkt: Packet) -> Packet:
    """The datagram quoted by an ICMP/ICMPv6 error, as a view over the *same* frame.

    NAT rewrites the quote in place (``nf_nat_icmp_reply_translation``) with the functions of
    ``controller.ip.mangle``. The quote is usually cut short, so lengths are not checked against the
    header: ``ip_len`` is the number of bytes quoted, and L4 fields are filled as far as present
    (``l4`` is set once the 8 bytes RFC 792 guarantees are there). Raises :class:`Malformed`.
    """
    if not pkt.is_icmp_error or pkt.l4 < 0:
        raise Malformed("not_icmp_error")
    buf, l3 = pkt.frame, pkt.l4 + ICMP_HLEN
    end = min(pkt.end, len(buf))
    inner = Packet(buf, pkt.eth_dst, pkt.eth_src, pkt.ethertype, pkt.encap, l3)
    avail = end - l3
    if pkt.family == 4:
        if avail < IPV4_HLEN or buf[l3] >> 4 != 4 or (buf[l3] & 0x0F) < 5:
            raise Malformed("icmp_inner_truncated")
        _vihl, _tos, _total, _id, frag, ttl, proto, _check, src, dst = _IPV4.unpack_from(buf, l3)
        ihl = (buf[l3] & 0x0F) * 4
        inner.options = ihl > IPV4_HLEN
        inner.dont_fragment = bool(frag & IP_DF)
        inner.fragment = bool(frag & (IP_MF | IP_OFFSET))
        inner.first_fragment = not frag & IP_OFFSET
        l4 = l3 + ihl
    else:
        if avail < IPV6_HLEN or buf[l3] >> 4 != 6:
            raise Malformed("icmp_inner_truncated")
        _first, _plen, proto, ttl, src, dst = _IPV6.unpack_from(buf, l3)
        inner.ext_header = proto not in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6)
        l4 = l3 + IPV6_HLEN
    inner.family, inner.proto, inner.src, inner.dst, inner.ttl = pkt.family, proto, src, dst, ttl
    inner.ip_len = avail
    if inner.ext_header or not inner.first_fragment or end - l4 < 8:
        return inner
    inner.l4 = l4
    if proto in (IPPROTO_TCP, IPPROTO_UDP):
        inner.sport, inner.dport = _PORTS.unpack_from(buf, l4)
        if proto == IPPROTO_TCP and end - l4 > 13:
            inner.tcp_flags = buf[l4 + 13]
    elif proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        inner.icmp_type, inner.icmp_code, _check, ident = _ICMP.unpack_from(buf, l4)
        if inner.icmp_type in (ICMP_ID_TYPES if proto == IPPROTO_ICMP else _ICMPV6_ECHO):
            inner.icmp_id = ident
    return inner
