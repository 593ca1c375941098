"""ICMP and ICMPv6 messages a router originates (RFC 792, RFC 1812 §4.3, RFC 4443).

Each builder takes the offending packet as parsed from the wire and the router address to send
from, and returns the whole IP datagram of the error, or ``None`` when the rules forbid an error:
never about an ICMP error, a non-first fragment, a link-layer broadcast/multicast, a packet sent
to a multicast/broadcast address, or one whose source is not a unicast host (RFC 1812
§4.3.2.7, RFC 4443 §2.4 (e)). The caller routes the datagram back like any locally sent packet.
"""

from __future__ import annotations

import enum
import ipaddress
import struct

from controller.ip import frames
from controller.ip.packet import (
    ICMP_DEST_UNREACH,
    ICMP_ECHO,
    ICMP_ECHOREPLY,
    ICMP_ERROR_TYPES,
    ICMP_PARAMETERPROB,
    ICMP_TIME_EXCEEDED,
    ICMPV6_DEST_UNREACH,
    ICMPV6_ECHO_REPLY,
    ICMPV6_ECHO_REQUEST,
    ICMPV6_PKT_TOOBIG,
    ICMPV6_TIME_EXCEED,
    IPV4_HLEN,
    IPV6_HLEN,
    Packet,
)
from controller.netfilter.ct import IPPROTO_ICMP, IPPROTO_ICMPV6

TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10
ICMP_HLEN = 8
IPV4_ERROR_MAX = 576  # RFC 1812 §4.3.2.3: the whole error datagram stays within 576 bytes
IPV6_ERROR_MAX = 1280  # RFC 4443 §2.4 (c): ... within the IPv6 minimum MTU
ICMP_ERROR_TOS = 0xC0  # IPTOS_PREC_INTERNETCONTROL, as the kernel's icmp_send sets it
ICMP_FRAG_NEEDED = 4
ICMP_SOURCE_QUENCH = 4  # a type, unlike ICMP_FRAG_NEEDED (a code of type 3)
NR_ICMP_TYPES = 18  # the kernel treats higher ICMP types as possible errors
ICMPV6_ERROR_TYPES_MAX = 127  # ICMPv6 types 0..127 are errors (RFC 4443 §2.1)


class Unreachable(enum.Enum):
    """Why a destination is unreachable; mapped to the code of each family."""

    NET = (0, 0)  # v4 net unreachable / v6 no route to destination
    HOST = (1, 3)  # v4 host unreachable / v6 address unreachable (neighbour resolution failed)
    PORT = (3, 4)  # v4 / v6 port unreachable
    ADMIN = (13, 1)  # v4 communication administratively prohibited / v6 administratively prohibited

    def code(self, family: int) -> int:
        return self.value[0] if family == 4 else self.value[1]


def time_exceeded(pkt: Packet, src: bytes) -> bytes | None:
    """TTL / hop limit exceeded in transit (code 0)."""
    icmp_type = ICMP_TIME_EXCEEDED if pkt.family == 4 else ICMPV6_TIME_EXCEED
    return _error(pkt, src, icmp_type, 0, bytes(4))


def dest_unreachable(pkt: Packet, src: bytes, why: Unreachable) -> bytes | None:
    """Destination unreachable with the family's code for ``why``."""
    icmp_type = ICMP_DEST_UNREACH if pkt.family == 4 else ICMPV6_DEST_UNREACH
    return _error(pkt, src, icmp_type, why.code(pkt.family), bytes(4))


def unreachable_code(pkt: Packet, src: bytes, code: int) -> bytes | None:
    """Destination unreachable with an explicit code: nft's ``reject with icmp[v6] type CODE``
    (``nf_send_unreach``/``nf_send_unreach6``)."""
    icmp_type = ICMP_DEST_UNREACH if pkt.family == 4 else ICMPV6_DEST_UNREACH
    return _error(pkt, src, icmp_type, code, bytes(4))


