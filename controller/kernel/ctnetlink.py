"""ctnetlink messages <-> plain values (pyroute2's ``nfct_msg`` codec, no I/O).

What the kernel says about a connection (an event, or an answer to a dump) becomes a
:class:`CtEntry`; what kernel mode asks of it (a timeout, TCP window tracking off, a delete)
becomes message bytes. Attribute meanings follow ``ctnetlink_fill_info`` and
``ctnetlink_change_conntrack`` (net/netfilter/nf_conntrack_netlink.c).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_CTNETLINK
from pyroute2.netlink.nfnetlink.nfctsocket import (
    IPCTNL_MSG_CT_DELETE,
    IPCTNL_MSG_CT_GET,
    IPCTNL_MSG_CT_NEW,
    NFCTAttrTuple,
    nfct_msg,
)

from controller.netfilter.ct import CtTuple, Status, TcpState

NLM_F_REQUEST = 0x01
NLM_F_ACK = 0x04
NLM_F_DUMP = 0x300
NLM_F_CREATE = 0x400
IP_CT_TCP_FLAG_CLOSE_INIT = 0x04
IP_CT_TCP_FLAG_BE_LIBERAL = 0x08
IP_CT_TCP_FLAG_MAXACK_SET = 0x20

CT_NEW = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
CT_DELETE = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE
CT_GET = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET

NEW, UPDATE, DESTROY = "NEW", "UPDATE", "DESTROY"

_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_FAMILY = {socket.AF_INET: 4, socket.AF_INET6: 6}


class BadMessage(ValueError):
    """A ctnetlink message without the attributes every entry carries."""


@dataclass(frozen=True, slots=True)
class CtEntry:
    """One conntrack entry as the kernel reported it.

    ``kind`` is NEW (IPCTNL_MSG_CT_NEW with NLM_F_CREATE), UPDATE, or DESTROY; a dump answer is
    UPDATE. ``timeout`` is seconds left (absent in DESTROY); counters are present when
    ``nf_conntrack_acct`` is on.
    """

    kind: str
    id: int
    tuples: tuple[CtTuple, CtTuple]
    status: Status
    timeout: int | None = None
    tcp_state: TcpState | None = None
    tcp_close_init: bool = False  # either direction sent a FIN (IP_CT_TCP_FLAG_CLOSE_INIT)
    helper: str | None = None
    mark: int = 0
    zone: int = 0
    packets: tuple[int, int] | None = None
    bytes: tuple[int, int] | None = None


# Attribute numbers of include/uapi/linux/netfilter/nfnetlink_conntrack.h (only those read).
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_STATUS, CTA_PROTOINFO, CTA_HELP = 1, 2, 3, 4, 5
CTA_TIMEOUT, CTA_MARK, CTA_COUNTERS_ORIG, CTA_COUNTERS_REPLY, CTA_ID = 7, 8, 9, 10, 12
CTA_ZONE = 18
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT, CTA_PROTO_ICMP_ID = 1, 2, 3, 4
CTA_PROTO_ICMPV6_ID = 7
CTA_PROTOINFO_TCP = 1
CTA_PROTOINFO_TCP_STATE, CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, CTA_PROTOINFO_TCP_FLAGS_REPLY = 1, 4, 5
CTA_COUNTERS_PACKETS, CTA_COUNTERS_BYTES, CTA_COUNTERS32_PACKETS, CTA_COUNTERS32_BYTES = 1, 2, 3, 4
CTA_HELP_NAME = 1
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
_NLA = struct.Struct("=HH")
_BE16, _BE32, _BE64 = struct.Struct("!H"), struct.Struct("!I"), struct.Struct("!Q")
_BODY = 20  # struct nlmsghdr, then struct nfgenmsg (family u8, version u8, res_id be16)
_Spans = dict[int, tuple[int, int]]  # attribute type → (start, end) of its payload in the message


def _attrs(data: bytes, start: int, end: int) -> _Spans:
    """The attributes between ``start`` and ``end``, by type: where each payload lies (nothing
    is copied or decoded until asked for)."""
    spans: _Spans = {}
    unpack = _NLA.unpack_from
    while start + 4 <= end:
        length, kind = unpack(data, start)
        if length < 4 or start + length > end:
            raise BadMessage("ctnetlink attribute overruns its message")
        spans[kind & NLA_TYPE_MASK] = (start + 4, start + length)
        start += (length + 3) & ~3
    return spans


def _nested(data: bytes, spans: _Spans, kind: int) -> _Spans | None:
    span = spans.get(kind)
    return _attrs(data, *span) if span is not None else None


def _int(data: bytes, spans: _Spans, kind: int, codec: struct.Struct) -> int | None:
    span = spans.get(kind)
    if span is None:
        return None
    if span[1] - span[0] < codec.size:
        raise BadMessage(f"ctnetlink attribute {kind} too short")
    return codec.unpack_from(data, span[0])[0]


def decode(data: bytes, msg_type: int, flags: int) -> CtEntry:
    """One ctnetlink message (header included) → :class:`CtEntry`; :class:`BadMessage` if not.

    Walks only the attributes kernel mode uses, as ``ctnetlink_fill_info`` lays them out
    (net/netfilter/nf_conntrack_netlink.c), with struct: a generic netlink decoder (pyroute2's
    ``nfct_msg``) builds every attribute of every event and cost kernel mode ~20 % of its CPU.
    """
    if len(data) < _BODY:
        raise BadMessage("ctnetlink message shorter than its headers")
    length = min(HEADER.unpack_from(data)[0], len(data))
    top = _attrs(data, _BODY, length)
    family = _FAMILY.get(data[16])
    ct_id = _int(data, top, CTA_ID, _BE32)
    orig, reply = _nested(data, top, CTA_TUPLE_ORIG), _nested(data, top, CTA_TUPLE_REPLY)
    if family is None or orig is None or reply is None or ct_id is None:
        raise BadMessage("ctnetlink entry without family, tuples or id")
    if msg_type == CT_DELETE:
        kind = DESTROY
    elif flags & NLM_F_CREATE:
        kind = NEW
    else:
        kind = UPDATE
    state, close_init = _tcp_info(data, _nested(data, top, CTA_PROTOINFO))
    counters = [_nested(data, top, k) for k in (CTA_COUNTERS_ORIG, CTA_COUNTERS_REPLY)]
    packets = bytes_ = None
    if counters[0] is not None and counters[1] is not None:
        packets = tuple(_counter(data, c, CTA_COUNTERS_PACKETS) for c in counters)
        bytes_ = tuple(_counter(data, c, CTA_COUNTERS_BYTES) for c in counters)
    return CtEntry(
        kind=kind,
        id=ct_id,
        tuples=(_tuple(data, family, orig), _tuple(data, family, reply)),
        status=Status(_int(data, top, CTA_STATUS, _BE32) or 0),
        timeout=_int(data, top, CTA_TIMEOUT, _BE32),
        tcp_state=state,
        tcp_close_init=close_init,
        helper=_helper(data, _nested(data, top, CTA_HELP)),
        mark=_int(data, top, CTA_MARK, _BE32) or 0,
        zone=_int(data, top, CTA_ZONE, _BE16) or 0,
        packets=packets,  # type: ignore[arg-type]
        bytes=bytes_,  # type: ignore[arg-type]
    )


_ADDRESSES = {4: (CTA_IP_V4_SRC, CTA_IP_V4_DST, 4), 6: (CTA_IP_V6_SRC, CTA_IP_V6_DST, 16)}


def _tuple(data: bytes, family: int, spans: _Spans) -> CtTuple:
    ip, proto = _nested(data, spans, CTA_TUPLE_IP), _nested(data, spans, CTA_TUPLE_PROTO)
    if ip is None or proto is None:
        raise BadMessage("ctnetlink tuple without addresses or protocol")
    src_kind, dst_kind, size = _ADDRESSES[family]
    src, dst = ip.get(src_kind), ip.get(dst_kind)
    if src is None or dst is None or src[1] - src[0] != size or dst[1] - dst[0] != size:
        raise BadMessage("ctnetlink tuple without addresses")
    num = _int(data, proto, CTA_PROTO_NUM, _U8)
    if num is None:
        raise BadMessage("ctnetlink tuple without a protocol number")
    sport = _int(data, proto, CTA_PROTO_SRC_PORT, _BE16) or 0
    dport = _int(data, proto, CTA_PROTO_DST_PORT, _BE16) or 0
    icmp_id = _int(data, proto, CTA_PROTO_ICMP_ID, _BE16)
    if icmp_id is None:
        icmp_id = _int(data, proto, CTA_PROTO_ICMPV6_ID, _BE16)
    if icmp_id is not None:
        sport, dport = icmp_id, 0
    return CtTuple(family, num, data[src[0]:src[1]], data[dst[0]:dst[1]], sport, dport)


_U8 = struct.Struct("B")


def _tcp_info(data: bytes, protoinfo: _Spans | None) -> tuple[TcpState | None, bool]:
    tcp = _nested(data, protoinfo, CTA_PROTOINFO_TCP) if protoinfo is not None else None
    if tcp is None:
        return None, False
    state = _int(data, tcp, CTA_PROTOINFO_TCP_STATE, _U8)
    close_init = False
    for kind in (CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, CTA_PROTOINFO_TCP_FLAGS_REPLY):
        value = _int(data, tcp, kind, _U8)  # struct nf_ct_tcp_flags: flags, then mask
        if value is not None and value & IP_CT_TCP_FLAG_CLOSE_INIT:
            close_init = True
    return (TcpState(state) if state is not None else None), close_init


def _counter(data: bytes, spans: _Spans, kind: int) -> int:
    """CTA_COUNTERS_{PACKETS,BYTES} (be64), or the 32-bit ones older kernels sent."""
    value = _int(data, spans, kind, _BE64)
    if value is None:
        value = _int(data, spans, kind + 2, _BE32)
    return value or 0


def _helper(data: bytes, spans: _Spans | None) -> str | None:
    """CTA_HELP's CTA_HELP_NAME (``ctnetlink_dump_helpinfo``)."""
    span = spans.get(CTA_HELP_NAME) if spans is not None else None
    if span is None:
        return None
    return data[span[0]:span[1]].split(b"\0", 1)[0].decode("ascii", "replace")


