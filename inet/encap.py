"""L2 encapsulations below IP: 802.1Q / 802.1ad tags and PPPoE sessions (struct only).

The kernel flowtable keys a flow on up to two of them (``struct flow_offload_tuple``
``encap[NF_FLOW_TABLE_ENCAP_MAX]``, each ``{id, proto}``), pops them on the way in and pushes the
other direction's on the way out (``nf_flow_encap_pop`` / ``nf_flow_encap_push``). The router's
parser, the software fast path and the memory driver all read and write them, so the header
arithmetic lives here once. Lists are outermost first, as on the wire; which lists the fast
path takes follows ``nf_flow_tuple_encap`` / ``nf_flow_skb_encap_protocol``: an outer tag of
either TPID (the one the NIC strips into the hardware-accelerated tag), then an in-band 802.1Q
tag or a PPPoE session; or a PPPoE session alone. flowtable.p4 parses exactly these.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
ETH_P_PPP_DISC = 0x8863
ETH_P_PPP_SES = 0x8864
PPP_IP = 0x0021
PPP_IPV6 = 0x0057
ENCAP_MAX = 2  # NF_FLOW_TABLE_ENCAP_MAX
VLAN_HLEN = 4
PPPOE_SES_HLEN = 8  # PPPoE header (6) + PPP protocol (2)
VLAN_PROTOS = frozenset({ETH_P_8021Q, ETH_P_8021AD})

_ETHERTYPE_OF_PPP = {PPP_IP: ETH_P_IP, PPP_IPV6: ETH_P_IPV6}
_PPP_OF_ETHERTYPE = {ETH_P_IP: PPP_IP, ETH_P_IPV6: PPP_IPV6}
_H = struct.Struct("!H")
_TAG = struct.Struct("!HH")
_PPPOE = struct.Struct("!BBHHH")


class Encap(NamedTuple):
    """One encapsulation: a VLAN id with its TPID, or a PPPoE session id with 0x8864."""

    id: int
    proto: int

    def __str__(self) -> str:
        if self.proto == ETH_P_PPP_SES:
            return f"pppoe:{self.id:#06x}"
        return f"vlan:{self.id}" + ("" if self.proto == ETH_P_8021Q else "/802.1ad")


Encaps = tuple[Encap, ...]


class Walk(NamedTuple):
    """What :func:`walk` found: the encapsulations, where the payload starts and what it is.

    ``ethertype`` is the payload's EtherType (a PPPoE session's PPP protocol mapped to 0x0800 /
    0x86DD); for a payload the fast path does not take it is the header type that stopped the
    walk: ETH_P_PPP_SES (a PPP protocol other than IP: LCP, IPCP, ...), ETH_P_PPP_DISC, or a
    TPID / 0x8864 beyond what the fast path takes (``unsupported`` set).
    """

    encaps: Encaps
    offset: int
    ethertype: int
    unsupported: bool = False


def walk(buf: bytes | bytearray | memoryview, offset: int = 12) -> Walk | None:
    """The encapsulations from the EtherType field at ``offset``; None if the frame ends
    inside one of them."""
    size = len(buf)
    if size < offset + 2:
        return None
    ethertype = _H.unpack_from(buf, offset)[0]
    encaps: list[Encap] = []
    at = offset + 2
    while True:
        depth = len(encaps)
        if ethertype in VLAN_PROTOS:
            if depth >= ENCAP_MAX or (depth == 1 and ethertype != ETH_P_8021Q):
                return Walk(tuple(encaps), at, ethertype, True)
            if size < at + VLAN_HLEN:
                return None
            tci, inner = _TAG.unpack_from(buf, at)
            encaps.append(Encap(tci & 0x0FFF, ethertype))
            ethertype = inner
            at += VLAN_HLEN
        elif ethertype == ETH_P_PPP_SES:
            if depth >= ENCAP_MAX:
                return Walk(tuple(encaps), at, ethertype, True)
            if size < at + PPPOE_SES_HLEN:
                return None
            _vt, _code, sid, _length, ppp = _PPPOE.unpack_from(buf, at)
            encaps.append(Encap(sid, ETH_P_PPP_SES))
            mapped = _ETHERTYPE_OF_PPP.get(ppp)
            if mapped is None:
                return Walk(tuple(encaps), at, ETH_P_PPP_SES)
            return Walk(tuple(encaps), at + PPPOE_SES_HLEN, mapped)
        else:
            return Walk(tuple(encaps), at, ethertype)


def problem(encaps: Encaps) -> str | None:
    """Why ``encaps`` is not a list the kernel builds (None when it is)."""
    if len(encaps) > ENCAP_MAX:
        return f"{len(encaps)} encapsulations (at most {ENCAP_MAX})"
    for i, (ident, proto) in enumerate(encaps):
        if proto in VLAN_PROTOS:
            if not 0 <= ident <= 0x0FFF:
                return f"VLAN id {ident} out of range"
            if i == 1 and (proto != ETH_P_8021Q or encaps[0].proto == ETH_P_PPP_SES):
                return "the inner tag must be 802.1Q under a tag"
        elif proto == ETH_P_PPP_SES:
            if not 0 <= ident <= 0xFFFF:
                return f"PPPoE session {ident} out of range"
            if i != len(encaps) - 1:
                return "PPPoE must be the innermost encapsulation"
        else:
            return f"unknown encapsulation protocol {proto:#06x}"
    return None


def header(encaps: Encaps, ethertype: int, ip_len: int) -> bytes:
    """The bytes from the EtherType field to the L3 header for a payload of ``ethertype`` and
    ``ip_len`` bytes under ``encaps`` (``nf_flow_encap_push``: tags with PCP 0, PPPoE version 1
    type 1 code 0, length = PPP protocol + payload)."""
    out = b""
    inner = ethertype
    for ident, proto in reversed(encaps):
        if proto == ETH_P_PPP_SES:
            out = _PPPOE.pack(0x11, 0, ident, ip_len + 2, _PPP_OF_ETHERTYPE[inner]) + out
        else:
            out = _TAG.pack(ident & 0x0FFF, inner) + out
        inner = proto
    return _H.pack(inner) + out
