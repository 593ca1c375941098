"""Tables (exact, lpm, ternary, range, optional, valid; priorities; const entries and defaults;
hit/miss branches) and the v1model traffic manager (multicast, clone, resubmit, recirculate)."""

from __future__ import annotations

import pytest

from softswitch.pipeline import Pipeline
from softswitch.pre import MirrorSession
from softswitch.tables import EntryNotFound, InvalidEntry
from tests.softswitch.p4json import (
    action,
    assign,
    conditional,
    extract,
    fld,
    hexstr,
    key,
    op,
    pipeline,
    prim,
    program,
    rd,
    state,
    table,
)

H = [["k", 16, False], ["o", 8, False], ["r", 8, False]]
SM = "standard_metadata"


def set_port() -> dict:
    return action(1, "ingress.set_port", [("port", 9)], [assign(fld(SM, "egress_spec"), rd(0))])


def one_table(keys, match_type, *, entries=None, next_tables=None, extra_tables=(),
              conditionals=(), init="ingress.t", egress=None, extra_actions=()) -> Pipeline:
    acts = [action(0, "NoAction", [], []), set_port(), *extra_actions]
    t = table(0, "ingress.t", keys, [(1, "ingress.set_port"), (0, "NoAction")], (0, []),
              match_type=match_type, entries=entries, next_tables=next_tables)
    return Pipeline.from_json(program(
        header_types=[("h_t", H)], headers=[("h", "h_t", False)],
        states=[state("start", [extract("h")])],
        ingress=pipeline("ingress", 0, init, [t, *extra_tables], list(conditionals)),
        egress=egress, actions=acts, deparse=["h"]))


def port_of(p: Pipeline, k=0, o=0, r=0) -> int | None:
    out = p.process(0, k.to_bytes(2, "big") + bytes([o, r]))
    return out[0][0] if out else None


def test_lpm_longest_prefix_wins_whatever_the_insert_order() -> None:
    p = one_table([key("lpm", "h", "k")], "lpm")
    t = p.tables["ingress.t"]
    t.insert(((0x1200, 8),), 0, "ingress.set_port", (1,))
    t.insert(((0x1234, 16),), 0, "ingress.set_port", (3,))
    t.insert(((0x1230, 12),), 0, "ingress.set_port", (2,))
    assert [port_of(p, k) for k in (0x1234, 0x1235, 0x12FF, 0x1300)] == [3, 2, 1, 0]
    t.delete(((0x1234, 16),), 0)
    assert port_of(p, 0x1234) == 2
    with pytest.raises(EntryNotFound):
        t.delete(((0x1234, 16),), 0)


def test_ternary_range_optional_priorities_follow_p4runtime() -> None:
    p = one_table([key("ternary", "h", "k"), key("range", "h", "o"), key("optional", "h", "r")],
                  "range")
    t = p.tables["ingress.t"]
    t.insert(((0x1200, 0xFF00), (0, 255), (0, True)), 10, "ingress.set_port", (1,))
    t.insert(((0x1234, 0xFFFF), (10, 20), (0, True)), 20, "ingress.set_port", (2,))
    t.insert(((0, 0), (0, 255), (7, False)), 30, "ingress.set_port", (3,))
    assert port_of(p, 0x1234, 15) == 2
    assert port_of(p, 0x1234, 25) == 1
    assert port_of(p, 0x1234, 15, r=7) == 3
    assert port_of(p, 0x9999) == 0
    t.modify(((0x1234, 0xFFFF), (10, 20), (0, True)), 20, "ingress.set_port", (5,))
    assert port_of(p, 0x1234, 15) == 5
    with pytest.raises(InvalidEntry):
        t.insert(((0, 0), (9, 3), (0, True)), 1, "ingress.set_port", (1,))


def test_const_entries_use_bmv2_priorities_and_make_the_table_immutable() -> None:
    def entry(v, m, prio, port):
        return {"match_key": [{"match_type": "ternary", "key": hex(v), "mask": hex(m)}],
                "action_entry": {"action_id": 1, "action_data": [hex(port)]}, "priority": prio}
    p = one_table([key("ternary", "h", "k")], "ternary",
                  entries=[entry(0x1000, 0xF000, 2, 1), entry(0x1100, 0xFF00, 1, 2),
                           entry(0, 0, 3, 3)])
    assert [port_of(p, k) for k in (0x1187, 0x1087, 0x0001)] == [2, 1, 3]
    with pytest.raises(InvalidEntry):
        p.tables["ingress.t"].insert(((1, 1),), 1, "ingress.set_port", (1,))