# -- requests -------------------------------------------------------------------------------


def _request(msg_type: int, flags: int, seq: int, family: int, **attrs: object) -> bytes:
    msg = nfct_msg.create_from(**attrs)
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg["nfgen_family"] = _AF.get(family, socket.AF_UNSPEC)
    msg.encode()
    return bytes(msg.data)


def _attr_tuple(t: CtTuple) -> NFCTAttrTuple:
    return NFCTAttrTuple(
        family=_AF[t.family],
        saddr=str(ipaddress.ip_address(t.src)),
        daddr=str(ipaddress.ip_address(t.dst)),
        proto=t.proto,
        sport=t.sport,
        dport=t.dport,
    )


def dump_request(seq: int) -> bytes:
    """Every entry of every family (``conntrack -L``)."""
    return _request(CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)


def update_request(
    seq: int, orig: CtTuple, *, timeout: int | None = None, liberal: bool = False,
    clear_maxack: bool = False,
) -> bytes:
    """Change an existing entry (``ctnetlink_change_conntrack``): its timeout; TCP window
    tracking off in both directions (``nft_flow_offload_eval`` on offload); the stale
    ``td_maxack`` forgotten (``flow_offload_fixup_tcp`` on teardown), or the kernel holds a
    RST whose sequence number it cannot check to ESTABLISHED."""
    attrs: dict[str, object] = {"tuple_orig": _attr_tuple(orig)}
    if timeout is not None:
        attrs["timeout"] = max(0, int(timeout))
    mask = (IP_CT_TCP_FLAG_BE_LIBERAL if liberal else 0) | (
        IP_CT_TCP_FLAG_MAXACK_SET if clear_maxack else 0)
    if mask:
        flags = (IP_CT_TCP_FLAG_BE_LIBERAL if liberal else 0, mask)
        attrs["protoinfo"] = {"attrs": [["CTA_PROTOINFO_TCP", {"attrs": [
            ["CTA_PROTOINFO_TCP_FLAGS_ORIGINAL", {"value": flags}],
            ["CTA_PROTOINFO_TCP_FLAGS_REPLY", {"value": flags}],
        ]}]]}
    return _request(CT_NEW, NLM_F_REQUEST | NLM_F_ACK, seq, orig.family, **attrs)


def delete_request(seq: int, orig: CtTuple) -> bytes:
    """``conntrack -D`` of one entry."""
    return _request(CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, orig.family,
                    tuple_orig=_attr_tuple(orig))


HEADER = struct.Struct("=IHHII")  # struct nlmsghdr
