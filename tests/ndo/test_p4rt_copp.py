"""CoPP through the driver: the punt meter's cells written per reason at connect, drops read back
per reason; on a pipeline without the meter, policing is unavailable and nothing else changes."""

from __future__ import annotations

import asyncio
import logging

import pytest
from finsy.proto import p4r

from ndo.api import PuntReason
from ndo.p4runtime.driver import P4RuntimeDriver
from ndo.p4runtime.schema import PUNT_DROPS, PUNT_METER, FlowSchema
from tests.ndo.p4rt_support import DEVICE_ID, p4info, pipeline, running_target
from tests.ndo.test_p4rt_session import flow_frame, replace, until, v4_rule
from tests.p4build import require_current

pytestmark = pytest.mark.asyncio

RATES = {int(r): (50, 5) for r in PuntReason if r is not PuntReason.NONE}


def require_punt_meter() -> None:
    """Skip until p4src/flowtable.p4's outputs with the punt meter are compiled."""
    require_current("p4src/flowtable.p4")


def without_copp():  # type: ignore[no-untyped-def]
    """flowtable.p4's P4Info as compiled before the punt meter."""
    info = p4info(64)
    for field, name in (("meters", PUNT_METER), ("counters", PUNT_DROPS)):
        kept = [o for o in getattr(info, field) if o.preamble.name != name]
        info.ClearField(field)
        getattr(info, field).extend(kept)
    return info


async def test_without_the_punt_meter_copp_is_unavailable_said_once_and_nothing_fails(
        caplog: pytest.LogCaptureFixture) -> None:
    async with running_target() as target:
        caplog.set_level(logging.WARNING)
        driver = P4RuntimeDriver(target.address, FlowSchema.from_p4info(without_copp()),
                                 device_id=DEVICE_ID, clock=target.clock,
                                 pipeline=pipeline(64), punt_rates=RATES)
        await driver.start()
        await driver.read_punt_drops()
        assert driver.policing.stats()["status"].startswith("unavailable")
        assert driver.counters["punt_meter_writes"] == 0
        assert driver.counters["punt_meter_write_errors"] == 0
        assert driver.counters["punt_drops_read_errors"] == 0
        target.ports[1].inject(flow_frame(1))
        assert (await anext(driver.packets())).reason is PuntReason.MISS
        assert (await driver.execute([replace(1, v4_rule(1))]))[0].ok
        warnings = [r for r in caplog.records if "CoPP unavailable" in r.getMessage()]
        assert len(warnings) == 1 and "[punt] is configured" in warnings[0].getMessage()
        await driver.close()


async def test_meter_cells_are_configured_per_reason_at_connect() -> None:
    require_punt_meter()
    async with running_target() as target:
        rates = {**RATES, int(PuntReason.MISS): (1000, 100)}
        driver = target.driver(punt_rates=rates)
        await driver.start()
        assert driver.policing.stats()["status"] == "policing"
        assert driver.counters["punt_meter_writes"] == 1
        schema = driver.schema
        assert schema.punt_meter is not None
        entity = p4r.Entity()
        entity.meter_entry.meter_id = schema.punt_meter.id
        configs = {e.meter_entry.index.index: e.meter_entry.config
                   async for e in driver._client.read([entity])}
        for reason, (rate, burst) in rates.items():
            config = configs[reason]
            assert (config.cir, config.cburst, config.pir, config.pburst) == (rate, burst,
                                                                             rate, burst)
        await driver.close()


async def test_a_miss_flood_is_dropped_in_the_switch_while_exceptions_still_arrive() -> None:
    require_punt_meter()
    async with running_target() as target:  # the clock stands still: no tokens come back
        rates = {**RATES, int(PuntReason.MISS): (1, 3)}
        driver = target.driver(punt_rates=rates)
        await driver.start()
        await driver.execute([replace(1, v4_rule(1))])  # its FIN punts as TCP_FIN_RST
        for n in range(2, 42):
            target.ports[1].inject(flow_frame(n))
        target.ports[1].inject(flow_frame(1, flags="FA"))
        received: list[PuntReason] = []
        packets = driver.packets()
        while PuntReason.TCP_FIN_RST not in received:
            received.append((await asyncio.wait_for(anext(packets), 3.0)).reason)
        misses = received.count(PuntReason.MISS)
        assert 1 <= misses < 40
        await driver.read_punt_drops()
        await until(lambda: driver.policing.drops.get("MISS", {}).get("packets") == 40 - misses)
        assert "TCP_FIN_RST" not in driver.policing.drops
        await driver.close()


def with_copp():  # type: ignore[no-untyped-def]
    """flowtable.p4's P4Info naming a punt meter and drop counter the switch's program lacks."""
    info = without_copp()
    meter = info.meters.add(size=16)
    meter.preamble.id, meter.preamble.name = 0x15000001, PUNT_METER
    meter.spec.unit = meter.spec.PACKETS
    counter = info.counters.add(size=16)
    counter.preamble.id, counter.preamble.name = 0x12000001, PUNT_DROPS
    counter.spec.unit = counter.spec.BOTH
    return info


async def test_a_switch_refusing_the_meter_config_is_shown_and_nothing_fails() -> None:
    async with running_target() as target:
        driver = P4RuntimeDriver(target.address, FlowSchema.from_p4info(with_copp()),
                                 device_id=DEVICE_ID, clock=target.clock,
                                 pipeline=pipeline(64), punt_rates=RATES)
        await driver.start()
        assert driver.policing.available
        assert driver.policing.stats()["status"].startswith("error: ")
        assert driver.counters["punt_meter_write_errors"] == 1
        await driver.read_punt_drops()
        assert driver.counters["punt_drops_read_errors"] == 1
        assert driver.policing.stats()["drops"] == {}
        target.ports[1].inject(flow_frame(1))
        assert (await anext(driver.packets())).reason is PuntReason.MISS
        await driver.close()
