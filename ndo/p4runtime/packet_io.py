"""Packet-in decoding and packet-out encoding against flowtable.p4's controller headers.

Frames come from the switch and may be anything: a short payload, a missing or unknown
metadata field or a full queue is counted and the frame dropped (or, for unknown extra
metadata, delivered), never raised.
"""

from __future__ import annotations

from collections import Counter

from finsy.proto import p4r

from ndo.api import PacketIn, PuntReason
from ndo.p4runtime.codec import canonical_int
from ndo.p4runtime.schema import FlowSchema

MIN_FRAME = 14  # an Ethernet header
_REASONS = {int(r): r for r in PuntReason}


class PacketCodec:
    """Turns stream PacketIn messages into :class:`PacketIn` values and back for packet-out."""

    def __init__(self, schema: FlowSchema, counters: Counter[str]) -> None:
        self.counters = counters
        self._port_id = schema.packet_in.id_of("ingress_port")
        self._reason_id = schema.packet_in.id_of("reason")
        self._egress_id = schema.packet_out.id_of("egress_port")
        self._egress_limit = 1 << schema.packet_out.bits_of("egress_port")

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

    def encode(self, frame: bytes, egress_port: int) -> p4r.StreamMessageRequest | None:
        """The packet-out stream message, or None (counted) for a frame the switch must not get."""
        if len(frame) < MIN_FRAME:
            self.counters["packet_out_short"] += 1
            return None
        if not 0 <= egress_port < self._egress_limit:
            self.counters["packet_out_bad_port"] += 1
            return None
        packet = p4r.PacketOut(payload=frame)
        packet.metadata.add(metadata_id=self._egress_id, value=canonical_int(egress_port))
        return p4r.StreamMessageRequest(packet=packet)
