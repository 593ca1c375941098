"""Expressions and primitives with exact bit-width semantics, run through a one-action program
(p4c turns a direct action call into a keyless table with a const default action)."""

from __future__ import annotations

from softswitch.checksums import crc16, crc32, csum16
from softswitch.pipeline import Pipeline
from tests.softswitch.p4json import (
    action,
    assign,
    extract,
    fld,
    hexstr,
    op,
    pipeline,
    prim,
    program,
    state,
    table,
)

H = [["a", 8, False], ["b", 8, False], ["c", 16, False], ["s", 8, True], ["d", 32, False]]
EGRESS_1 = assign(fld("standard_metadata", "egress_spec"), hexstr(1, 2))


def build(prims: list[dict], **kw) -> Pipeline:
    acts = [action(0, "ingress.act", [], [*prims, EGRESS_1])]
    tbl = table(0, "tbl_act", [], [(0, "ingress.act")], (0, []), const_default=True)
    return Pipeline.from_json(program(
        header_types=[("h_t", H)], headers=[("h", "h_t", False)],
        states=[state("start", [extract("h")])],
        ingress=pipeline("ingress", 0, "tbl_act", [tbl]), actions=acts, deparse=["h"], **kw))


def run(prims: list[dict], data: bytes, **kw) -> bytes:
    [(port, out)] = build(prims, **kw).process(0, data)
    assert port == 1
    return out


def h(a=0, b=0, c=0, s=0, d=0) -> bytes:
    return bytes([a, b]) + c.to_bytes(2, "big") + bytes([s & 0xFF]) + d.to_bytes(4, "big")


def test_arithmetic_wraps_explicitly_and_on_write() -> None:
    prims = [
        assign(fld("h", "a"), op("&", op("+", fld("h", "a"), hexstr(0xFF)), hexstr(0xFF))),
        assign(fld("h", "b"), op("+", fld("h", "b"), hexstr(300, 2))),  # truncated on write
        assign(fld("h", "c"), op("-", fld("h", "c"), hexstr(1))),  # 0 - 1 wraps to 0xffff
        assign(fld("h", "d"), op("*", fld("h", "d"), hexstr(0x10000, 4))),
    ]
    assert run(prims, h(a=0, b=250, c=0, d=0x12345678)) == h(0xFF, (250 + 300) & 0xFF,
                                                              0xFFFF, 0, 0x56780000)


def test_signed_fields_compare_and_wrap_as_twos_complement() -> None:
    prims = [
        assign(fld("h", "a"), op("?", hexstr(1), hexstr(2),
                                 cond=op("<", fld("h", "s"), hexstr(0)))),
        assign(fld("h", "s"), op("-", fld("h", "s"), hexstr(1))),  # -128 - 1 -> 127
        assign(fld("h", "b"), op("two_comp_mod", hexstr(-129), hexstr(8))),  # 127
    ]
    assert run(prims, h(s=0x80)) == h(a=1, b=127, s=127)
    assert run(prims, h(s=5)) == h(a=2, b=127, s=4)


def test_shifts_slices_concat_division() -> None:
    prims = [
        assign(fld("h", "c"), op("&", op("<<", fld("h", "c"), hexstr(4)), hexstr(0xFFFF, 2))),
        assign(fld("h", "a"), op("&", op(">>", fld("h", "d"), hexstr(8)), hexstr(0xFF))),  # slice
        assign(fld("h", "b"), op("/", fld("h", "b"), hexstr(3))),
        assign(fld("h", "s"), op("%", hexstr(7), hexstr(0))),  # zero divisor -> 0, no crash
        assign(fld("h", "d"), op("|", op("<<", fld("h", "a"), hexstr(8)), fld("h", "b"))),
    ]
    out = run(prims, h(b=100, c=0x1234, s=1, d=0xAABBCCDD))
    # a = 0xcc; b = 33; d = (a << 8) | b evaluated after both were assigned
    assert out == h(a=0xCC, b=33, c=0x2340, s=0, d=(0xCC << 8) | 33)


def test_bool_data_conversions_and_logic() -> None:
    is5 = op("==", fld("h", "a"), hexstr(5))
    prims = [
        assign(fld("h", "b"), op("b2d", None, op("and", is5, op("not", None,
                                                                op("d2b", None, fld("h", "c")))))),
        assign(fld("h", "c"), op("b2d", None, op("or", op(">=", fld("h", "d"), hexstr(9)),
                                                 op("!=", fld("h", "a"), hexstr(5))))),
        assign(fld("h", "d"), op("&", op("~", None, fld("h", "d")), hexstr(0xFFFFFFFF, 4))),
    ]
    assert run(prims, h(a=5, c=0, d=1)) == h(a=5, b=1, c=0, d=0xFFFFFFFE)
    assert run(prims, h(a=5, c=1, d=10)) == h(a=5, b=0, c=1, d=0xFFFFFFF5)


