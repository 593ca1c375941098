"""Conntrack entry model shared by conntrack, NAT, the classic path and the flowtable.

Values follow the kernel (include/uapi/linux/netfilter/nf_conntrack_common.h and
nf_conntrack_tcp.h) so that what users read here matches what they know from ``conntrack -L``.
The state machines that change these objects live in ``controller.netfilter.conntrack``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

ORIGINAL = 0
REPLY = 1

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_GRE = 47
IPPROTO_ICMPV6 = 58


class CtTuple(NamedTuple):
    """One direction of a connection, as packets of that direction carry it.

    ``src``/``dst`` are 4 or 16 raw bytes. For TCP/UDP the ports; for ICMP echo ``sport`` is the
    identifier and ``dport`` is 0 (the kernel keys ICMP on id, type and code: type/code are implied
    by the direction of echo request/reply).
    """

    family: int  # 4 or 6
    proto: int
    src: bytes
    dst: bytes
    sport: int
    dport: int

    def inverted(self) -> CtTuple:
        return CtTuple(self.family, self.proto, self.dst, self.src, self.dport, self.sport)


class Status(enum.IntFlag):
    """``enum ip_conntrack_status`` bits (same bit numbers as the kernel)."""

    EXPECTED = 1 << 0
    SEEN_REPLY = 1 << 1
    ASSURED = 1 << 2
    CONFIRMED = 1 << 3
    SRC_NAT = 1 << 4
    DST_NAT = 1 << 5
    SEQ_ADJUST = 1 << 6
    SRC_NAT_DONE = 1 << 7
    DST_NAT_DONE = 1 << 8
    DYING = 1 << 9
    FIXED_TIMEOUT = 1 << 10
    TEMPLATE = 1 << 11
    NAT_CLASH = 1 << 12
    HELPER = 1 << 13
    OFFLOAD = 1 << 14
    HW_OFFLOAD = 1 << 15

    NAT_MASK = SRC_NAT | DST_NAT


NO_STATUS = Status(0)
_DYING, _CONFIRMED = Status.DYING.value, Status.CONFIRMED.value


class TcpState(enum.IntEnum):
    """``enum tcp_conntrack``."""

    NONE = 0
    SYN_SENT = 1
    SYN_RECV = 2
    ESTABLISHED = 3
    FIN_WAIT = 4
    CLOSE_WAIT = 5
    LAST_ACK = 6
    TIME_WAIT = 7
    CLOSE = 8
    SYN_SENT2 = 9


class CtInfo(enum.IntEnum):
    """``enum ip_conntrack_info`` as seen by rules (``ct state``)."""

    ESTABLISHED = 0
    RELATED = 1
    NEW = 2
    ESTABLISHED_REPLY = 3
    RELATED_REPLY = 4
    UNTRACKED = 7  # IP_CT_UNTRACKED: NDP/MLD, which conntrack deliberately leaves alone
    INVALID = 99  # no conntrack entry could be associated (nft: ct state invalid)


@dataclass(eq=False, slots=True)
class TcpTrack:
    """Per-direction TCP tracking the flowtable touches on offload and teardown."""

    liberal: bool = False  # IP_CT_TCP_FLAG_BE_LIBERAL: window tracking off
    max_window: int = 0  # td_maxwin; cleared on teardown
    maxack_set: bool = False  # IP_CT_TCP_FLAG_MAXACK_SET
    max_ack: int = 0  # td_maxack: highest ACK this direction sent (valid when maxack_set)
    close_init: bool = False  # IP_CT_TCP_FLAG_CLOSE_INIT


@dataclass(eq=False, slots=True)
class Conn:
    """One connection: ``struct nf_conn`` reduced to what a router mirror needs.

    ``tuples[ORIGINAL]`` is what the initiator sent; ``tuples[REPLY]`` is what replies carry,
    so with NAT it holds the translated addresses. ``timeout`` is an absolute deadline on the
    caller's clock.
    """

    tuples: tuple[CtTuple, CtTuple]
    status: Status = NO_STATUS
    timeout: float = 0.0
    tcp_state: TcpState = TcpState.NONE
    tcp: tuple[TcpTrack, TcpTrack] = field(default_factory=lambda: (TcpTrack(), TcpTrack()))
    helper: str | None = None
    mark: int = 0
    zone: int = 0
    packets: list[int] = field(default_factory=lambda: [0, 0])
    bytes: list[int] = field(default_factory=lambda: [0, 0])
    id: int = 0  # stable id for display and events
    # Tracker scratch owned by conntrack (kernel ct->proto.tcp.last_{index,dir,flags}
    # and ct->proto.udp.stream_ts): what the TCP state machine and the UDP stream rule remember.
    last_index: int = 5  # TCP_NONE_SET
    last_dir: int = ORIGINAL
    last_flags: int = 0
    last_end: int = 0  # sequence number after the last ACK-only segment (RST "train" check)
    stream_ts: float = 0.0

    @property
    def proto(self) -> int:
        return self.tuples[ORIGINAL].proto

    @property
    def family(self) -> int:
        return self.tuples[ORIGINAL].family

    # int operations on the hot path: IntFlag's & builds a member per call (8x the cost)
    @property
    def dying(self) -> bool:
        return bool(int(self.status) & _DYING)

    @property
    def confirmed(self) -> bool:
        return bool(int(self.status) & _CONFIRMED)
