"""P4RuntimeDriver's session: reconcile, packet I/O, reconnect and life without a connection."""

from __future__ import annotations

import asyncio

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

from ndo.api import Command, FlowCommand, PacketIn, PuntReason, Refusal
from ndo.p4runtime.client import Backoff
from tests.ndo.p4rt_support import running_target, v4_rule, v6_rule

pytestmark = pytest.mark.asyncio

FRAME = bytes.fromhex("000000000202" "00000000fe02" "0800") + bytes(46)


def flow_frame(n: int, flags: str = "A") -> bytes:
    """A TCP segment of v4_rule(n)'s flow as it arrives on port 1."""
    match = v4_rule(n).match
    return bytes(Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:fe")
                 / IP(src=".".join(map(str, match.src)), dst="192.0.2.1", ttl=64)
                 / TCP(sport=match.sport, dport=80, flags=flags) / (b"x" * 20))
FAST = Backoff(initial=0.01, maximum=0.05)


def replace(cookie: int, rule) -> FlowCommand:  # type: ignore[no-untyped-def]
    return FlowCommand(Command.REPLACE, cookie, rule)


def key_of(rule) -> tuple:  # type: ignore[no-untyped-def]
    m = rule.match
    return ((m.ingress_port, int.from_bytes(m.src, "big"), int.from_bytes(m.dst, "big"), m.proto,
             m.sport, m.dport), 0)


async def until(condition, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_reconcile_adopts_fixes_installs_and_deletes_orphans() -> None:
    async with running_target() as target:
        previous = target.driver()
        await previous.start()
        await previous.execute([replace(1, v4_rule(1)), replace(2, v4_rule(2)),
                                replace(3, v4_rule(3)), replace(4, v6_rule(4))])
        entry = target.table(4).get(*key_of(v4_rule(1)))
        entry.packets, entry.bytes = 7, 700
        await previous.close()

        driver = target.driver()
        intent = {1: v4_rule(1), 2: v4_rule(2, egress_port=5), 5: v4_rule(5), 6: v6_rule(6)}
        report = await driver.start(intent)
        assert report.adopted == (1,)
        assert set(report.installed) == {2, 5, 6}
        assert {m.src for m in report.deleted} == {v4_rule(3).match.src, v6_rule(4).match.src}
        assert report.failed == ()
        assert len(target.table(4)) == 3 and len(target.table(6)) == 1
        assert target.table(4).get(*key_of(v4_rule(2))).params[0] == 5
        assert driver.occupancy(4) == 3 and driver.occupancy(6) == 1
        entry.packets, entry.bytes = 9, 900  # adopted counters count from the reconcile on
        stats = await driver.execute([FlowCommand(Command.STATS, 1)])
        assert (stats[0].stats.packets, stats[0].stats.bytes) == (2, 200)
        await driver.close()


async def test_start_without_intent_clears_what_a_previous_run_left() -> None:
    async with running_target() as target:
        previous = target.driver()
        await previous.start()
        await previous.execute([replace(i, v4_rule(i)) for i in range(5)])
        await previous.close()
        driver = target.driver()
        report = await driver.start()
        assert len(report.deleted) == 5 and len(target.table(4)) == 0
        await driver.close()


async def test_punted_frames_arrive_with_port_and_reason() -> None:
    async with running_target() as target:
        driver = target.driver()
        await driver.start()
        packets = driver.packets()
        miss, fin = flow_frame(1), flow_frame(2, flags="FA")
        await driver.execute([replace(2, v4_rule(2, port=3))])  # FIN/RST punt even on a hit
        target.ports[1].inject(miss)
        target.ports[3].inject(fin)
        target.ports[2].inject(bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="10.0.0.1")))
        assert await anext(packets) == PacketIn(miss, 1, PuntReason.MISS)
        assert await anext(packets) == PacketIn(fin, 3, PuntReason.TCP_FIN_RST)
        assert (await anext(packets)).reason is PuntReason.NON_IP
        await driver.close()


async def test_unknown_reasons_are_delivered_and_short_frames_counted() -> None:
    async with running_target() as target:
        driver = target.driver()
        await driver.start()
        packets = driver.packets()
        target.server.send_packet_in(b"\x00\x01\x01" + FRAME[:10])
        target.server.send_packet_in(b"\x00\x02\x63" + FRAME)
        assert await anext(packets) == PacketIn(FRAME, 2, 0x63)
        assert driver.counters["packet_in_short"] == 1
        await driver.close()


async def test_a_full_queue_drops_its_oldest_frames_counted_per_reason() -> None:
    async with running_target() as target:
        driver = target.driver(packet_queue=2)
        await driver.start()
        for n in range(5):
            target.ports[1].inject(flow_frame(n))
        await until(lambda: driver.counters["packet_in"] == 5)
        assert driver.counters["packet_in_overflow"] == 3
        assert driver.punts.stats() == {"limit": 2, "depth": 2, "max_depth": 2,
                                        "drops": {"MISS": 3}}
        packets = driver.packets()
        assert [(await anext(packets)).frame for _ in range(2)] == [flow_frame(3), flow_frame(4)]
        await driver.close()


