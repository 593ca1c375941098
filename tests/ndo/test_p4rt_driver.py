"""P4RuntimeDriver against the softswitch's P4Runtime server: writes, errors, stats, reconcile."""

from __future__ import annotations

import asyncio

import pytest

from ndo.api import Command, FlowCommand, Refusal
from ndo.p4runtime.driver import P4RuntimeDriver
from ndo.p4runtime.schema import FlowSchema
from tests.ndo.p4rt_support import p4info, pipeline, running_target, v4_rule, v6_rule

pytestmark = pytest.mark.asyncio


def replace(cookie: int, rule) -> FlowCommand:  # type: ignore[no-untyped-def]
    return FlowCommand(Command.REPLACE, cookie, rule)


def destroy(cookie: int, rule=None) -> FlowCommand:  # type: ignore[no-untyped-def]
    return FlowCommand(Command.DESTROY, cookie, rule)


def stats(cookie: int) -> FlowCommand:
    return FlowCommand(Command.STATS, cookie)


def key_of(rule) -> tuple:  # type: ignore[no-untyped-def]
    """The stand-in table's key for a rule's match."""
    m = rule.match
    return ((m.ingress_port, int.from_bytes(m.src, "big"), int.from_bytes(m.dst, "big"), m.proto,
             m.sport, m.dport), 0)


async def test_replace_batches_into_requests_of_batch_size() -> None:
    async with running_target(size=4096) as target:
        driver = target.driver(batch_size=1000)
        await driver.start()
        results = await driver.execute([replace(i, v4_rule(i)) for i in range(2500)])
        assert all(r.ok for r in results)
        assert [r.cookie for r in results] == list(range(2500))
        assert driver.counters["write_requests"] == 3
        assert len(target.table(4)) == 2500
        assert driver.occupancy(4) == 2500
        await driver.close()


async def test_replace_writes_post_nat_values_and_nat_defaults_to_the_match() -> None:
    async with running_target() as target:
        driver = target.driver()
        await driver.start()
        nat = v4_rule(1, nat_src=bytes([203, 0, 113, 7]), nat_sport=40000)
        plain, six = v4_rule(2), v6_rule(1)
        assert all(r.ok for r in await driver.execute(
            [replace(1, nat), replace(2, plain), replace(3, six)]))
        entry = target.table(4).get(*key_of(nat))
        assert entry.action == "FtIngress.forward_v4"
        assert entry.params == (2, 0x0200000002FE, 0x020000000202, 0xCB007107, 0xC0000201, 40000,
                                80, 1500)
        entry = target.table(4).get(*key_of(plain))
        assert entry.params[3:7] == (0x0A000002, 0xC0000201, 10002, 80)
        assert entry.ttl_ns == 30 * 10**9
        entry = target.table(6).get(*key_of(six))
        assert entry.action == "FtIngress.forward_v6" and entry.params[0] == 3
        await driver.close()


async def test_replace_of_an_installed_cookie_modifies_the_entry() -> None:
    async with running_target() as target:
        driver = target.driver()
        await driver.start()
        await driver.execute([replace(7, v4_rule(7))])
        results = await driver.execute([replace(7, v4_rule(7, egress_port=9))])
        assert results[0].ok
        assert len(target.table(4)) == 1
        assert target.table(4).get(*key_of(v4_rule(7))).params[0] == 9
        await driver.close()


async def test_replace_with_a_new_key_moves_the_entry() -> None:
    async with running_target() as target:
        driver = target.driver()
        await driver.start()
        await driver.execute([replace(7, v4_rule(7))])
        assert (await driver.execute([replace(7, v4_rule(8))]))[0].ok
        assert target.table(4).get(*key_of(v4_rule(7))) is None
        assert target.table(4).get(*key_of(v4_rule(8))) is not None
        assert driver.occupancy(4) == 1 and driver.rule_of(7) == v4_rule(8)
        await driver.close()


async def test_destroy_deletes_and_a_missing_entry_counts_as_deleted() -> None:
    async with running_target() as target:
        driver = target.driver()
        await driver.start()
        await driver.execute([replace(1, v4_rule(1)), replace(2, v4_rule(2))])
        target.table(4).delete(*key_of(v4_rule(2)))  # gone behind the driver's back
        results = await driver.execute([destroy(1), destroy(2)])
        assert [r.ok for r in results] == [True, True]
        assert len(target.table(4)) == 0 and driver.occupancy(4) == 0
        unknown = await driver.execute([destroy(99)])
        assert unknown[0].refusal is Refusal.UNKNOWN_COOKIE
        by_rule = await driver.execute([destroy(99, v4_rule(99))])  # NOT_FOUND → success
        assert by_rule[0].ok
        await driver.close()