def test_exit_stops_the_action_and_the_control() -> None:
    prims = [EGRESS_1, prim("exit"), assign(fld("h", "a"), hexstr(9))]
    assert run(prims, h()) == h()


def test_header_validity_primitives() -> None:
    # remove_header drops h from the output; add_header zeroes it; assign_header copies it.
    assert run([prim("remove_header", {"type": "header", "value": "h"})], h(a=1)) == b""
    re_added = [prim("remove_header", {"type": "header", "value": "h"}),
                prim("add_header", {"type": "header", "value": "h"})]
    assert run(re_added, h(a=1, d=7) + b"pay") == h() + b"pay"
    kept = [prim("add_header", {"type": "header", "value": "h"})]  # already valid: unchanged
    assert run(kept, h(a=1)) == h(a=1)


def test_registers_and_counters_keep_state_across_packets() -> None:
    reg = {"type": "register_array", "value": "ingress.r"}
    prims = [
        prim("register_read", fld("h", "d"), reg, fld("h", "a")),
        assign(fld("h", "d"), op("+", fld("h", "d"), hexstr(1))),
        prim("register_write", reg, fld("h", "a"), fld("h", "d")),
        prim("count", {"type": "counter_array", "value": "ingress.c"}, fld("h", "a")),
    ]
    p = build(prims, register_arrays=[{"name": "ingress.r", "id": 0, "size": 4, "bitwidth": 32}],
              counter_arrays=[{"name": "ingress.c", "id": 0, "is_direct": False, "size": 4}])
    outs = [p.process(0, h(a=2))[0][1] for _ in range(3)]
    assert [int.from_bytes(o[5:9], "big") for o in outs] == [1, 2, 3]
    assert p.registers["ingress.r"].values == [0, 0, 3, 0]
    assert p.counters["ingress.c"].read(2) == (3, 3 * 9)
    p.process(0, h(a=200))  # index out of range: ignored and counted, no exception
    assert p.registers["ingress.r"].out_of_range == 2
    assert p.counters["ingress.c"].out_of_range == 1


def test_hash_algorithms_match_reference_values() -> None:
    assert crc32(b"123456789") == 0xCBF43926
    assert crc16(b"123456789") == 0xBB3D  # CRC-16/ARC, BMv2's crc16
    assert csum16(bytes.fromhex("4500003c1c4640004006") + bytes.fromhex("ac100a63ac100a0c")) \
        == 0xB1E6
    calcs = [{"name": "hash_0", "id": 0, "algo": "crc16", "input": [fld("h", "d")]},
             {"name": "hash_1", "id": 1, "algo": "crc32", "input": [fld("h", "d")]}]
    prims = [
        prim("modify_field_with_hash_based_offset", fld("h", "c"), hexstr(0, 2),
             {"type": "calculation", "value": "hash_0"}, hexstr(0x10000, 4)),
        prim("modify_field_with_hash_based_offset", fld("h", "b"), hexstr(10),
             {"type": "calculation", "value": "hash_1"}, hexstr(100, 4)),
    ]
    d = 0x31323334
    out = run(prims, h(d=d), calculations=calcs)
    assert out == h(b=10 + crc32(b"1234") % 100, c=crc16(b"1234"), d=d)


def test_log_msg_assert_and_truncate() -> None:
    prims = [
        prim("log_msg", {"type": "string", "value": "a={} d={}"},
             {"type": "parameters_vector", "value": [fld("h", "a"), fld("h", "d")]}),
        prim("assert", op("==", fld("h", "a"), hexstr(0))),
        prim("truncate", hexstr(4, 4)),
    ]
    p = build(prims)
    assert p.process(0, h(a=3) + b"xyz") == [(1, h(a=3)[:4])]
    assert p.drops["internal_error"] == 0
    assert p.assert_failures == 1
    p.process(0, h(a=0))
    assert p.assert_failures == 1


def test_count_on_a_direct_counter_is_left_to_its_table() -> None:
    direct = {"name": "ingress.dc", "id": 1, "is_direct": True, "binding": "tbl_act"}
    p = build([prim("count", {"type": "counter_array", "value": "ingress.dc"})],
              counter_arrays=[direct])
    p.process(0, h())
    assert "ingress.dc" not in p.counters
    assert p.tables["tbl_act"].direct_counter == "ingress.dc"
