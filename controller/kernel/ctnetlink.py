"""ctnetlink messages <-> plain values (struct, through :mod:`.nla`; no I/O).

What the kernel says about a connection (an event, or an answer to a dump) becomes a
:class:`CtEntry`; what kernel mode asks of it (a timeout, TCP window tracking off, a delete)
becomes message bytes. Attribute meanings follow ``ctnetlink_fill_info`` and
``ctnetlink_change_conntrack`` (net/netfilter/nf_conntrack_netlink.c).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from controller.kernel import nla
from controller.netfilter.ct import CtTuple, Status, TcpState

NLM_F_REQUEST = 0x01
NLM_F_ACK = 0x04
NLM_F_DUMP = 0x300
NLM_F_CREATE = 0x400
IP_CT_TCP_FLAG_CLOSE_INIT = 0x04
IP_CT_TCP_FLAG_BE_LIBERAL = 0x08
IP_CT_TCP_FLAG_MAXACK_SET = 0x20

NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 0, 1, 2
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


# Attribute numbers of include/uapi/linux/netfilter/nfnetlink_conntrack.h (only those used).
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
NFGENMSG = 4  # struct nfgenmsg: family u8, version u8, res_id be16
_ADDRESSES = {4: (CTA_IP_V4_SRC, CTA_IP_V4_DST, 4), 6: (CTA_IP_V6_SRC, CTA_IP_V6_DST, 16)}


def decode(data: bytes, msg_type: int, flags: int) -> CtEntry:
    """One ctnetlink message (header included) → :class:`CtEntry`; :class:`BadMessage` if not.

    Walks only the attributes kernel mode uses, as ``ctnetlink_fill_info`` lays them out
    (net/netfilter/nf_conntrack_netlink.c): a generic decoder (pyroute2's ``nfct_msg``) builds
    every attribute of every event, and that was ~28 % of kernel mode's CPU under load.
    """
    try:
        return _decode(data, msg_type, flags)
    except nla.BadAttributes as exc:
        raise BadMessage(str(exc)) from None


def _decode(data: bytes, msg_type: int, flags: int) -> CtEntry:
    top = nla.body_spans(data, NFGENMSG)
    family = _FAMILY.get(data[nla.HEADER.size])
    ct_id = nla.integer(data, top, CTA_ID, nla.BE32)
    orig = nla.nested(data, top, CTA_TUPLE_ORIG)
    reply = nla.nested(data, top, CTA_TUPLE_REPLY)
    if family is None or orig is None or reply is None or ct_id is None:
        raise BadMessage("ctnetlink entry without family, tuples or id")
    if msg_type == CT_DELETE:
        kind = DESTROY
    elif flags & NLM_F_CREATE:
        kind = NEW
    else:
        kind = UPDATE
    state, close_init = _tcp_info(data, nla.nested(data, top, CTA_PROTOINFO))
    counters = [nla.nested(data, top, k) for k in (CTA_COUNTERS_ORIG, CTA_COUNTERS_REPLY)]
    packets = bytes_ = None
    if counters[0] is not None and counters[1] is not None:
        packets = tuple(_counter(data, c, CTA_COUNTERS_PACKETS) for c in counters)
        bytes_ = tuple(_counter(data, c, CTA_COUNTERS_BYTES) for c in counters)
    return CtEntry(
        kind=kind,
        id=ct_id,
        tuples=(_tuple(data, family, orig), _tuple(data, family, reply)),
        status=Status(nla.integer(data, top, CTA_STATUS, nla.BE32) or 0),
        timeout=nla.integer(data, top, CTA_TIMEOUT, nla.BE32),
        tcp_state=state,
        tcp_close_init=close_init,
        helper=_helper(data, nla.nested(data, top, CTA_HELP)),
        mark=nla.integer(data, top, CTA_MARK, nla.BE32) or 0,
        zone=nla.integer(data, top, CTA_ZONE, nla.BE16) or 0,
        packets=packets,  # type: ignore[arg-type]
        bytes=bytes_,  # type: ignore[arg-type]
    )


def _tuple(data: bytes, family: int, where: nla.Spans) -> CtTuple:
    ip = nla.nested(data, where, CTA_TUPLE_IP)
    proto = nla.nested(data, where, CTA_TUPLE_PROTO)
    if ip is None or proto is None:
        raise BadMessage("ctnetlink tuple without addresses or protocol")
    src_kind, dst_kind, size = _ADDRESSES[family]
    src, dst = nla.raw(data, ip, src_kind), nla.raw(data, ip, dst_kind)
    if src is None or dst is None or len(src) != size or len(dst) != size:
        raise BadMessage("ctnetlink tuple without addresses")
    num = nla.integer(data, proto, CTA_PROTO_NUM, nla.U8)
    if num is None:
        raise BadMessage("ctnetlink tuple without a protocol number")
    sport = nla.integer(data, proto, CTA_PROTO_SRC_PORT, nla.BE16) or 0
    dport = nla.integer(data, proto, CTA_PROTO_DST_PORT, nla.BE16) or 0
    icmp_id = nla.integer(data, proto, CTA_PROTO_ICMP_ID, nla.BE16)
    if icmp_id is None:
        icmp_id = nla.integer(data, proto, CTA_PROTO_ICMPV6_ID, nla.BE16)
    if icmp_id is not None:
        sport, dport = icmp_id, 0
    return CtTuple(family, num, src, dst, sport, dport)


def _tcp_info(data: bytes, protoinfo: nla.Spans | None) -> tuple[TcpState | None, bool]:
    tcp = nla.nested(data, protoinfo, CTA_PROTOINFO_TCP) if protoinfo is not None else None
    if tcp is None:
        return None, False
    state = nla.integer(data, tcp, CTA_PROTOINFO_TCP_STATE, nla.U8)
    close_init = False
    for kind in (CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, CTA_PROTOINFO_TCP_FLAGS_REPLY):
        value = nla.integer(data, tcp, kind, nla.U8)  # struct nf_ct_tcp_flags: flags, mask
        if value is not None and value & IP_CT_TCP_FLAG_CLOSE_INIT:
            close_init = True
    return (TcpState(state) if state is not None else None), close_init


def _counter(data: bytes, where: nla.Spans, kind: int) -> int:
    """CTA_COUNTERS_{PACKETS,BYTES} (be64), or the 32-bit ones older kernels sent."""
    value = nla.integer(data, where, kind, nla.BE64)
    if value is None:
        value = nla.integer(data, where, kind + 2, nla.BE32)
    return value or 0


def _helper(data: bytes, where: nla.Spans | None) -> str | None:
    """CTA_HELP's CTA_HELP_NAME (``ctnetlink_dump_helpinfo``)."""
    name = nla.raw(data, where, CTA_HELP_NAME) if where is not None else None
    return name.split(b"\0", 1)[0].decode("ascii", "replace") if name is not None else None


# -- requests -------------------------------------------------------------------------------


def _request(msg_type: int, flags: int, seq: int, family: int, *attrs: bytes) -> bytes:
    nfgen = bytes((_AF.get(family, socket.AF_UNSPEC), 0, 0, 0))  # NFNETLINK_V0, res_id 0
    return nla.message(msg_type, flags, seq, nfgen + b"".join(attrs))


def _attr_tuple(t: CtTuple) -> bytes:
    """CTA_TUPLE_ORIG as ``ctnetlink_parse_tuple`` reads it."""
    src_kind, dst_kind, _ = _ADDRESSES[t.family]
    return nla.nest(
        CTA_TUPLE_ORIG,
        nla.nest(CTA_TUPLE_IP, nla.attr(src_kind, t.src), nla.attr(dst_kind, t.dst)),
        nla.nest(CTA_TUPLE_PROTO, nla.attr(CTA_PROTO_NUM, bytes((t.proto,))),
                 nla.attr(CTA_PROTO_SRC_PORT, nla.BE16.pack(t.sport)),
                 nla.attr(CTA_PROTO_DST_PORT, nla.BE16.pack(t.dport))))


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
    attrs = [_attr_tuple(orig)]
    if timeout is not None:
        attrs.append(nla.attr(CTA_TIMEOUT, nla.BE32.pack(max(0, int(timeout)))))
    mask = (IP_CT_TCP_FLAG_BE_LIBERAL if liberal else 0) | (
        IP_CT_TCP_FLAG_MAXACK_SET if clear_maxack else 0)
    if mask:
        flags = bytes((IP_CT_TCP_FLAG_BE_LIBERAL if liberal else 0, mask))
        attrs.append(nla.nest(CTA_PROTOINFO, nla.nest(
            CTA_PROTOINFO_TCP, nla.attr(CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, flags),
            nla.attr(CTA_PROTOINFO_TCP_FLAGS_REPLY, flags))))
    return _request(CT_NEW, NLM_F_REQUEST | NLM_F_ACK, seq, orig.family, *attrs)


def delete_request(seq: int, orig: CtTuple) -> bytes:
    """``conntrack -D`` of one entry."""
    return _request(CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, orig.family, _attr_tuple(orig))

