"""MeterEntry writes and reads on the P4Runtime server, with PI's semantics (DeviceMgr
``meter_write`` / ``meter_read``): MODIFY only, a config sets a cell, no config or the all -1
config resets it, a read of a cell never configured carries no config."""

from __future__ import annotations

import pytest
from finsy.proto import p4r, rpc_code

from softswitch.externs import GREEN, RED
from tests.softswitch.p4rt_support import POLICER, PORT_COUNTER, running_server, update
from tests.softswitch.test_p4rt_write import write_codes


@pytest.fixture
async def h():
    async with running_server() as harness:
        await harness.push_pipeline()
        yield harness


def policer(h):
    return h.device.pipeline.meters["ingress.policer"]


def entry(index: int | None = None, **config: int) -> p4r.MeterEntry:
    out = p4r.MeterEntry(meter_id=POLICER)
    if index is not None:
        out.index.index = index
    if config:
        out.config.CopyFrom(p4r.MeterConfig(**config))
    return out


async def configs(h, pattern: p4r.MeterEntry) -> dict[int, tuple[int, ...] | None]:
    """Index → (cir, cburst, pir, pburst), or None for a cell read without a config."""
    out = {}
    for e in await h.read(p4r.Entity(meter_entry=pattern)):
        m = e.meter_entry
        assert m.meter_id == POLICER
        out[m.index.index] = ((m.config.cir, m.config.cburst, m.config.pir, m.config.pburst)
                              if m.HasField("config") else None)
    return out


async def test_a_cell_is_configured_read_back_and_meters_packets(h) -> None:
    await h.write(update("MODIFY", entry(2, cir=10, cburst=1, pir=10, pburst=1)))
    assert await configs(h, entry()) == {0: None, 1: None, 2: (10, 1, 10, 1), 3: None}
    assert await configs(h, entry(2)) == {2: (10, 1, 10, 1)}
    assert len(await h.read(p4r.Entity(meter_entry=p4r.MeterEntry()))) == 4  # every meter
    meter = policer(h)
    assert [meter.execute(2, 60, 5.0) for _ in range(2)] == [GREEN, RED]
    assert meter.execute(1, 60, 5.0) == GREEN


async def test_modify_without_config_or_with_all_minus_one_resets(h) -> None:
    for reset in (entry(1), entry(1, cir=-1, cburst=-1, pir=-1, pburst=-1)):
        await h.write(update("MODIFY", entry(1, cir=1, cburst=1, pir=1, pburst=1)))
        await h.write(update("MODIFY", reset))
        assert await configs(h, entry(1)) == {1: None}
        assert [policer(h).execute(1, 60, 5.0) for _ in range(3)] == [GREEN] * 3


async def test_a_lone_minus_one_is_unlimited_and_reads_back_as_pi_does(h) -> None:
    await h.write(update("MODIFY", entry(0, cir=5, cburst=-1, pir=-1, pburst=2)))
    assert await configs(h, entry(0)) == {0: (5, 2**32 - 1, -1, 2)}


async def test_without_index_every_cell_is_written(h) -> None:
    """PI answers UNIMPLEMENTED; the softswitch writes every cell, as for counters."""
    await h.write(update("MODIFY", entry(cir=7, cburst=3, pir=8, pburst=4)))
    assert set((await configs(h, entry())).values()) == {(7, 3, 8, 4)}


async def test_bad_meter_writes_get_their_codes_and_change_nothing(h) -> None:
    codes = await write_codes(
        h,
        update("INSERT", entry(0, cir=1, cburst=1, pir=1, pburst=1)),
        update("DELETE", entry(0)),
        update("MODIFY", entry(0, cir=-5, cburst=1, pir=1, pburst=1)),
        update("MODIFY", entry(0, cir=1, cburst=2**32, pir=1, pburst=1)),
        update("MODIFY", entry(0, cir=9, cburst=1, pir=8, pburst=1)),
        update("MODIFY", entry(4, cir=1, cburst=1, pir=1, pburst=1)),
        update("MODIFY", p4r.MeterEntry(meter_id=PORT_COUNTER, index=p4r.Index(index=0))),
    )
    assert codes == [rpc_code.INVALID_ARGUMENT, rpc_code.INVALID_ARGUMENT,
                     rpc_code.INVALID_ARGUMENT, rpc_code.UNIMPLEMENTED,
                     rpc_code.INVALID_ARGUMENT, rpc_code.OUT_OF_RANGE,
                     rpc_code.INVALID_ARGUMENT]
    assert await configs(h, entry()) == dict.fromkeys(range(4))
