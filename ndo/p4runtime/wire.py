"""Protobuf wire format, the little of it the write hot path needs.

A flow entry's update is mostly constant bytes (ids, tags, the idle timeout) around a dozen
short values. Precomputing the constant parts per field and value length and joining bytes costs
a few µs per update, where filling upb messages field by field costs ~10 µs. Field numbers come
from the generated descriptors, never from literals, so the bytes follow the .proto.
"""

from __future__ import annotations

from google.protobuf.message import Message

VARINT, LEN = 0, 2
_SMALL = [bytes((n,)) for n in range(0x80)]


def varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    if value < 0x4000:  # every length in a flow update
        return bytes((value & 0x7F | 0x80, value >> 7))
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def number(message: type[Message], field: str) -> int:
    return message.DESCRIPTOR.fields_by_name[field].number


def key(message: type[Message], field: str, wire_type: int) -> bytes:
    """The tag that starts ``field`` of ``message`` on the wire."""
    return varint(number(message, field) << 3 | wire_type)


def length_delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload
