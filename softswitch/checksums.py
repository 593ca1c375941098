"""Named calculations (``calculations``) and checksum verify/update (``checksums``).

A calculation packs its inputs MSB-first into a bit string (skipping fields of invalid headers,
padding the tail to a byte as bm_sim does), optionally followed by the deparsed bytes of every
valid header after the last input header plus the payload, and feeds the bytes to a hash algorithm
with BMv2's definitions (csum16 = Internet checksum, crc16 = CRC-16/ARC, crc32 = zlib's CRC-32).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

from softswitch.codegen import Generated, packed_source
from softswitch.expressions import Expr, ExprCompiler, field_setter
from softswitch.json_model import Layout, fail, get, parse_hexstr
from softswitch.state import PacketState

Serializer = Callable[[PacketState], bytes]


def csum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(memoryview(data).cast("H")) if data else 0
    # memoryview.cast("H") is native-endian; fold and byte-swap on little-endian hosts.
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    if _LITTLE:
        total = ((total & 0xFF) << 8) | (total >> 8)
    return (~total) & 0xFFFF


_LITTLE = memoryview(b"\x01\x00").cast("H")[0] == 1


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC16 = _crc16_table()


def crc16(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = (crc >> 8) ^ _CRC16[(crc ^ b) & 0xFF]
    return crc


def crc32(data: bytes) -> int:
    return zlib.crc32(data)


def identity(data: bytes) -> int:
    return int.from_bytes(data, "big")


def xor16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    out = 0
    for i in range(0, len(data), 2):
        out ^= (data[i] << 8) | data[i + 1]
    return out


ALGORITHMS: dict[str, Callable[[bytes], int]] = {
    "csum16": csum16,
    "crc16": crc16,
    "crc32": crc32,
    # BMv2's *_custom algorithms start with the standard parameters; reconfiguring them is a
    # runtime CLI feature this target does not offer.
    "crc16_custom": crc16,
    "crc32_custom": crc32,
    "identity": identity,
    "xor16": xor16,
}


@dataclass(slots=True)
class Calculation:
    name: str
    algo: str
    compute: Callable[[PacketState, tuple[int, ...]], int]


def compile_calculation(
    doc: dict,
    path: str,
    layout: Layout,
    exprs: ExprCompiler,
    serializers: list[Serializer],
    deparse_order: list[int],
) -> Calculation:
    """Compile one entry of ``calculations``; ``serializers[h]`` deparses header ``h``."""
    name = get(doc, "name", path, str)
    algo_name = get(doc, "algo", path, str)
    algo = ALGORITHMS.get(algo_name)
    if algo is None:
        raise fail(f"{path}.algo", f"unsupported algorithm {algo_name!r}")
    # Segments: ("fields", header or -1 for metadata, [(slot, width, mask)]),
    # ("const", value, width), ("varbit", header, slot) and ("header", header, serializer);
    # consecutive fixed-width fields of one header share a segment so validity is checked
    # once and no closure runs per field.
    segments: list[tuple] = []
    last_header = -1
    with_payload = False
    for i, item in enumerate(get(doc, "input", path, list)):
        ipath = f"{path}.input[{i}]"
        kind = get(item, "type", ipath, str)
        if kind == "payload":
            with_payload = True
        elif kind == "hexstr":
            width = get(item, "bitwidth", ipath, int)
            const = parse_hexstr(item.get("value"), ipath) & ((1 << width) - 1)
            segments.append(("const", const, width))
        elif kind == "field":
            hdr, fi = layout.field(item.get("value"), ipath)
            last_header = max(last_header, _order_pos(deparse_order, hdr.index))
            if fi is None:
                raise fail(ipath, "$valid$ cannot be a calculation input")
            owner = -1 if hdr.metadata else hdr.index
            if fi.width == 0:
                # bm_sim BufBuilder::Deparse: a varbit field adds its current bits
                segments.append(("varbit", hdr.index, fi.slot))
                continue
            spec = (fi.slot, fi.width, (1 << fi.width) - 1)
            if segments and segments[-1][0] == "fields" and segments[-1][1] == owner:
                segments[-1][2].append(spec)
            else:
                segments.append(("fields", owner, [spec]))
        elif kind == "header":
            hdr = layout.header(item.get("value"), ipath)
            last_header = max(last_header, _order_pos(deparse_order, hdr.index))
            segments.append(("header", hdr.index, serializers[hdr.index]))
        else:
            raise fail(ipath, f"unsupported calculation input {kind!r}")
    trailing = deparse_order[last_header + 1 :] if with_payload else []
    if exprs.gen is not None:
        gen = exprs.gen
        compute = gen.function("calculation", "s, p=()", _calculation_source(
            segments, [(h, gen.bind(serializers[h])) for h in trailing] if with_payload else None,
            gen.bind(algo), gen.bind))
        return Calculation(name, algo_name, compute)

    def compute(s: PacketState, p: tuple = ()) -> int:
        acc = 0
        bits = 0
        f, valid = s.f, s.valid
        for kind, a, b in segments:
            if kind == "fields":
                if a >= 0 and not valid[a]:
                    continue
                for slot, width, mask in b:
                    acc = (acc << width) | (f[slot] & mask)
                    bits += width
            elif kind == "const":
                acc = (acc << b) | a
                bits += b
            elif kind == "varbit":
                if valid[a]:
                    width = s.vlen.get(a, 0)
                    acc = (acc << width) | (f[b] & ((1 << width) - 1))
                    bits += width
            elif valid[a]:
                data = b(s)
                acc = (acc << (8 * len(data))) | int.from_bytes(data, "big")
                bits += 8 * len(data)
        pad = -bits % 8
        data = (acc << pad).to_bytes((bits + pad) // 8, "big")
        if with_payload:
            data += b"".join([serializers[h](s) for h in trailing if valid[h]]) + s.payload
        return algo(data)

    return Calculation(name, algo_name, compute)


def _calculation_source(segments: list[tuple], trailing: list[tuple[int, str]] | None,
                        algo: str, bind: Callable) -> list[str]:
    """The body of ``compute`` for these segments, unrolled (the same shifts, in order);
    ``trailing``: (header, bound serializer) deparsed after the inputs when there is a payload."""
    body = ["f, valid = s.f, s.valid", "acc = bits = 0"]
    for kind, a, b in segments:
        guard = kind != "const" and a >= 0
        if guard:
            body.append(f"if valid[{a:d}]:")
        pad = "    " if guard else ""
        if kind == "fields":
            total = sum(w for _, w, _ in b)
            body += [f"{pad}acc = (acc << {total:d}) | {packed_source(b)}",
                     f"{pad}bits += {total:d}"]
        elif kind == "const":
            body += [f"acc = (acc << {b:d}) | {a:d}", f"bits += {b:d}"]
        elif kind == "varbit":
            body += [f"{pad}width = s.vlen.get({a:d}, 0)",
                     f"{pad}acc = (acc << width) | (f[{b:d}] & ((1 << width) - 1))",
                     f"{pad}bits += width"]
        else:
            body += [f"{pad}data = {bind(b)}(s)",
                     f"{pad}acc = (acc << (8 * len(data))) | int.from_bytes(data, 'big')",
                     f"{pad}bits += 8 * len(data)"]
    body += ["pad = -bits % 8", "data = (acc << pad).to_bytes((bits + pad) // 8, 'big')"]
    if trailing is not None:
        parts = [f"({ser}(s) if valid[{h:d}] else b'')" for h, ser in trailing]
        body.append(f"data += {' + '.join([*parts, 's.payload'])}")
    body.append(f"return {algo}(data)")
    return body


def _order_pos(order: list[int], header: int) -> int:
    return order.index(header) if header in order else -1


@dataclass(slots=True)
class Checksum:
    """One ``checksums`` entry: verified after parsing, written before deparsing."""

    name: str
    verify: bool
    update: bool
    condition: Expr | None
    target_slot: int
    calc: Calculation
    write: Callable[[PacketState, int], None]

    def applies(self, s: PacketState) -> bool:
        return self.condition is None or bool(self.condition(s, ()))

    def matches(self, s: PacketState) -> bool:
        return self.calc.compute(s, ()) == s.f[self.target_slot]

    def store(self, s: PacketState) -> None:
        self.write(s, self.calc.compute(s, ()))


def compile_checksum(
    doc: dict, path: str, layout: Layout, exprs: ExprCompiler, calcs: dict[str, Calculation]
) -> Checksum:
    _, fi = layout.field(get(doc, "target", path), f"{path}.target")
    if fi is None:
        raise fail(f"{path}.target", "a checksum cannot target $valid$")
    calc_name = get(doc, "calculation", path, str)
    if calc_name not in calcs:
        raise fail(f"{path}.calculation", f"unknown calculation {calc_name!r}")
    cond = doc.get("if_cond")
    condition = None
    if isinstance(cond, dict):
        node = {"type": "expression", "value": cond} if "op" in cond else cond
        condition = exprs.compile(node, f"{path}.if_cond")
    return Checksum(
        get(doc, "name", path, str),
        bool(doc.get("verify", True)),
        bool(doc.get("update", True)),
        condition,
        fi.slot,
        calcs[calc_name],
        field_setter(fi),
    )


def make_verifier(checksums: list[Checksum], error_slot: int,
                  gen: Generated | None) -> Callable[[PacketState], None]:
    """bm_sim's verify step after parsing: checksum_error = 1 when an applicable checksum
    does not match its field (with ``gen``: one test per checksum, unrolled)."""
    if gen is not None:
        body = []
        for ck in checksums:
            cond = f"{gen.bind(ck.condition)}(s, ()) and " if ck.condition is not None else ""
            body += [f"if {cond}not ({gen.bind(ck.calc.compute)}(s, ()) == "
                     f"s.f[{ck.target_slot:d}]):", f"    s.f[{error_slot:d}] = 1"]
        return gen.function("verify_checksums", "s", body)

    def verify(s: PacketState) -> None:
        for ck in checksums:
            if ck.applies(s) and not ck.matches(s):
                s.f[error_slot] = 1

    return verify


def make_updater(checksums: list[Checksum], gen: Generated | None) -> Callable[[PacketState], None]:
    """bm_sim's update step before deparsing: each applicable checksum written, in order."""
    if gen is not None:
        body = []
        for ck in checksums:
            store = f"{gen.bind(ck.write)}(s, {gen.bind(ck.calc.compute)}(s, ()))"
            if ck.condition is None:
                body.append(store)
            else:
                body += [f"if {gen.bind(ck.condition)}(s, ()):", f"    {store}"]
        return gen.function("update_checksums", "s", body)

    def update(s: PacketState) -> None:
        for ck in checksums:
            if ck.applies(s):
                ck.store(s)

    return update
