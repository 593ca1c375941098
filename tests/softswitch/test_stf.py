"""STF runner: p4c's grammar, priorities (larger STF priority wins), don't-care nibbles, diffs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from controller.commands import stf as stf_command
from softswitch.stf import StfError, run_stf
from tests.softswitch.p4json import (
    action,
    assign,
    extract,
    fld,
    key,
    pipeline,
    prim,
    program,
    rd,
    state,
    table,
)

DATA = [["f1", 32, False], ["f2", 32, False], ["h1", 16, False], ["b1", 8, False],
        ["b2", 8, False]]


def ternary_program() -> dict:
    """ternary2-bmv2's first table: ternary on data.f1, setb1 sets egress_spec and data.b1;
    a second lpm table on data.f2 counts into an indirect counter."""
    actions = [
        action(0, "NoAction", [], []),
        action(1, "ingress.setb1", [("val", 8), ("port", 9)], [
            assign(fld("data", "b1"), rd(0)),
            assign(fld("standard_metadata", "egress_spec"), rd(1))]),
        action(2, "ingress.noop", [], []),
        action(3, "ingress.setb2", [("val", 8)], [
            assign(fld("data", "b2"), rd(0)),
            prim("count", {"type": "counter_array", "value": "ingress.hits"},
                 {"type": "hexstr", "value": "0x00000001"})]),
    ]
    test1 = table(0, "ingress.test1", [key("ternary", "data", "f1", "hdrs.data.f1")],
                  [(1, "ingress.setb1"), (2, "ingress.noop")], (2, []),
                  match_type="ternary", base_default_next="ingress.lpm1")
    lpm1 = table(1, "ingress.lpm1", [key("lpm", "data", "f2", "hdrs.data.f2")],
                 [(3, "ingress.setb2"), (0, "NoAction")], (0, []), match_type="lpm")
    return program(
        header_types=[("data_h", DATA)], headers=[("data", "data_h", False)],
        states=[state("start", [extract("data")])],
        ingress=pipeline("ingress", 0, "ingress.test1", [test1, lpm1]),
        actions=actions, deparse=["data"],
        counter_arrays=[{"name": "ingress.hits", "id": 0, "is_direct": False, "size": 4}],
    )


STF = """
# ternary2-bmv2, first part
add test1 0 data.f1:0x****0101 ingress.setb1(val:0x7f, port:2)
add test1 503 data.f1:0x****0202 ingress.setb1(val:7, port:3)
add test1 600 hdrs.data.f1:0x00000202 setb1(val:9, port:4)

expect 2 00000101 ******** **** 7f 66
packet 0 00000101 00000202 0303 55 66
expect 4 00000202 ******** **** 09 66 $
packet 2 00000202 00000303 0404 55 66
expect 3 11110202 ******** **** 07 66
packet 2 11110202 00000303 0404 55 66
wait
add lpm1 f2:0x0a000000/8 setb2(val:0x44)
add lpm1 f2:0x0a0b**** setb2(val:0x55)
expect 0 00000000 0a0b0c0d 0000 00 55
packet 0 00000000 0a0b0c0d 0000 00 00
expect 0 00000000 0a000001 0000 00 44
packet 0 00000000 0a000001 0000 00 00
check_counter hits(1) packets == 2
"""


def test_stf_passes_with_priorities_wildcards_and_lpm() -> None:
    result = run_stf(ternary_program(), STF, "t.stf")
    assert result.ok, result.report()
    assert (result.packets_in, result.packets_out) == (5, 5)


def test_stf_mismatch_reports_a_readable_diff() -> None:
    result = run_stf(ternary_program(), "expect 0 FF\npacket 0 00000000 00000000 0000 00 00\n",
                     "bad.stf")
    assert not result.ok
    assert "bad.stf:1: port 0 packet #1: differs at nibble 0" in result.report()


def test_stf_counts_missing_and_unexpected_packets() -> None:
    text = "expect 1 00\npacket 0 00000000 00000000 0000 00 00\n"
    failures = run_stf(ternary_program(), text).failures
    assert any("expected packet #1 not received" in f for f in failures)
    assert any("unexpected packet #1" in f for f in failures)


def test_stf_exact_length_and_counter_failure() -> None:
    text = ("expect 0 00000000 00000000 0000 00 00 00 $\n"
            "packet 0 00000000 00000000 0000 00 00\n"
            "check_counter hits(1) packets == 1\n")
    failures = run_stf(ternary_program(), text).failures
    assert len(failures) == 2
    assert "shorter than expected" in failures[1] or "shorter than expected" in failures[0]


def test_stf_bad_line_names_file_and_line() -> None:
    with pytest.raises(StfError, match=r"x.stf:2: .*unknown table"):
        run_stf(ternary_program(), "wait\nadd nosuch 1 f1:1 noop()\n", "x.stf")


def p4ft_stf(*argv: str) -> int:
    """``p4ft stf ARGS`` through the subcommand's own parser (independent of other commands)."""
    parser = argparse.ArgumentParser(prog="p4ft")
    stf_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["stf", *argv])
    return args.func(args)


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prog = tmp_path / "p.json"
    prog.write_text(json.dumps(ternary_program()))
    good, bad = tmp_path / "good.stf", tmp_path / "bad.stf"
    good.write_text(STF)
    bad.write_text("expect 0 FF\npacket 0 00000000 00000000 0000 00 00\n")
    assert p4ft_stf("--json", str(prog), "--stf", str(good)) == 0
    assert p4ft_stf("--json", str(prog), "--stf", str(bad)) == 1
    assert "differs at nibble 0" in capsys.readouterr().out
    assert p4ft_stf("--json", str(tmp_path / "none.json"), "--stf", str(good)) == 2
