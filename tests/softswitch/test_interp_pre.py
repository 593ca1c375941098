"""The v1model traffic manager as simple_switch runs it: the PRE (multicast groups of L1 nodes,
mirroring sessions to a port and/or a group, clone truncation), the metadata a copy keeps
(``copy_field_list_and_set_type``: metadata zeroed, the field list copied), instance_type on
unicast, timestamps and queueing metadata, digests sampled at the end of ingress, and the values
an invalid header reads (bm_sim's PHV pool)."""

from __future__ import annotations

from softswitch.pipeline import Pipeline
from softswitch.pre import MirrorSession
from softswitch.stf import StfRunner
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
    trans,
)

SM = "standard_metadata"
H = [["k", 16, False], ["o", 8, False], ["r", 8, False]]
M = [["a", 8, False], ["b", 8, False]]
T = [["igt", 48, False], ["egt", 48, False], ["enq", 32, False], ["delta", 32, False],
     ["eqd", 8, False], ["dqd", 8, False]]
G = [["x", 16, False]]


def is_(field: dict, value: int) -> dict:
    return op("b2d", None, op("==", field, hexstr(value)))


def jump_unless(cond: dict, target: int) -> dict:
    return prim("_jump_if_zero", cond, hexstr(target))


def build(ingress: list[dict], egress: list[dict], *, extra_headers=(), states=None,
          deparse=("h",), field_lists=(), learn_lists=()) -> Pipeline:
    """One ingress and one egress action, each run by a keyless table; header ``h``, metadata
    ``m`` (for field lists), and whatever else the test adds."""
    acts = [action(0, "ingress.i", [], ingress), action(1, "egress.e", [], egress)]
    ti = table(0, "tbl_i", [], [(0, "ingress.i")], (0, []), const_default=True)
    te = table(1, "tbl_e", [], [(1, "egress.e")], (1, []), const_default=True)
    types = [("h_t", H), ("m_t", M)] + [(f"{n}_t", f) for n, f in extra_headers]
    headers = [("h", "h_t", False), ("m", "m_t", True)] + [
        (n, f"{n}_t", False) for n, _ in extra_headers]
    doc = program(
        header_types=types, headers=headers,
        states=states or [state("start", [extract("h")])],
        ingress=pipeline("ingress", 0, "tbl_i", [ti]), egress=pipeline("egress", 1, "tbl_e", [te]),
        actions=acts, deparse=list(deparse))
    doc["field_lists"] = [{"id": i, "name": f"fl{i}", "elements": [fld(*f) for f in fields]}
                          for i, fields in field_lists]
    doc["learn_lists"] = [{"id": i, "name": name, "elements": [fld(*f) for f in fields]}
                          for i, name, fields in learn_lists]
    return Pipeline.from_json(doc)


def group(p: Pipeline, mgid: int, *nodes: tuple[int, list[int]]) -> None:
    p.pre.mgrp_create(mgid)
    for rid, ports in nodes:
        p.pre.node_associate(mgid, p.pre.node_create(rid, ports))


def test_ingress_clone_to_a_group_zeroes_metadata_but_the_field_list() -> None:
    # egress: k = ingress_port, o = m.a ^ m.b, r = instance_type | egress_rid << 4
    stamp = [assign(fld("h", "k"), fld(SM, "ingress_port")),
             assign(fld("h", "o"), op("^", fld("m", "a"), fld("m", "b"))),
             assign(fld("h", "r"), op("|", fld(SM, "instance_type"),
                                      op("<<", fld(SM, "egress_rid"), hexstr(4))))]
    p = build([assign(fld(SM, "egress_spec"), hexstr(2, 2)),
               assign(fld("m", "a"), hexstr(0x11)), assign(fld("m", "b"), hexstr(0x22)),
               prim("clone_ingress_pkt_to_egress", hexstr(5, 4), hexstr(1, 4))], stamp,
              field_lists=[(1, [("m", "a")])])
    group(p, 7, (3, [5, 4]))
    p.pre.mirroring_add(5, MirrorSession(mgid=7))
    out = sorted(p.process(9, b"\x00\x00\x00\x00"))
    # the original: NORMAL, its ingress port; the clones: I2E (1), rid 3, ingress_port zeroed
    # (simple_switch resets the clone's metadata), m.a kept by the field list, m.b zeroed
    assert out == [(2, b"\x00\x09\x33\x00"), (4, b"\x00\x00\x11\x31"),
                   (5, b"\x00\x00\x11\x31")]


