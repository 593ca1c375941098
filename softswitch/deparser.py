"""Header serializers and the deparser: valid headers in ``order``, then the unparsed payload."""

from __future__ import annotations

from collections.abc import Callable

from softswitch.codegen import Generated, packed_source
from softswitch.json_model import HeaderInfo, Layout, get
from softswitch.state import PacketState

Serializer = Callable[[PacketState], bytes]


def make_serializer(h: HeaderInfo, gen: Generated | None = None) -> Serializer:
    """Pack the fields of ``h`` MSB-first into bytes (a varbit field at its current width);
    with ``gen``, a fixed-width header is one generated expression (the same shifts)."""
    specs = [(fi.slot, fi.width, (1 << fi.width) - 1) for fi in h.fields]
    if h.varbit is None:
        nbytes = h.fixed_bits // 8
        if gen is not None:
            return gen.function("serialize", "s", [
                "f = s.f", f"return ({packed_source(specs)}).to_bytes({nbytes:d}, 'big')"])

        def serialize(s: PacketState) -> bytes:
            f = s.f
            acc = 0
            for slot, width, mask in specs:
                acc = (acc << width) | (f[slot] & mask)
            return acc.to_bytes(nbytes, "big")

        return serialize
    index = h.index
    fixed = h.fixed_bits

    def serialize_vl(s: PacketState) -> bytes:
        f = s.f
        vl = s.vlen.get(index, 0)
        acc = 0
        for slot, width, mask in specs:
            if width == 0:
                acc = (acc << vl) | (f[slot] & ((1 << vl) - 1))
            else:
                acc = (acc << width) | (f[slot] & mask)
        return acc.to_bytes((fixed + vl) // 8, "big")

    return serialize_vl


def deparse_order(doc: dict, layout: Layout) -> list[int]:
    """Header indices of the (single, v1model) deparser, in emit order."""
    deparsers = get(doc, "deparsers", "$", list)
    if not deparsers:
        return []
    order = get(deparsers[0], "order", "$.deparsers[0]", list)
    return [layout.header(name, f"$.deparsers[0].order[{i}]").index for i, name in enumerate(order)]


def make_deparser(order: list[int], serializers: list[Serializer],
                  gen: Generated | None = None) -> Serializer:
    if gen is not None:  # the loop unrolled: one test and call per header in order
        parts = [f"({gen.bind(serializers[h])}(s) if valid[{h:d}] else b'')" for h in order]
        return gen.function("deparse", "s", ["valid = s.valid",
                                             f"return b''.join([{', '.join(parts)}]) + s.payload"])
    pairs = [(h, serializers[h]) for h in order]

    def deparse(s: PacketState) -> bytes:
        valid = s.valid
        return b"".join([ser(s) for h, ser in pairs if valid[h]]) + s.payload

    return deparse
