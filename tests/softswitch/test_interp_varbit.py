"""Varbit fields as bm_sim handles them: a checksum over a field list holding a varbit field
(IPv4 options) and the errors of an extract whose length argument is invalid, in bm_sim's
order (parser.cpp extract_VL)."""

from __future__ import annotations

from scapy.layers.inet import IP, IPOption_RR
from scapy.packet import Raw, raw

from softswitch.pipeline import Pipeline
from tests.softswitch.p4json import (
    IPV4,
    IPV4_CSUM_FIELDS,
    action,
    assign,
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
    valid,
)

OUT1 = assign(fld("standard_metadata", "egress_spec"), hexstr(1, 2))
OPTIONS_BITS = op("-", op("<<", fld("ipv4", "ihl"), hexstr(5)), hexstr(160, 4))  # (ihl-5)*32
ERRORS = {"NoError": 0, "PacketTooShort": 1, "HeaderTooShort": 4, "ParserInvalidArgument": 6}


def build(states: list[dict], prims: list[dict], **kw: object) -> Pipeline:
    acts = [action(0, "ingress.act", [], [*prims, OUT1])]
    tbl = table(0, "tbl_act", [], [(0, "ingress.act")], (0, []), const_default=True)
    doc = program(ingress=pipeline("ingress", 0, "tbl_act", [tbl]), actions=acts, states=states,
                  **kw)  # type: ignore[arg-type]
    for ht in doc["header_types"]:
        if any(f[1] == "*" for f in ht["fields"]):
            ht["max_length"] = 40 if ht["name"] == "ipv4_options_t" else 3
    return Pipeline.from_json(doc)


def out(p: Pipeline, data: bytes) -> bytes:
    [(port, frame)] = p.process(0, data)
    assert port == 1
    return frame


def ipv4_with_options(checksum: int | None = None) -> bytes:
    pkt = IP(src="10.0.0.1", dst="10.0.0.2", ttl=64, id=1,
             options=[IPOption_RR(pointer=4, routers=[])]) / Raw(b"xy")
    if checksum is not None:
        pkt.chksum = checksum
    return raw(pkt)


def test_checksum_over_a_varbit_field_covers_its_current_bytes() -> None:
    """verify_checksum/update_checksum over {version, ..., dstAddr, options}: the options count
    exactly their extracted bytes (bm_sim BufBuilder deparses the field at its width)."""
    calc = {"name": "calc", "id": 0, "algo": "csum16", "input": [
        fld("ipv4", f) for f in IPV4_CSUM_FIELDS] + [fld("ipv4_options", "options")]}
    extract_vl = {"op": "extract_VL", "parameters": [
        {"type": "regular", "value": "ipv4_options"}, OPTIONS_BITS]}
    p = build([state("start", [extract("ipv4"), extract_vl])],
              [assign(fld("ipv4", "diffserv"), fld("standard_metadata", "checksum_error"))],
              header_types=[("ipv4_t", IPV4), ("ipv4_options_t", [["options", "*"]])],
              headers=[("ipv4", "ipv4_t", False), ("ipv4_options", "ipv4_options_t", False)],
              deparse=["ipv4", "ipv4_options"], calculations=[calc],
              checksums=[checksum(0, "cksum", ("ipv4", "hdrChecksum"), "calc", valid("ipv4"))])
    good = ipv4_with_options()
    assert good[0] == 0x46
    assert out(p, good) == good  # verified (diffserv = checksum_error = 0), rewritten the same
    bad = ipv4_with_options(checksum=0x1234)
    expected = IP(bad)
    expected.tos = 1  # checksum_error
    del expected.chksum
    assert out(p, bad) == raw(expected)