def test_clone_to_an_unknown_session_does_nothing() -> None:
    p = build([assign(fld(SM, "egress_spec"), hexstr(2, 2)),
               prim("clone_ingress_pkt_to_egress", hexstr(5, 4), hexstr(0, 4))], [])
    assert p.process(0, b"\x00\x00\x00\x00") == [(2, b"\x00\x00\x00\x00")]


def test_egress_clone_keeps_egress_headers_and_zeroes_metadata() -> None:
    normal = is_(fld(SM, "instance_type"), 0)
    egress = [jump_unless(normal, 6),
              assign(fld("h", "o"), hexstr(0xAA)),
              assign(fld("m", "a"), hexstr(5)), assign(fld("m", "b"), hexstr(6)),
              prim("clone_egress_pkt_to_egress", hexstr(3, 4), hexstr(1, 4)),
              prim("_jump", hexstr(8)),
              assign(fld("h", "r"), op("+", fld("m", "a"), fld("m", "b"))),
              assign(fld("h", "k"), fld(SM, "instance_type"))]
    p = build([assign(fld(SM, "egress_spec"), hexstr(1, 2))], egress,
              field_lists=[(1, [("m", "a")])])
    p.pre.mirroring_add(3, MirrorSession(egress_port=7))
    assert sorted(p.process(0, b"\x00\x00\x00\x00")) == [(1, b"\x00\x00\xaa\x00"),
                                                         (7, b"\x00\x02\xaa\x05")]


def test_clone_session_truncates_the_clone_only() -> None:
    p = build([assign(fld(SM, "egress_spec"), hexstr(1, 2)),
               prim("clone_ingress_pkt_to_egress", hexstr(4, 4), hexstr(0, 4))], [])
    p.pre.mirroring_add(4, MirrorSession(egress_port=3, truncate=3))
    assert sorted(p.process(0, b"\x01\x02\x03\x04\x05")) == [(1, b"\x01\x02\x03\x04\x05"),
                                                             (3, b"\x01\x02\x03")]


def test_resubmitted_packet_is_normal_again_when_unicast() -> None:
    first = is_(fld(SM, "instance_type"), 0)
    p = build([assign(fld(SM, "egress_spec"), hexstr(1, 2)),
               assign(fld("h", "k"), op("+", fld("h", "k"), fld(SM, "ingress_port"))),
               assign(fld("h", "r"), op("+", fld("m", "a"), fld(SM, "instance_type"))),
               jump_unless(first, 6),
               assign(fld("m", "a"), hexstr(0x10)),
               prim("resubmit_preserving_field_list", hexstr(1, 4))],
              [assign(fld("h", "o"), fld(SM, "instance_type"))],
              field_lists=[(1, [("m", "a")])])
    # second pass: the frame as received, ingress_port zeroed (metadata reset), m.a kept,
    # instance_type RESUBMIT (6) in ingress; NORMAL (0) in egress
    assert p.process(3, b"\x00\x00\x00\x00") == [(1, b"\x00\x00\x00\x16")]