async def test_send_packet_leaves_the_named_port_unchanged() -> None:
    async with running_target() as target:
        driver = target.driver()
        await driver.start()
        frame = flow_frame(1)
        assert driver.send_packet(frame, 2)
        assert await asyncio.wait_for(target.ports[2].sent.get(), 2.0) == frame
        assert not driver.send_packet(frame[:6], 2)
        assert not driver.send_packet(frame, 1 << 16)
        assert driver.counters["packet_out_short"] == 1
        assert driver.counters["packet_out_bad_port"] == 1
        await driver.close()


async def test_offloaded_flow_is_forwarded_by_the_switch_and_counted() -> None:
    async with running_target() as target:
        driver = target.driver()
        await driver.start()
        rule = v4_rule(1, nat_src=bytes([203, 0, 113, 7]), nat_sport=40000)
        assert (await driver.execute([replace(1, rule)]))[0].ok
        frame = flow_frame(1)
        target.ports[1].inject(frame)
        out = Ether(await asyncio.wait_for(target.ports[2].sent.get(), 2.0))
        assert (out.src, out.dst) == ("02:00:00:00:02:fe", "02:00:00:00:02:02")
        assert (out[IP].src, out[IP].ttl, out[TCP].sport) == ("203.0.113.7", 63, 40000)
        target.clock.now += 1.0
        stats = (await driver.execute([FlowCommand(Command.STATS, 1)]))[0].stats
        assert (stats.packets, stats.bytes) == (1, len(frame))
        assert stats.lastused == pytest.approx(target.clock.now - 1.0)
        await driver.close()


async def test_packets_iteration_ends_when_the_driver_closes() -> None:
    async with running_target() as target:
        driver = target.driver()
        await driver.start()
        received = asyncio.create_task(_collect(driver.packets()))
        await driver.close()
        assert await asyncio.wait_for(received, 1.0) == []


async def _collect(packets) -> list:  # type: ignore[no-untyped-def]
    return [p async for p in packets]


async def test_reconnect_restores_pipeline_and_flows_on_a_restarted_switch() -> None:
    async with running_target() as target:
        port = int(target.address.rsplit(":", 1)[1])
        driver = target.driver(backoff=FAST)
        await driver.start()
        await driver.execute([replace(1, v4_rule(1)), replace(2, v6_rule(2))])
        await target.server.stop(0)
    await until(lambda: not driver.connected)
    down = await driver.execute([replace(3, v4_rule(3)), FlowCommand(Command.DESTROY, 2),
                                 FlowCommand(Command.STATS, 1)])
    assert down[0].refusal is Refusal.UNAVAILABLE
    assert down[1].ok and driver.rule_of(2) is None  # the reconcile removes it
    assert down[2].refusal is Refusal.UNAVAILABLE
    async with running_target(port=port) as restarted:  # a fresh switch: no pipeline, no flows
        await until(lambda: driver.counters["reconciles"] == 2)
        assert driver.connected and driver.counters["reconnects"] == 1
        assert driver.counters["pipeline_pushes"] == 2
        assert driver.counters["reinstalled"] == 1 and driver.counters["disconnects"] == 1
        assert len(restarted.table(4)) == 1 and len(restarted.table(6)) == 0
        assert restarted.table(4).get(*key_of(v4_rule(1))) is not None
        await driver.close()


async def test_first_connection_failure_is_a_clear_error() -> None:
    async with running_target() as target:
        pass  # the port is free again: nobody listens there
    driver = target.driver()
    with pytest.raises(ConnectionError, match=target.address):
        await driver.start()
    await driver.close()


async def test_a_failing_idle_callback_does_not_end_the_session() -> None:
    async with running_target() as target:
        driver = target.driver(idle_timeout=1.0)

        def broken(cookies: object) -> None:
            raise RuntimeError("controller bug")

        driver.set_idle_callback(broken)
        await driver.start()
        await driver.execute([replace(1, v4_rule(1))])
        target.clock.now += 2.0
        target.server.sweep()
        await until(lambda: driver.counters["idle_notifications"] == 1)
        target.ports[1].inject(flow_frame(5))
        assert (await anext(driver.packets())).ingress_port == 1
        assert driver.connected
        await driver.close()


async def test_a_controller_overtaken_by_another_reconciles_when_primary_again() -> None:
    async with running_target() as target:
        driver = target.driver(election_id=5)
        await driver.start()
        await driver.execute([replace(1, v4_rule(1)), replace(2, v4_rule(2))])
        other = target.driver(election_id=9)  # e.g. p4ft shell at a higher election id
        await other.start({1: v4_rule(1), 3: v4_rule(3)})  # deletes 2, adds 3
        await until(lambda: driver.counters["demotions"] == 1)
        refused = await driver.execute([replace(4, v4_rule(4))])
        assert refused[0].refusal is Refusal.UNAVAILABLE
        await other.close()
        await until(lambda: driver.counters["reconciles"] == 2)
        assert driver.is_primary and driver.counters["promotions"] == 1
        keys = {e.key[1] & 0xFF for e in target.table(4).entries()}
        assert keys == {1, 2}  # ours back, the other's gone
        await driver.close()
