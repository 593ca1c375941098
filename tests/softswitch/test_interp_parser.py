"""Parser constructs: masked selects, value sets, lookahead, verify and parser errors, header
stacks (extract loop, last field, push/pop, dynamic index), varbit, checksum verification."""

from __future__ import annotations

from softswitch.pipeline import Pipeline
from tests.softswitch.p4json import (
    action,
    assign,
    bare,
    checksum,
    extract,
    fld,
    hexstr,
    op,
    pipeline,
    prim,
    program,
    state,
    table,
    trans,
)

B = [["v", 8, False]]
E = [["x", 8, False], ["y", 8, False]]  # stack element: y bit 7 = "more follow"
OUT1 = assign(fld("standard_metadata", "egress_spec"), hexstr(1, 2))


def build(states, prims, *, header_types=(), headers=(), deparse=("b",), stacks=(), **kw):
    acts = [action(0, "ingress.act", [], [*prims, OUT1])]
    tbl = table(0, "tbl_act", [], [(0, "ingress.act")], (0, []), const_default=True)
    return Pipeline.from_json(program(
        header_types=[("b_t", B), ("m_t", [["err", 32, False], ["ck", 1, False]]),
                      *header_types],
        headers=[("b", "b_t", False), ("m", "m_t", True), *headers],
        states=states, ingress=pipeline("ingress", 0, "tbl_act", [tbl]), actions=acts,
        deparse=list(deparse), header_stacks=list(stacks), **kw))


def out(p: Pipeline, data: bytes) -> bytes:
    [(port, frame)] = p.process(0, data)
    assert port == 1
    return frame


SAVE_ERR = assign(fld("b", "v"), fld("standard_metadata", "parser_error"))


def test_select_with_mask_and_default() -> None:
    states = [
        state("start", [], [{"type": "lookahead", "value": [0, 8]}],
              [trans("0x80", "mark", mask="0xf0"), trans(None, "plain")]),
        state("mark", [extract("b"), {"op": "set", "parameters": [
            fld("b", "v"), hexstr(0xAA)]}]),
        state("plain", [extract("b")]),
    ]
    p = build(states, [])
    assert out(p, b"\x8f rest") == b"\xaa rest"  # 0x8f & 0xf0 == 0x80
    assert out(p, b"\x7f rest") == b"\x7f rest"


def test_value_set_membership_is_runtime_state() -> None:
    states = [
        state("start", [extract("b")], [fld("b", "v")],
              [trans("pvs", "hit", kind="parse_vset"), trans(None, None)]),
        state("hit", [{"op": "set", "parameters": [fld("b", "v"), hexstr(0)]}]),
    ]
    p = build(states, [], parse_vsets=[{"name": "pvs", "id": 0, "compressed_bitwidth": 8}])
    assert out(p, b"\x05") == b"\x05"
    p.value_sets["pvs"].add(5)
    assert out(p, b"\x05") == b"\x00"


def test_short_packet_sets_parser_error_and_keeps_bytes() -> None:
    states = [state("start", [extract("b"), extract("c")])]
    p = build(states, [SAVE_ERR], header_types=[("c_t", [["w", 16, False]])],
              headers=[("c", "c_t", False)], deparse=("b", "c"))
    assert out(p, b"\x07\x01\x02\x03") == b"\x00\x01\x02\x03"  # NoError, c extracted
    assert out(p, b"\x07\x01") == b"\x01\x01"  # PacketTooShort, c not consumed
    assert out(p, b"") == b""  # b invalid: assigning its field does not make it valid


def test_verify_and_no_match_errors() -> None:
    verify = {"op": "verify", "parameters": [
        op("d2b", None, op("b2d", None, op("!=", fld("b", "v"), hexstr(0xFF)))),
        hexstr(7, 4)]}
    states = [state("start", [extract("b"), verify], [fld("b", "v")],
                    [trans("0x01", None), trans("0xff", None)])]
    p = build(states, [SAVE_ERR])
    assert out(p, b"\xff") == b"\x07"  # verify failed: its error code
    assert out(p, b"\x02") == b"\x02"  # NoMatch
    assert out(p, b"\x01") == b"\x00"