def tcp_reset(pkt: Packet) -> bytes | None:
    """The RST ``nf_send_reset``/``nf_send_reset6`` answer a TCP segment with: from its
    destination back to its source, ``seq = ack_seq`` if it had ACK, else ``ack = seq + SYN +
    FIN + payload`` with RST|ACK; never in answer to a RST or a non-first fragment."""
    if pkt.proto != 6 or pkt.l4 < 0 or not pkt.first_fragment or pkt.tcp_flags & TCP_RST:
        return None
    if not _is_host_source(pkt):
        return None
    seq_in, ack_in = struct.unpack_from("!II", pkt.frame, pkt.l4 + 4)
    doff = (pkt.frame[pkt.l4 + 12] >> 4) * 4
    payload = pkt.l4_len - doff
    if pkt.tcp_flags & TCP_ACK:
        seq, ack, flags = ack_in, 0, TCP_RST
    else:
        syn_fin = (1 if pkt.tcp_flags & TCP_SYN else 0) + (1 if pkt.tcp_flags & TCP_FIN else 0)
        seq, ack, flags = 0, (seq_in + syn_fin + payload) & 0xFFFFFFFF, TCP_RST | TCP_ACK
    segment = frames.tcp(pkt.dst, pkt.src, pkt.dport, pkt.sport, seq=seq, ack=ack, flags=flags,
                         window=0)
    return frames.ip(pkt.dst, pkt.src, 6, segment)


def packet_too_big(pkt: Packet, src: bytes, mtu: int) -> bytes | None:
    """IPv4 fragmentation needed and DF set (next-hop MTU, RFC 1191) / IPv6 packet too big.

    Sent for an oversize IPv4 packet with DF, or any oversize IPv6 packet (routers never fragment
    IPv6); an oversize IPv4 packet without DF would be fragmented instead, so ``None``.
    """
    if pkt.family == 4:
        if not pkt.dont_fragment:
            return None
        return _error(pkt, src, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, struct.pack("!HH", 0, mtu))
    return _error(pkt, src, ICMPV6_PKT_TOOBIG, 0, struct.pack("!I", mtu))


def echo_reply(pkt: Packet) -> bytes | None:
    """Answer an echo request sent to one of the router's own addresses (the caller checks that).

    The reply carries the request's identifier, sequence number and data unchanged.
    """
    if pkt.l4 < 0 or pkt.fragment or not _is_host_source(pkt):
        return None
    body = bytes(pkt.frame[pkt.l4 + 4 : pkt.end])
    if pkt.family == 4 and pkt.proto == IPPROTO_ICMP and pkt.icmp_type == ICMP_ECHO:
        message = frames.icmp(ICMP_ECHOREPLY, 0, body)
        return frames.ipv4(pkt.dst, pkt.src, IPPROTO_ICMP, message)
    if pkt.family == 6 and pkt.proto == IPPROTO_ICMPV6 and pkt.icmp_type == ICMPV6_ECHO_REQUEST:
        message = frames.icmpv6(pkt.dst, pkt.src, ICMPV6_ECHO_REPLY, 0, body)
        return frames.ipv6(pkt.dst, pkt.src, IPPROTO_ICMPV6, message)
    return None


def may_send_error(pkt: Packet, *, multicast_ok: bool = False) -> bool:
    """Whether an ICMP error about ``pkt`` is allowed at all.

    ``multicast_ok`` is RFC 4443 §2.4 (e.3)'s exception: packet too big is sent even for
    multicast destinations.
    """
    if pkt.family not in (4, 6) or not pkt.first_fragment or not _is_host_source(pkt):
        return False
    if pkt.family == 4:
        if pkt.proto == IPPROTO_ICMP and (
            pkt.icmp_type in ICMP_ERROR_TYPES or pkt.icmp_type > NR_ICMP_TYPES
        ):
            return False  # errors and unknown types, as icmp_send checks (RFC 1812 §4.3.2.7)
    elif pkt.proto == IPPROTO_ICMPV6 and pkt.icmp_type <= ICMPV6_ERROR_TYPES_MAX:
        return False
    if multicast_ok:
        return True
    return not (pkt.eth_dst[0] & 1) and not _is_group_address(pkt.dst)


def _error(pkt: Packet, src: bytes, icmp_type: int, code: int, rest: bytes) -> bytes | None:
    multicast_ok = pkt.family == 6 and icmp_type == ICMPV6_PKT_TOOBIG
    if not may_send_error(pkt, multicast_ok=multicast_ok):
        return None
    if pkt.family == 4:
        quote = bytes(pkt.frame[pkt.l3 : min(pkt.end, pkt.l3 + IPV4_ERROR_MAX - IPV4_HLEN - 8)])
        message = frames.icmp(icmp_type, code, rest + quote)
        tos = (pkt.frame[pkt.l3 + 1] & 0x1E) | ICMP_ERROR_TOS
        return frames.ipv4(src, pkt.src, IPPROTO_ICMP, message, tos=tos)
    quote = bytes(pkt.frame[pkt.l3 : min(pkt.end, pkt.l3 + IPV6_ERROR_MAX - IPV6_HLEN - 8)])
    message = frames.icmpv6(src, pkt.src, icmp_type, code, rest + quote)
    return frames.ipv6(src, pkt.src, IPPROTO_ICMPV6, message)


