"""rtnetlink messages <-> plain values: what kernel mode asks per connection (route and
neighbour lookups) with struct through :mod:`.nla`, the rest with pyroute2's codecs.

Requests kernel mode makes of the router namespace: ``ip route get``, ``ip neigh get``, and
the representors' configuration from the router TOML (addresses, static routes and
neighbours). Events it
watches: links (a representor going down), neighbours, routes.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

from pyroute2.netlink.rtnl import (
    RTM_DELNEIGH,
    RTM_GETNEIGH,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWNEIGH,
    RTM_NEWROUTE,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import (
    NTF_USE,
    NUD_FAILED,
    NUD_INCOMPLETE,
    NUD_NONE,
    NUD_PERMANENT,
)
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from controller.kernel import nla

NLM_F_REQUEST = 0x01
NLM_F_ACK = 0x04
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1

_AF = {4: socket.AF_INET, 6: socket.AF_INET6}


@dataclass(frozen=True, slots=True)
class Route:
    """``ip route get``'s answer: the output device, the gateway if any, the route's MTU."""

    oif: int
    gateway: bytes | None
    mtu: int | None


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A neighbour entry; ``mac`` None when unresolved (INCOMPLETE/FAILED) or deleted."""

    ifindex: int
    address: bytes
    mac: bytes | None


@dataclass(frozen=True, slots=True)
class Link:
    index: int
    name: str
    up: bool  # administratively up and carrier (IFF_UP and IFF_LOWER_UP)


def _finish(msg: object, msg_type: int, flags: int, seq: int) -> bytes:
    msg["header"]["type"] = msg_type  # type: ignore[index]
    msg["header"]["flags"] = flags  # type: ignore[index]
    msg["header"]["sequence_number"] = seq  # type: ignore[index]
    msg.encode()  # type: ignore[attr-defined]
    return bytes(msg.data)  # type: ignore[attr-defined]


def _family(address: bytes) -> int:
    return 4 if len(address) == 4 else 6


RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_METRICS = 1, 4, 5, 8
RTAX_MTU_ATTR = 2
NDA_DST, NDA_LLADDR = 1, 2
_RTMSG = struct.Struct("=BBBBBBBBI")  # struct rtmsg
_NDMSG = struct.Struct("=BBHiHBB")  # struct ndmsg


def route_get_request(seq: int, dst: bytes) -> bytes:
    """``ip route get DST`` (``inet_rtm_getroute``/``inet6_rtm_getroute``)."""
    body = _RTMSG.pack(_AF[_family(dst)], len(dst) * 8, 0, 0, 0, 0, 0, 0, 0)
    return nla.message(RTM_GETROUTE, NLM_F_REQUEST, seq, body + nla.attr(RTA_DST, dst))


def decode_route(data: bytes) -> Route | None:
    """The output device, gateway and MTU metric of a route message (struct, only those)."""
    top = nla.body_spans(data, _RTMSG.size)
    oif = nla.integer(data, top, RTA_OIF, nla.U32)
    if oif is None:
        return None
    metrics = nla.nested(data, top, RTA_METRICS)
    mtu = nla.integer(data, metrics, RTAX_MTU_ATTR, nla.U32) if metrics is not None else None
    return Route(oif, nla.raw(data, top, RTA_GATEWAY), mtu or None)


def _neigh(msg_type: int, flags: int, seq: int, ifindex: int, address: bytes, *,
           state: int = 0, ntf: int = 0, lladdr: bytes | None = None) -> bytes:
    body = _NDMSG.pack(_AF[_family(address)], 0, 0, ifindex, state, ntf, 0)
    body += nla.attr(NDA_DST, address)
    if lladdr is not None:
        body += nla.attr(NDA_LLADDR, lladdr)
    return nla.message(msg_type, flags, seq, body)


def neigh_get_request(seq: int, ifindex: int, address: bytes) -> bytes:
    return _neigh(RTM_GETNEIGH, NLM_F_REQUEST, seq, ifindex, address)


def neigh_use_request(seq: int, ifindex: int, address: bytes) -> bytes:
    """``NTF_USE``: ask the kernel to resolve a neighbour (``neigh_event_send``); the answer
    comes later as a neighbour event."""
    return _neigh(RTM_NEWNEIGH, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, seq,
                  ifindex, address, state=NUD_NONE, ntf=NTF_USE)


def neigh_add_request(seq: int, ifindex: int, address: bytes, mac: bytes) -> bytes:
    """``ip neigh replace ADDRESS lladdr MAC dev IFINDEX nud permanent``."""
    return _neigh(RTM_NEWNEIGH, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, seq,
                  ifindex, address, state=NUD_PERMANENT, lladdr=mac)


def decode_neigh(data: bytes, msg_type: int) -> Neighbour | None:
    top = nla.body_spans(data, _NDMSG.size)
    dst = nla.raw(data, top, NDA_DST)
    if dst is None:
        return None
    _, _, _, ifindex, state, _, _ = _NDMSG.unpack_from(data, nla.HEADER.size)
    lladdr = nla.raw(data, top, NDA_LLADDR)
    mac = None
    if msg_type != RTM_DELNEIGH and lladdr and not state & (NUD_INCOMPLETE | NUD_FAILED):
        mac = lladdr
    return Neighbour(ifindex, dst, mac)


def decode_link(data: bytes) -> Link | None:
    msg = ifinfmsg(data)
    msg.decode()
    name = msg.get_attr("IFLA_IFNAME")
    if name is None:
        return None
    flags = msg["flags"]
    return Link(msg["index"], name, bool(flags & IFF_UP and flags & IFF_LOWER_UP))


def address_add_request(seq: int, ifindex: int, interface: ipaddress.IPv4Interface
                        | ipaddress.IPv6Interface) -> bytes:
    """``ip addr add``; the kernel adds the connected route itself."""
    msg = ifaddrmsg()
    msg["family"] = _AF[interface.version]
    msg["prefixlen"] = interface.network.prefixlen
    msg["index"] = ifindex
    address = str(interface.ip)
    msg["attrs"] = [["IFA_LOCAL", address], ["IFA_ADDRESS", address]]
    return _finish(msg, RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq)


def route_add_request(seq: int, prefix: ipaddress.IPv4Network | ipaddress.IPv6Network,
                      gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
                      oif: int | None) -> bytes:
    """``ip route add PREFIX via GATEWAY`` or ``dev OIF`` (static, main table)."""
    msg = rtmsg()
    msg["family"] = _AF[prefix.version]
    msg["dst_len"] = prefix.prefixlen
    msg["table"] = RT_TABLE_MAIN
    msg["proto"] = RTPROT_STATIC
    msg["scope"] = RT_SCOPE_UNIVERSE if gateway is not None else RT_SCOPE_LINK
    msg["type"] = RTN_UNICAST
    attrs: list[list[object]] = [["RTA_DST", str(prefix.network_address)]]
    if gateway is not None:
        attrs.append(["RTA_GATEWAY", str(gateway)])
    if oif is not None:
        attrs.append(["RTA_OIF", oif])
    msg["attrs"] = attrs
    return _finish(msg, RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq)