def test_valid_key_and_exact_dict_lookup() -> None:
    p = one_table([{"match_type": "exact", "name": "h.$valid$", "target": ["h", "$valid$"],
                    "mask": None}, key("exact", "h", "o", mask="0x0f")], "exact")
    t = p.tables["ingress.t"]
    t.insert((1, 5), 0, "ingress.set_port", (4,))
    assert port_of(p, o=0x35) == 4  # static key mask applied before lookup
    assert port_of(p, o=0x36) == 0


def test_hit_miss_branches_conditionals_and_defaults() -> None:
    mark = action(2, "ingress.mark", [], [assign(fld("h", "r"), hexstr(0xEE))])
    t2 = table(1, "tbl_mark", [], [(2, "ingress.mark")], (2, []), const_default=True)
    p = one_table([key("exact", "h", "k")], "exact",
                  next_tables={"__HIT__": "node_1", "__MISS__": None},
                  extra_tables=[t2], extra_actions=[mark],
                  conditionals=[conditional(0, "node_1", op("==", fld("h", "o"), hexstr(1)),
                                            "tbl_mark", None)])
    t = p.tables["ingress.t"]
    t.insert((7,), 0, "ingress.set_port", (2,))
    assert p.process(0, b"\x00\x07\x01\x00") == [(2, b"\x00\x07\x01\xee")]
    assert p.process(0, b"\x00\x07\x02\x00") == [(2, b"\x00\x07\x02\x00")]
    assert p.process(0, b"\x00\x08\x01\x00") == [(0, b"\x00\x08\x01\x00")]
    t.set_default("ingress.set_port", (9,))
    assert port_of(p, 8) == 9
    with pytest.raises(InvalidEntry):
        p.tables["tbl_mark"].set_default("ingress.mark", ())


def _tm_program(ingress_prims: list[dict], egress_prims: list[dict]) -> Pipeline:
    acts = [action(0, "ingress.i", [], ingress_prims), action(1, "egress.e", [], egress_prims)]
    ti = table(0, "tbl_i", [], [(0, "ingress.i")], (0, []), const_default=True)
    te = table(1, "tbl_e", [], [(1, "egress.e")], (1, []), const_default=True)
    return Pipeline.from_json(program(
        header_types=[("h_t", H)], headers=[("h", "h_t", False)],
        states=[state("start", [extract("h")])],
        ingress=pipeline("ingress", 0, "tbl_i", [ti]), egress=pipeline("egress", 1, "tbl_e", [te]),
        actions=acts, deparse=["h"]))


STAMP = assign(fld("h", "r"), op("+", fld("h", "r"), op("+", fld(SM, "instance_type"),
                                                        op("<<", fld(SM, "egress_port"),
                                                           hexstr(4)))))


def test_multicast_replicates_with_rid() -> None:
    p = _tm_program([assign(fld(SM, "mcast_grp"), hexstr(5, 2))],
                    [STAMP, assign(fld("h", "o"), fld(SM, "egress_rid"))])
    p.pre.mgrp_create(5)
    p.pre.node_associate(5, p.pre.node_create(10, [1]))
    p.pre.node_associate(5, p.pre.node_create(20, [2]))
    assert p.process(0, b"\x00\x00\x00\x00") == [(1, b"\x00\x00\x0a\x15"),
                                                 (2, b"\x00\x00\x14\x25")]


def test_clone_ingress_to_egress_and_mark_to_drop_in_egress() -> None:
    clone = prim("clone_ingress_pkt_to_egress", hexstr(3, 4), hexstr(0, 4))
    p = _tm_program([assign(fld(SM, "egress_spec"), hexstr(2, 2)),
                     assign(fld("h", "k"), hexstr(0xBEEF, 2)), clone], [STAMP])
    p.pre.mirroring_add(3, MirrorSession(egress_port=7))
    # the clone is the original packet (re-parsed), instance_type 1
    assert sorted(p.process(0, b"\x00\x00\x00\x00")) == [(2, b"\xbe\xef\x00\x20"),
                                                         (7, b"\x00\x00\x00\x71")]
    q = _tm_program([assign(fld(SM, "egress_spec"), hexstr(2, 2))],
                    [prim("mark_to_drop", {"type": "header", "value": SM})])
    assert q.process(0, b"\x00\x00\x00\x00") == []