def test_stack_extract_loop_last_field_and_overflow() -> None:
    more = {"type": "stack_field", "value": ["e", "y"]}
    states = [
        state("start", [extract("b")], [], [trans(None, "loop")]),
        state("loop", [{"op": "extract", "parameters": [{"type": "stack", "value": "e"}]}],
              [more], [trans("0x80", "loop", mask="0x80"), trans(None, None)]),
    ]
    stack_kw = dict(
        header_types=[("e_t", E)],
        headers=[("e[0]", "e_t", False), ("e[1]", "e_t", False), ("e[2]", "e_t", False)],
        deparse=("b", "e[0]", "e[1]", "e[2]"),
        stacks=[{"name": "e", "id": 0, "header_type": "e_t", "header_ids": [4, 5, 6]}],
    )
    size = op("size_stack", None, {"type": "header_stack", "value": "e"})
    p = build(states, [assign(fld("b", "v"), size)], **stack_kw)
    assert out(p, b"\x00" + b"\x01\x80\x02\x00" + b"tail") == b"\x02\x01\x80\x02\x00tail"
    # four elements with the "more" bit: StackOutOfBounds after three
    q = build(states, [SAVE_ERR], **stack_kw)
    data = b"\x00" + b"\x01\x80" * 4
    assert out(q, data) == b"\x03" + b"\x01\x80" * 3 + b"\x01\x80"


def test_push_pop_and_dynamic_index() -> None:
    states = [state("start", [extract("b"),
                              {"op": "extract", "parameters": [{"type": "stack", "value": "e"}]},
                              {"op": "extract", "parameters": [{"type": "stack", "value": "e"}]}])]
    kw = dict(
        header_types=[("e_t", E)],
        headers=[("e[0]", "e_t", False), ("e[1]", "e_t", False), ("e[2]", "e_t", False)],
        deparse=("b", "e[0]", "e[1]", "e[2]"),
        stacks=[{"name": "e", "id": 0, "header_type": "e_t", "header_ids": [4, 5, 6]}],
    )
    elem = {"type": "expression", "value": {"type": "expression", "value": bare(
        "access_field", op("dereference_header_stack", {"type": "header_stack", "value": "e"},
                           fld("b", "v")), 0)}}
    p = build(states, [assign(elem, hexstr(0x99))], **kw)
    assert out(p, b"\x01" + b"\x0a\x00\x0b\x00") == b"\x01\x0a\x00\x99\x00"
    push = [prim("push", {"type": "header_stack", "value": "e"}, hexstr(1)),
            prim("add_header", {"type": "header", "value": "e[0]"})]
    p = build(states, push, **kw)
    assert out(p, b"\x00" + b"\x0a\x00\x0b\x00") == b"\x00" + b"\x00\x00\x0a\x00\x0b\x00"
    pop = [prim("pop", {"type": "header_stack", "value": "e"}, hexstr(1))]
    p = build(states, pop, **kw)
    assert out(p, b"\x00" + b"\x0a\x00\x0b\x00") == b"\x00\x0b\x00"


def test_varbit_extract_uses_the_length_expression() -> None:
    vl_len = op("<<", fld("b", "v"), hexstr(3))  # v bytes
    states = [state("start", [extract("b"), {"op": "extract_VL", "parameters": [
        {"type": "regular", "value": "o"}, vl_len]}])]
    p = build(states, [], header_types=[("o_t", [["k", 8, False], ["opts", "*"]])],
              headers=[("o", "o_t", False)], deparse=("b", "o"))
    p.layout.header_by_name["o"].max_bytes = 0
    assert out(p, b"\x02\x11\xaa\xbb\xcc") == b"\x02\x11\xaa\xbb\xcc"
    assert out(p, b"\x09\x11\xaa") == b"\x09\x11\xaa"  # too short: o invalid, bytes kept


def test_checksum_verify_sets_checksum_error() -> None:
    calc = {"name": "calc", "id": 0, "algo": "csum16", "input": [fld("c", "w")]}
    states = [state("start", [extract("b"), extract("c")])]
    p = build(states, [assign(fld("b", "v"), fld("standard_metadata", "checksum_error"))],
              header_types=[("c_t", [["w", 16, False], ["ck", 16, False]])],
              headers=[("c", "c_t", False)], deparse=("b", "c"), calculations=[calc],
              checksums=[checksum(0, "ck", ("c", "ck"), "calc", None, update=False)])
    good = (~0x1234) & 0xFFFF
    assert out(p, b"\x05\x12\x34" + good.to_bytes(2, "big")) == b"\x00\x12\x34" + \
        good.to_bytes(2, "big")
    assert out(p, b"\x05\x12\x34\x00\x00")[0] == 1
