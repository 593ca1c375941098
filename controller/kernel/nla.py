"""Netlink attributes with struct: build requests and walk answers without a generic codec.

Kernel mode asks and hears the same few things per connection (``ip route get``, ``ip neigh
get``, a conntrack entry's fix-up, conntrack events): building each message from bytes and
reading only the attributes it needs costs a fraction of pyroute2's ``nlmsg`` objects, which
encode and decode every field through dictionaries. Layouts follow include/uapi/linux/netlink.h
(``struct nlmsghdr``, ``struct nlattr``, 4-byte alignment).
"""

from __future__ import annotations

import struct

NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
HEADER = struct.Struct("=IHHII")  # struct nlmsghdr: length, type, flags, seq, port id
_NLA = struct.Struct("=HH")  # struct nlattr: length, type
U8, BE16, BE32, BE64, U32 = (struct.Struct(f) for f in ("B", "!H", "!I", "!Q", "=I"))

Spans = dict[int, tuple[int, int]]  # attribute type → (start, end) of its payload in a message


class BadAttributes(ValueError):
    """Attributes that overrun their message, or a value shorter than its type."""


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    length = 4 + len(payload)
    return _NLA.pack(length, kind) + payload + b"\0" * (-length % 4)


def nest(kind: int, *children: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(children))


def message(msg_type: int, flags: int, seq: int, body: bytes) -> bytes:
    """A whole netlink message: header, then ``body`` (the family header and attributes)."""
    return HEADER.pack(HEADER.size + len(body), msg_type, flags, seq, 0) + body


def spans(data: bytes, start: int, end: int) -> Spans:
    """The attributes between ``start`` and ``end`` by type: where each payload lies (nothing
    is copied or decoded until asked for)."""
    out: Spans = {}
    unpack = _NLA.unpack_from
    while start + 4 <= end:
        length, kind = unpack(data, start)
        if length < 4 or start + length > end:
            raise BadAttributes("a netlink attribute overruns its message")
        out[kind & NLA_TYPE_MASK] = (start + 4, start + length)
        start += (length + 3) & ~3
    return out


def body_spans(data: bytes, family_header: int) -> Spans:
    """The top-level attributes of a whole message whose family header is that long."""
    if len(data) < HEADER.size + family_header:
        raise BadAttributes("a netlink message shorter than its headers")
    end = min(HEADER.unpack_from(data)[0], len(data))
    return spans(data, HEADER.size + family_header, end)


def nested(data: bytes, where: Spans, kind: int) -> Spans | None:
    span = where.get(kind)
    return spans(data, *span) if span is not None else None


def integer(data: bytes, where: Spans, kind: int, codec: struct.Struct) -> int | None:
    span = where.get(kind)
    if span is None:
        return None
    if span[1] - span[0] < codec.size:
        raise BadAttributes(f"netlink attribute {kind} is too short")
    return codec.unpack_from(data, span[0])[0]


def raw(data: bytes, where: Spans, kind: int) -> bytes | None:
    span = where.get(kind)
    return data[span[0]:span[1]] if span is not None else None