def test_timestamps_and_queue_depths_as_simple_switch_fills_them() -> None:
    egress = [assign(fld("t", "igt"), fld(SM, "ingress_global_timestamp")),
              assign(fld("t", "egt"), fld(SM, "egress_global_timestamp")),
              assign(fld("t", "enq"), fld(SM, "enq_timestamp")),
              assign(fld("t", "delta"), fld(SM, "deq_timedelta")),
              assign(fld("t", "eqd"), fld(SM, "enq_qdepth")),
              assign(fld("t", "dqd"), fld(SM, "deq_qdepth")),
              assign(fld("h", "r"), fld(SM, "egress_rid"))]
    p = build([assign(fld(SM, "mcast_grp"), hexstr(1, 2))], egress,
              extra_headers=[("t", T)],
              states=[state("start", [extract("h"), extract("t")])], deparse=("h", "t"))
    group(p, 1, (1, [2]), (2, [2]))
    out = p.process(0, bytes(4 + 22), now=1.5)
    us = (1_500_000).to_bytes(6, "big")
    tail = us + us + (1_500_000).to_bytes(4, "big") + bytes(4)
    # two copies queued for port 2: the first found the queue empty and left one behind
    assert out == [(2, b"\x00\x00\x00\x01" + tail + b"\x00\x01"),
                   (2, b"\x00\x00\x00\x02" + tail + b"\x01\x00")]


def test_an_invalid_header_reads_what_it_last_held() -> None:
    # h.o == 1: g follows h; ingress copies g.x into h.k, then invalidates g and reads it again
    states = [state("start", [extract("h")], key=[fld("h", "o")],
                    transitions=[trans("0x01", "parse_g"), trans(None, None)]),
              state("parse_g", [extract("g")])]
    p = build([assign(fld(SM, "egress_spec"), hexstr(1, 2)),
               assign(fld("h", "k"), fld("g", "x")),
               prim("remove_header", {"type": "header", "value": "g"}),
               assign(fld("h", "r"), fld("g", "x"))],
              [], extra_headers=[("g", G)], states=states, deparse=("h", "g"))
    assert p.process(0, b"\x00\x00\x01\x00\xbe\xef") == [(1, b"\xbe\xef\x01\xef")]
    # a new packet whose g is never extracted reads what the last packet left (bm_sim's PHV
    # pool: PHV::reset only marks headers invalid); metadata starts at zero
    assert p.process(0, b"\x00\x00\x00\x00") == [(1, b"\xbe\xef\x00\xef")]


def test_digest_is_sampled_at_the_end_of_ingress() -> None:
    learned = []
    p = build([prim("generate_digest", hexstr(0, 4), hexstr(1, 4)),
               assign(fld("h", "k"), hexstr(0x1234, 2)),
               assign(fld(SM, "egress_spec"), hexstr(1, 2))], [],
              learn_lists=[(1, "digest_t", [("h", "k"), (SM, "ingress_port")])])
    p.learn_sink = lambda name, values, now: learned.append((name, values))
    p.process(6, b"\x00\x00\x00\x00")
    assert learned == [("digest_t", (0x1234, 6))]


def test_stf_multicast_and_mirroring_commands() -> None:
    p = build([assign(fld(SM, "mcast_grp"), fld("h", "o")),
               prim("clone_ingress_pkt_to_egress", hexstr(9, 4), hexstr(0, 4))],
              [assign(fld("h", "r"), op("|", fld(SM, "egress_rid"),
                                        op("<<", fld(SM, "instance_type"), hexstr(4))))])
    doc_stf = """
mc_mgrp_create 1
mc_node_create 0 1 2
mc_node_create 5 3
mc_node_associate 1 0
mc_node_associate 1 1
mc_mgrp_create 2
mc_node_create 7 6
mc_node_associate 2 2
mirroring_add_mc 9 2
packet 0 0000 01 00
expect 1 0000 01 50
expect 2 0000 01 50
expect 3 0000 01 55
expect 6 0000 01 17
"""
    result = StfRunner(p).run(doc_stf.splitlines())
    assert result.ok, result.report()
    assert result.packets_out == 4


def test_multicast_to_a_group_without_replicas_is_a_counted_drop() -> None:
    p = build([assign(fld(SM, "mcast_grp"), hexstr(3, 2))], [])
    assert p.process(0, b"\x00\x00\x00\x00") == []
    p.pre.mgrp_create(3)
    assert p.process(0, b"\x00\x00\x00\x00") == []
    assert p.drops["mcast_grp"] == 2
    p.pre.node_associate(3, p.pre.node_create(0, [4]))
    assert p.process(0, b"\x00\x00\x00\x00") == [(4, b"\x00\x00\x00\x00")]