def _is_host_source(pkt: Packet) -> bool:
    """The source identifies one host: not unspecified, multicast, broadcast, loopback, class E."""
    addr = ipaddress.ip_address(pkt.src)
    return not (
        addr.is_unspecified
        or addr.is_multicast
        or addr.is_loopback
        or (pkt.family == 4 and (addr.is_reserved or pkt.src == b"\xff\xff\xff\xff"))
    )


def _is_group_address(dst: bytes) -> bool:
    """Multicast, limited broadcast (directed broadcasts are the router's to know: not here)."""
    if len(dst) == 4:
        return dst[0] >= 224 or dst == b"\xff\xff\xff\xff"
    return dst[0] == 0xFF


class RateLimiter:
    """The kernel's ICMP output limits, on the caller's clock.

    Per destination (``inet_peer_xrlim_allow``): a token bucket of ``ratelimit`` seconds per
    message with a burst of 6 (``XRLIM_BURST_FACTOR``), applied to destination unreachable, time
    exceeded and parameter problem (``icmp_ratemask``) but never to fragmentation needed / packet
    too big, which path MTU discovery depends on, nor to echo replies. Globally
    (``icmp_global_allow``): ``msgs_per_sec`` with a burst of ``msgs_burst``.
    """

    BURST_FACTOR = 6

    def __init__(
        self, ratelimit: float = 1.0, msgs_per_sec: int = 1000, msgs_burst: int = 50
    ) -> None:
        self.ratelimit = ratelimit
        self.msgs_per_sec = msgs_per_sec
        self.msgs_burst = msgs_burst
        self._peers: dict[bytes, tuple[float, float]] = {}  # dst -> (tokens, last)
        self._global: tuple[float, float] | None = None  # (credit, last)
        self.suppressed = 0

    def allow(self, datagram: bytes, now: float) -> bool:
        """Whether to send this router-originated ICMP/ICMPv6 datagram now (counts refusals)."""
        version = datagram[0] >> 4
        header = 20 if version == 4 else 40
        icmp_type, code = datagram[header], datagram[header + 1]
        if not _rate_limited(version, icmp_type, code):
            return True
        if not self._global_allow(now) or not self._peer_allow(datagram, version, now):
            self.suppressed += 1
            return False
        return True

    def _global_allow(self, now: float) -> bool:
        credit, last = self._global or (float(self.msgs_burst), now)
        credit = min(self.msgs_burst, credit + (now - last) * self.msgs_per_sec)
        allowed = credit >= 1
        self._global = (credit - 1 if allowed else credit, now)
        return allowed

    def _peer_allow(self, datagram: bytes, version: int, now: float) -> bool:
        dst = datagram[16:20] if version == 4 else datagram[24:40]
        timeout = self.ratelimit
        # A new peer starts with a full bucket (inet_getpeer sets rate_last 60 s back).
        tokens, last = self._peers.get(dst, (0.0, now - 60.0))
        tokens = min(tokens + now - last, self.BURST_FACTOR * timeout)
        allowed = tokens >= timeout
        self._peers[dst] = (tokens - timeout if allowed else tokens, now)
        return allowed

    def __len__(self) -> int:
        """How many destinations have limiter state."""
        return len(self._peers)

    def forget_before(self, when: float) -> None:
        """Drop per-destination state idle since ``when`` (inet_peer GC), bounding memory."""
        self._peers = {d: s for d, s in self._peers.items() if s[1] >= when}


def _rate_limited(version: int, icmp_type: int, code: int) -> bool:
    if version == 4:
        if icmp_type == ICMP_DEST_UNREACH and code == ICMP_FRAG_NEEDED:
            return False
        return icmp_type in (
            ICMP_DEST_UNREACH,
            ICMP_SOURCE_QUENCH,
            ICMP_TIME_EXCEEDED,
            ICMP_PARAMETERPROB,
        )
    return icmp_type <= ICMPV6_ERROR_TYPES_MAX and icmp_type != ICMPV6_PKT_TOOBIG