def test_resubmit_and_recirculate_run_again_with_their_instance_type() -> None:
    again = op("==", fld(SM, "instance_type"), hexstr(0, 4))
    resub = _tm_program([assign(fld(SM, "egress_spec"), hexstr(1, 2)),
                         assign(fld("h", "o"), op("+", fld("h", "o"), fld(SM, "instance_type"))),
                         prim("_jump_if_zero", op("b2d", None, again), hexstr(4)),
                         prim("resubmit_preserving_field_list", hexstr(0))], [])
    assert resub.process(0, b"\x00\x00\x00\x00") == [(1, b"\x00\x00\x06\x00")]
    # simple_switch sets instance_type NORMAL on every unicast packet at the end of ingress,
    # so egress tells the passes apart by what ingress wrote (1, then 1 + 1 + RECIRC)
    first = op("==", fld("h", "o"), hexstr(1))
    recirc = _tm_program([assign(fld(SM, "egress_spec"), hexstr(1, 2)),
                          assign(fld("h", "o"), op("+", fld("h", "o"),
                                                   op("+", hexstr(1), fld(SM, "instance_type"))))],
                         [prim("_jump_if_zero", op("b2d", None, first), hexstr(2)),
                          prim("recirculate_preserving_field_list", hexstr(0))])
    assert recirc.process(0, b"\x00\x00\x00\x00") == [(1, b"\x00\x00\x06\x00")]
    forever = _tm_program([assign(fld(SM, "egress_spec"), hexstr(1, 2))],
                          [prim("recirculate_preserving_field_list", hexstr(0))])
    assert forever.process(0, b"\x00\x00\x00\x00") == []
    assert forever.drops["loop"] == 1


def test_resubmit_preserves_its_field_list_only() -> None:
    again = op("==", fld(SM, "instance_type"), hexstr(0, 4))
    prims = [assign(fld(SM, "egress_spec"), hexstr(1, 2)),
             assign(fld("meta", "n"), op("+", fld("meta", "n"), hexstr(1))),
             assign(fld("meta", "lost"), op("+", fld("meta", "lost"), hexstr(1))),
             assign(fld("h", "o"), fld("meta", "n")),
             assign(fld("h", "r"), fld("meta", "lost")),
             prim("_jump_if_zero", op("b2d", None, again), hexstr(7)),
             prim("resubmit_preserving_field_list", hexstr(1))]
    acts = [action(0, "ingress.i", [], prims)]
    ti = table(0, "tbl_i", [], [(0, "ingress.i")], (0, []), const_default=True)
    doc = program(
        header_types=[("h_t", H), ("m_t", [["n", 8, False], ["lost", 8, False]])],
        headers=[("h", "h_t", False), ("meta", "m_t", True)],
        states=[state("start", [extract("h")])],
        ingress=pipeline("ingress", 0, "tbl_i", [ti]), actions=acts, deparse=["h"])
    doc["field_lists"] = [{"id": 1, "name": "fl", "elements": [fld("meta", "n")]}]
    p = Pipeline.from_json(doc)
    assert p.process(0, b"\x00\x00\x00\x00") == [(1, b"\x00\x00\x02\x01")]


def test_lpm_with_an_exact_key_probes_each_prefix_length() -> None:
    p = one_table([key("exact", "h", "o"), key("lpm", "h", "k")], "lpm")
    t = p.tables["ingress.t"]
    t.insert((1, (0x1200, 8)), 0, "ingress.set_port", (1,))
    t.insert((2, (0x1200, 8)), 0, "ingress.set_port", (2,))
    t.insert((1, (0, 0)), 0, "ingress.set_port", (3,))
    assert [port_of(p, 0x1234, o) for o in (1, 2, 3)] == [1, 2, 0]
    assert port_of(p, 0x9999, 1) == 3
    t.delete((1, (0x1200, 8)), 0)
    assert port_of(p, 0x1234, 1) == 3
    t.clear()
    assert port_of(p, 0x1234, 2) == 0 and len(t) == 0
