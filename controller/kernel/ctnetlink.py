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


def decode(data: bytes, msg_type: int, flags: int) -> CtEntry:
    """One ctnetlink message (header included) → :class:`CtEntry`; :class:`BadMessage` if not."""
    msg = nfct_msg(data)
    try:
        msg.decode()
    except Exception as exc:  # pyroute2 raises whatever its parsers hit
        raise BadMessage(f"undecodable ctnetlink message: {exc}") from None
    family = _FAMILY.get(msg["nfgen_family"])
    orig, reply = msg.get_attr("CTA_TUPLE_ORIG"), msg.get_attr("CTA_TUPLE_REPLY")
    ct_id = msg.get_attr("CTA_ID")
    if family is None or orig is None or reply is None or ct_id is None:
        raise BadMessage("ctnetlink entry without family, tuples or id")
    if msg_type == CT_DELETE:
        kind = DESTROY
    elif flags & NLM_F_CREATE:
        kind = NEW
    else:
        kind = UPDATE
    state, close_init = _tcp_info(msg.get_attr("CTA_PROTOINFO"))
    counters = [msg.get_attr(k) for k in ("CTA_COUNTERS_ORIG", "CTA_COUNTERS_REPLY")]
    packets = bytes_ = None
    if all(c is not None for c in counters):
        packets = tuple(_counter(c, "PACKETS") for c in counters)
        bytes_ = tuple(_counter(c, "BYTES") for c in counters)
    return CtEntry(
        kind=kind,
        id=ct_id,
        tuples=(_tuple(family, orig), _tuple(family, reply)),
        status=Status(msg.get_attr("CTA_STATUS") or 0),
        timeout=msg.get_attr("CTA_TIMEOUT"),
        tcp_state=state,
        tcp_close_init=close_init,
        helper=msg.get_attr("CTA_HELP"),
        mark=msg.get_attr("CTA_MARK") or 0,
        zone=msg.get_attr("CTA_ZONE") or 0,
        packets=packets,  # type: ignore[arg-type]
        bytes=bytes_,  # type: ignore[arg-type]
    )


def _tuple(family: int, nla: object) -> CtTuple:
    ip = nla.get_attr("CTA_TUPLE_IP")  # type: ignore[attr-defined]
    proto = nla.get_attr("CTA_TUPLE_PROTO")  # type: ignore[attr-defined]
    if ip is None or proto is None:
        raise BadMessage("ctnetlink tuple without addresses or protocol")
    v = "V4" if family == 4 else "V6"
    src, dst = ip.get_attr(f"CTA_IP_{v}_SRC"), ip.get_attr(f"CTA_IP_{v}_DST")
    if src is None or dst is None:
        raise BadMessage("ctnetlink tuple without addresses")
    num = proto.get_attr("CTA_PROTO_NUM")
    sport = proto.get_attr("CTA_PROTO_SRC_PORT") or 0
    dport = proto.get_attr("CTA_PROTO_DST_PORT") or 0
    icmp_id = proto.get_attr("CTA_PROTO_ICMP_ID") or proto.get_attr("CTA_PROTO_ICMPV6_ID")
    if icmp_id is not None:
        sport, dport = icmp_id, 0
    return CtTuple(
        family, num, ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed,
        sport, dport,
    )


def _tcp_info(protoinfo: object) -> tuple[TcpState | None, bool]:
    tcp = protoinfo.get_attr("CTA_PROTOINFO_TCP") if protoinfo is not None else None  # type: ignore[attr-defined]
    if tcp is None:
        return None, False
    state = tcp.get_attr("CTA_PROTOINFO_TCP_STATE")
    close_init = False
    for key in ("CTA_PROTOINFO_TCP_FLAGS_ORIGINAL", "CTA_PROTOINFO_TCP_FLAGS_REPLY"):
        value = tcp.get_attr(key)
        if value is not None and value[0] & IP_CT_TCP_FLAG_CLOSE_INIT:
            close_init = True
    return (TcpState(state) if state is not None else None), close_init


def _counter(nla: object, what: str) -> int:
    value = nla.get_attr(f"CTA_COUNTERS_{what}")  # type: ignore[attr-defined]
    if value is None:
        value = nla.get_attr(f"CTA_COUNTERS32_{what}")  # type: ignore[attr-defined]
    return value or 0


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
