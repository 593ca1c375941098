"""v1model indirect meters on the interpreter, colored as BMv2's trTCM (bm_sim meters.cpp).

The program is the CoPP shape p4c-bm2-ss emits for
``meter(16, MeterType.packets) punt_meter; punt_meter.execute_meter((bit<32>) meta.punt_reason,
meta.punt_color);`` followed by ``if (meta.punt_color == 2) mark_to_drop(...)``: a
``meter_arrays`` entry with ``rate_count`` 2 and an ``execute_meter`` primitive whose index is the
metadata field (p4c maps a cast to its operand) and whose result is the color field.
"""

from __future__ import annotations

import pytest

from softswitch.externs import GREEN, RED, YELLOW, MeterConfig
from softswitch.pipeline import Pipeline
from tests.softswitch.p4json import (
    action,
    assign,
    conditional,
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

H = [["reason", 8, False], ["color", 8, False]]
REASON, COLOR = fld("scalars", "metadata_t.punt_reason"), fld("scalars", "metadata_t.punt_color")


def copp_program(meter_type: str = "packets") -> Pipeline:
    meter = {"type": "meter_array", "value": "FtIngress.punt_meter"}
    punt = action(0, "FtIngress.punt", [], [
        assign(REASON, fld("h", "reason")),
        prim("execute_meter", meter, REASON, COLOR),
        assign(fld("h", "color"), COLOR),
        assign(fld("standard_metadata", "egress_spec"), hexstr(1, 2)),
    ])
    drop = action(1, "FtIngress.policed", [], [
        prim("mark_to_drop", {"type": "header", "value": "standard_metadata"}),
    ])
    tables = [
        table(0, "tbl_punt", [], [(0, "FtIngress.punt")], (0, []), const_default=True,
              base_default_next="node_3"),
        table(1, "tbl_policed", [], [(1, "FtIngress.policed")], (1, []), const_default=True),
    ]
    red = conditional(0, "node_3", op("==", COLOR, hexstr(RED)), "tbl_policed", None)
    doc = program(
        header_types=[("h_t", H)], headers=[("h", "h_t", False)],
        states=[state("start", [extract("h")])],
        ingress=pipeline("ingress", 0, "tbl_punt", tables, [red]),
        actions=[punt, drop], deparse=["h"],
        meter_arrays=[{"name": "FtIngress.punt_meter", "id": 0,
                       "source_info": {"filename": "p4src/flowtable.p4", "line": 120},
                       "is_direct": False, "size": 16, "rate_count": 2, "type": meter_type}])
    doc["header_types"][0]["fields"] = [["metadata_t.punt_reason", 8, False],
                                        ["metadata_t.punt_color", 2, False], ["_padding", 6, False]]
    return Pipeline.from_json(doc)


def colors(p: Pipeline, reason: int, now: float, n: int = 1, size: int = 0) -> list[int | None]:
    """The color of each of ``n`` frames at ``now``; None for a frame the switch dropped."""
    out = []
    for _ in range(n):
        sent = p.process(0, bytes([reason, 0]) + bytes(size), now)
        out.append(sent[0][1][1] if sent else None)
    return out


def test_an_unconfigured_cell_is_green() -> None:
    p = copp_program()
    assert colors(p, 1, 5.0, n=100) == [GREEN] * 100


def test_equal_rates_drop_exactly_what_exceeds_rate_plus_burst() -> None:
    """The CoPP configuration: cir = pir = rate, cburst = pburst = burst (per reason cell)."""
    p = copp_program()
    p.meters["FtIngress.punt_meter"].configure(1, MeterConfig(cir=10, cburst=2, pir=10, pburst=2))
    assert colors(p, 1, 100.0, n=4) == [GREEN, GREEN, None, None]
    assert colors(p, 1, 100.1, n=2) == [GREEN, None]  # 10/s for 0.1 s: one token back
    assert colors(p, 2, 100.1, n=3) == [GREEN] * 3  # another reason's cell is not configured
    assert p.drops["egress_spec"] == 3


def test_two_rates_three_colors_in_bytes() -> None:
    """Peak bucket first: short → RED; else it pays and a short committed bucket → YELLOW."""
    p = copp_program("bytes")
    p.meters["FtIngress.punt_meter"].configure(
        3, MeterConfig(cir=1000, cburst=100, pir=2000, pburst=200))
    # 60-byte frames (2 header bytes + 58): peak 200→140→80→20, committed 100→40 then short.
    assert colors(p, 3, 50.0, n=4, size=58) == [GREEN, YELLOW, YELLOW, None]


def test_tokens_are_whole_tokens_counted_from_the_time_origin() -> None:
    """BMv2 credits int(micros * rate) - already credited: at 3/s, 10.25 s → 30 tokens and
    10.35 s → 31, so a token arrives 0.1 s later (a fractional bucket would hold 0.3)."""
    p = copp_program()
    p.meters["FtIngress.punt_meter"].configure(4, MeterConfig(cir=3, cburst=1, pir=3, pburst=1))
    assert colors(p, 4, 10.25, n=2) == [GREEN, None]
    assert colors(p, 4, 10.35) == [GREEN]
    assert colors(p, 4, 10.60) == [None]  # int(31.8) = 31: nothing new yet


def test_reset_and_bad_configs() -> None:
    meter = copp_program().meters["FtIngress.punt_meter"]
    meter.configure(0, MeterConfig(1, 1, 1, 1))
    assert meter.execute(0, 1, 1.0) == GREEN and meter.execute(0, 1, 1.0) == RED
    meter.reset(0)
    assert meter.config(0) is None and meter.execute(0, 1, 1.0) == GREEN
    with pytest.raises(ValueError, match="CIR"):
        meter.configure(0, MeterConfig(cir=5, cburst=1, pir=4, pburst=1))
    with pytest.raises(IndexError):
        meter.configure(16, MeterConfig(1, 1, 1, 1))
    assert meter.execute(99, 1, 1.0) == GREEN and meter.out_of_range == 1