def test_varbit_length_not_a_multiple_of_8_is_parser_invalid_argument() -> None:
    """test-parserinvalidargument-error-bmv2's cases: length 1 or 7 bits."""
    p = vl_program()
    assert out(p, b"\x01\xaa\xbb\xcc\xdd")[0] == ERRORS["ParserInvalidArgument"]
    assert out(p, b"\x07\xaa\xbb\xcc\xdd") == b"\x06\xaa\xbb\xcc\xdd"  # nothing extracted


def test_varbit_errors_come_in_bm_sim_order() -> None:
    """ParserInvalidArgument before PacketTooShort before HeaderTooShort."""
    p = vl_program()
    assert out(p, b"\x10\xaa\xbb\xcc")[0] == ERRORS["NoError"]
    assert out(p, b"\x10\xaa\xbb\xcc") == b"\x00\xaa\xbb\xcc"  # 16 bits extracted and emitted
    assert out(p, b"\x18\xaa\xbb\xcc\xdd")[0] == ERRORS["HeaderTooShort"]  # 24 > 16 bits max
    assert out(p, b"\x18\xaa")[0] == ERRORS["PacketTooShort"]  # too long *and* too short
    assert out(p, b"\x09\xaa")[0] == ERRORS["ParserInvalidArgument"]  # invalid *and* too short


def test_advance_by_bits_that_are_not_whole_bytes_is_parser_invalid_argument() -> None:
    advance = {"op": "advance", "parameters": [fld("b", "v")]}
    p = build([state("start", [extract("b"), advance])],
              [assign(fld("b", "v"), fld("standard_metadata", "parser_error"))],
              header_types=[("b_t", [["v", 8, False]])], headers=[("b", "b_t", False)],
              deparse=["b"])
    assert out(p, b"\x08\xaa") == b"\x00"  # one byte advanced, not emitted
    assert out(p, b"\x04\xaa") == b"\x06\xaa"


def vl_program() -> Pipeline:
    """b.v is the varbit length in bits of o (varbit<16>, max_length 3 bytes with its 8-bit
    field); b.v is overwritten with parser_error."""
    extract_vl = {"op": "extract_VL", "parameters": [{"type": "regular", "value": "o"},
                                                     {"type": "expression",
                                                      "value": fld("b", "v")}]}
    return build([state("start", [extract("b"), extract_vl])],
                 [assign(fld("b", "v"), fld("standard_metadata", "parser_error"))],
                 header_types=[("b_t", [["v", 8, False]]), ("o_t", [["k", 8, False],
                                                                   ["opts", "*"]])],
                 headers=[("b", "b_t", False), ("o", "o_t", False)], deparse=["b", "o"])


def test_varbit_assignment_copies_the_width() -> None:
    """assign_VL (and a parser "set" into a varbit field) copies value and width, so the
    destination is deparsed at the source's length (bm_sim Field::assign_VL)."""
    vl = {"op": "extract_VL", "parameters": [{"type": "regular", "value": "o"},
                                             {"type": "expression", "value": fld("b", "v")}]}
    copy = [fld("p", "opts"), fld("o", "opts")]
    kw = dict(header_types=[("b_t", [["v", 8, False]]),
                            ("o_t", [["k", 8, False], ["opts", "*"]])],
              headers=[("b", "b_t", False), ("o", "o_t", False), ("p", "o_t", False)],
              deparse=["b", "o", "p"])
    in_action = build([state("start", [extract("b"), vl])],
                      [prim("add_header", {"type": "header", "value": "p"}),
                       prim("assign_VL", *copy)], **kw)
    assert out(in_action, b"\x10\x01\xaa\xbbtail") == b"\x10\x01\xaa\xbb\x00\xaa\xbbtail"
    in_parser = build([state("start", [extract("b"), vl, extract("p"),
                                       {"op": "set", "parameters": copy}])], [], **kw)
    # p extracted with a 0-bit varbit (k = 0x07), then set to o's 16 bits
    assert out(in_parser, b"\x10\x01\xaa\xbb\x07tail") == b"\x10\x01\xaa\xbb\x07\xaa\xbbtail"