async def test_insert_over_an_existing_entry_succeeds_and_takes_our_actions() -> None:
    async with running_target() as target:
        driver = target.driver()
        await driver.start()
        rule = v4_rule(5)
        key, prio = key_of(rule)
        target.table(4).insert(key, prio, "FtIngress.forward_v4", (1, 1, 1, 1, 1, 1, 1, 1))
        results = await driver.execute([replace(5, rule)])
        assert results[0].ok  # ALREADY_EXISTS, then MODIFY
        assert target.table(4).get(key, prio).params[0] == 2
        assert driver.occupancy(4) == 1
        await driver.close()


async def test_modify_of_a_vanished_entry_reinserts_it() -> None:
    async with running_target() as target:
        driver = target.driver()
        await driver.start()
        await driver.execute([replace(5, v4_rule(5))])
        target.table(4).delete(*key_of(v4_rule(5)))
        assert (await driver.execute([replace(5, v4_rule(5, mtu=1400))]))[0].ok
        assert target.table(4).get(*key_of(v4_rule(5))).params[7] == 1400
        await driver.close()


async def test_replace_then_destroy_in_one_batch_runs_in_order() -> None:
    async with running_target() as target:
        driver = target.driver()
        await driver.start()
        results = await driver.execute([replace(1, v4_rule(1)), destroy(1),
                                        replace(2, v4_rule(2))])
        assert all(r.ok for r in results)
        assert target.table(4).get(*key_of(v4_rule(1))) is None
        assert target.table(4).get(*key_of(v4_rule(2))) is not None
        assert driver.rule_of(1) is None and driver.occupancy(4) == 1
        await driver.close()


async def test_full_table_is_refused_before_the_write() -> None:
    async with running_target(size=4) as target:
        driver = target.driver()
        await driver.start()
        results = await driver.execute([replace(i, v4_rule(i)) for i in range(6)])
        assert [r.refusal for r in results] == [None] * 4 + [Refusal.NO_SPACE] * 2
        assert driver.counters["write_updates"] == 4
        await driver.close()


@pytest.mark.parametrize("bmv2", [False, True], ids=["RESOURCE_EXHAUSTED", "bmv2-UNKNOWN"])
async def test_full_table_answer_from_the_target_is_no_space(bmv2: bool) -> None:
    async with running_target(size=4, bmv2=bmv2) as target:
        driver = target.driver()
        await driver.start()
        for n in range(3):  # entries the driver does not know about
            key, prio = key_of(v4_rule(100 + n))
            target.table(4).insert(key, prio, "FtIngress.forward_v4", (1,) * 8)
        results = await driver.execute([replace(i, v4_rule(i)) for i in range(2)])
        assert results[0].ok
        assert results[1].refusal is Refusal.NO_SPACE
        assert driver.occupancy(4) == 1
        await driver.close()


async def test_other_write_errors_are_refused_with_the_server_message() -> None:
    async with running_target() as target:
        # the driver's P4Info believes mtu is 32 bits wide; the switch's says 16
        info = p4info(64)
        for action in info.actions:
            for param in action.params:
                if param.name == "mtu":
                    param.bitwidth = 32
        driver = P4RuntimeDriver(target.address, FlowSchema.from_p4info(info), device_id=3,
                                 pipeline=pipeline(64), clock=target.clock)
        await driver.start()
        results = await driver.execute([replace(1, v4_rule(1, mtu=70000)),
                                        replace(2, v4_rule(2))])
        assert results[0].refusal is Refusal.ERROR
        # the spec's Bytestrings: OUT_OF_RANGE (BMv2 says INVALID_ARGUMENT)
        assert "OUT_OF_RANGE" in results[0].message and "fit" in results[0].message
        assert results[1].ok
        await driver.close()


async def test_rules_the_tables_cannot_express_are_unsupported() -> None:
    async with running_target() as target:
        driver = target.driver()
        await driver.start()
        results = await driver.execute([
            replace(1, v4_rule(1, decrement_ttl=False)),
            replace(2, v4_rule(2, nat_dst=bytes(16))),
            replace(3, v4_rule(3, egress_port=600)),
        ])
        assert [r.refusal for r in results] == [Refusal.UNSUPPORTED] * 3
        assert driver.counters["write_updates"] == 0
        await driver.close()


