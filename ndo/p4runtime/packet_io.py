"""Packet-in decoding and packet-out encoding against flowtable.p4's controller headers.

Frames come from the switch and may be anything: a short payload, a missing or unknown
metadata field or a full queue is counted and the frame dropped (or, for unknown extra
metadata, delivered), never raised.

A packet-out is written straight in wire format: the message is the frame between a few
constant bytes (tags, and the egress port's metadata, built once per port), which costs a
fraction of filling a PacketOut and a StreamMessageRequest and serializing them per packet.
"""

from __future__ import annotations

from collections import Counter

from finsy.proto import p4r

from ndo.api import PacketIn, PuntReason
from ndo.p4runtime import wire
from ndo.p4runtime.codec import canonical_int
from ndo.p4runtime.schema import FlowSchema

MIN_FRAME = 14  # an Ethernet header
_REASONS = {int(r): r for r in PuntReason}
_PACKET = wire.key(p4r.StreamMessageRequest, "packet", wire.LEN)
_PAYLOAD = wire.key(p4r.PacketOut, "payload", wire.LEN)
_METADATA = wire.key(p4r.PacketOut, "metadata", wire.LEN)
_METADATA_ID = wire.key(p4r.PacketMetadata, "metadata_id", wire.VARINT)
_VALUE = wire.key(p4r.PacketMetadata, "value", wire.LEN)


class PacketCodec:
    """Turns stream PacketIn messages into :class:`PacketIn` values and back for packet-out."""

    def __init__(self, schema: FlowSchema, counters: Counter[str]) -> None:
        self.counters = counters
        self._port_id = schema.packet_in.id_of("ingress_port")
        self._reason_id = schema.packet_in.id_of("reason")
        self._egress_id = schema.packet_out.id_of("egress_port")
        self._egress_limit = 1 << schema.packet_out.bits_of("egress_port")
        self._egress_metadata: dict[int, bytes] = {}

    def decode(self, message: p4r.PacketIn) -> PacketIn | None:
        """The punted frame, or None (counted) when it cannot be delivered."""
        if len(message.payload) < MIN_FRAME:
            self.counters["packet_in_short"] += 1
            return None
        port = reason = None
        for meta in message.metadata:
            if meta.metadata_id == self._port_id:
                port = int.from_bytes(meta.value, "big")
            elif meta.metadata_id == self._reason_id:
                reason = int.from_bytes(meta.value, "big")
            else:
                self.counters["packet_in_unknown_metadata"] += 1
        if port is None or reason is None:
            self.counters["packet_in_missing_metadata"] += 1
            return None
        self.counters["packet_in"] += 1
        return PacketIn(bytes(message.payload), port, _REASONS.get(reason, reason))

    def encode(self, frame: bytes, egress_port: int) -> bytes | None:
        """The packet-out StreamMessageRequest in wire format, or None (counted) for a frame
        the switch must not get."""
        if len(frame) < MIN_FRAME:
            self.counters["packet_out_short"] += 1
            return None
        metadata = self._egress_metadata.get(egress_port)
        if metadata is None:
            if not 0 <= egress_port < self._egress_limit:
                self.counters["packet_out_bad_port"] += 1
                return None
            metadata = self._egress_metadata[egress_port] = self._metadata(egress_port)
        packet = _PAYLOAD + wire.varint(len(frame)) + frame + metadata
        return _PACKET + wire.varint(len(packet)) + packet

    def _metadata(self, egress_port: int) -> bytes:
        field = _METADATA_ID + wire.varint(self._egress_id) + wire.length_delimited(
            _VALUE, canonical_int(egress_port))
        return wire.length_delimited(_METADATA, field)