async def test_stats_reports_counter_deltas_and_lastused_on_the_callers_clock() -> None:
    async with running_target() as target:
        driver = target.driver()
        await driver.start()
        await driver.execute([replace(1, v4_rule(1)), replace(2, v4_rule(2))])
        first = await driver.execute([stats(1), stats(2)])
        assert first[0].stats.packets == 0 and first[0].stats.lastused is None
        entry = target.table(4).get(*key_of(v4_rule(1)))
        entry.packets, entry.bytes, entry.last_hit = 10, 1500, target.clock.now - 0.5
        target.clock.now += 3.0
        second = await driver.execute([stats(1), stats(2)])
        assert (second[0].stats.packets, second[0].stats.bytes) == (10, 1500)
        assert second[0].stats.lastused == pytest.approx(target.clock.now - 3.5)
        assert second[1].stats.packets == 0
        entry.packets, entry.bytes = 12, 1800
        third = await driver.execute([stats(1)])  # keyed read: one cookie of two
        assert (third[0].stats.packets, third[0].stats.bytes) == (2, 300)
        await driver.close()


@pytest.mark.parametrize("asked", [[3, 4, 42], [3, 4, 5, 6, 7, 42]], ids=["keyed", "wildcard"])
async def test_stats_of_a_vanished_entry_or_unknown_cookie_is_refused(asked: list[int]) -> None:
    async with running_target() as target:
        driver = target.driver()
        await driver.start()
        await driver.execute([replace(i, v4_rule(i)) for i in range(16)])
        target.table(4).delete(*key_of(v4_rule(3)))
        entry = target.table(4).get(*key_of(v4_rule(4)))
        entry.packets, entry.bytes = 3, 300
        results = await driver.execute([stats(c) for c in asked])
        assert results[0].refusal is Refusal.UNKNOWN_COOKIE
        assert (results[1].stats.packets, results[1].stats.bytes) == (3, 300)
        assert all(r.ok for r in results[2:-1])
        assert results[-1].refusal is Refusal.UNKNOWN_COOKIE
        assert driver.rule_of(3) is None and driver.occupancy(4) == 15
        await driver.close()


async def test_idle_notifications_are_reported_once_per_idle_period() -> None:
    async with running_target() as target:
        driver = target.driver(idle_timeout=1.0)
        reported: list[list[int]] = []
        driver.set_idle_callback(lambda cookies: reported.append(sorted(cookies)))
        await driver.start()
        await driver.execute([replace(1, v4_rule(1)), replace(2, v4_rule(2))])
        for sweeps in range(1, 4):  # BMv2 repeats every 2 s while the entries stay idle
            target.clock.now += 2.0
            target.server.sweep()
            await _until(lambda n=sweeps: driver.counters["idle_notifications"] >= n)
        assert reported == [[1, 2]]
        entry = target.table(4).get(*key_of(v4_rule(1)))
        entry.packets, entry.last_hit = 5, target.clock.now
        await driver.execute([stats(1)])  # activity ends the idle period
        target.clock.now += 2.0
        target.server.sweep()
        await _until(lambda: len(reported) == 2)
        assert reported == [[1, 2], [1]]
        await driver.close()


async def test_pipeline_is_pushed_only_when_its_cookie_differs_or_forced() -> None:
    async with running_target() as target:
        first = target.driver()
        await first.start()
        assert first.counters["pipeline_pushes"] == 1
        await first.close()
        again = target.driver()
        await again.start()
        assert again.counters["pipeline_pushes"] == 0
        await again.close()
        forced = target.driver(force_push=True)
        await forced.start()
        assert forced.counters["pipeline_pushes"] == 1
        await forced.close()


async def test_a_backup_controller_is_refused_unavailable() -> None:
    async with running_target() as target:
        primary = target.driver(election_id=10)
        await primary.start()
        backup = target.driver(election_id=5)
        await backup.start()
        assert primary.is_primary and not backup.is_primary
        result = (await backup.execute([replace(1, v4_rule(1))]))[0]
        assert result.refusal is Refusal.UNAVAILABLE
        await backup.close()
        await primary.close()


async def _until(condition, timeout: float = 2.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)
