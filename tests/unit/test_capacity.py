"""Hardware capacity policy: full tables, elephants first, idle flows make room."""

from __future__ import annotations

import pytest

from controller.capacity import CapacityPolicy
from controller.ct import ORIGINAL, Status
from tests.unit.ft_helpers import Rig, make_conn, packet_for


def _admit_many(rig: Rig, n: int) -> list:
    conns = [make_conn(conn_id=i, sport=3000 + i) for i in range(n)]
    for c in conns:
        assert rig.admit(c) is not None
    return conns


def test_no_space_keeps_flow_in_software_and_stops_hammering() -> None:
    rig = Rig(capacity=2)  # one flow = two directions
    first, second = _admit_many(rig, 2)
    rig.drain()
    assert first.status & Status.HW_OFFLOAD and not second.status & Status.HW_OFFLOAD
    assert rig.queue.policy.full and rig.queue.policy.counters["refused_no_space"] == 1
    rig.tick(2)  # software traffic of the waiting flow: refresh would retry REPLACE...
    res = rig.fast.forward(packet_for(second, ORIGINAL), 1, rig.now)
    assert res.verdict == "forward"
    assert len(rig.queue) == 0  # ...but the policy holds it back while the table is full
    assert rig.queue.policy.counters["deferred_full"] == 1


def test_freed_slot_lets_waiting_flow_in() -> None:
    rig = Rig(capacity=2)
    _, second = _admit_many(rig, 2)
    rig.drain()
    rig.ft.teardown(rig.ft.flows()[0], rig.now, "test")
    rig.gc()
    rig.drain()  # DESTROY of the first flow frees two slots
    assert not rig.queue.policy.full
    rig.tick(2)
    rig.fast.forward(packet_for(second, ORIGINAL), 1, rig.now)
    rig.drain()
    assert second.status & Status.HW_OFFLOAD


def test_idle_hardware_flow_is_evicted_only_when_someone_waits() -> None:
    rig = Rig(capacity=2)
    (first,) = _admit_many(rig, 1)
    rig.drain()
    rig.tick(10)
    rig.hw.report_idle(5.0)
    assert len(rig.queue) == 0 and rig.queue.policy.counters["idle_kept"] == 1
    second = make_conn(conn_id=7, sport=7)
    rig.admit(second)
    rig.drain()  # refused: full
    rig.tick(10)
    rig.hw.report_idle(5.0)
    rig.drain()  # the idle first flow leaves the hardware, stays in software
    assert not first.status & Status.HW_OFFLOAD and first.status & Status.OFFLOAD
    assert len(rig.ft) == 2 and rig.event_types().count("DESTROY") == 1
    rig.tick(2)
    rig.fast.forward(packet_for(second, ORIGINAL), 1, rig.now)
    rig.drain()
    assert second.status & Status.HW_OFFLOAD


def test_elephants_first_after_n_packets() -> None:
    rig = Rig(policy=CapacityPolicy(min_packets=3))
    (conn,) = _admit_many(rig, 1)
    assert len(rig.queue) == 0 and rig.queue.policy.counters["deferred_small"] == 1
    for _ in range(3):
        rig.tick(1.5)
        rig.fast.forward(packet_for(conn, ORIGINAL), 1, rig.now)
    rig.drain()
    assert conn.status & Status.HW_OFFLOAD


def test_elephants_first_after_b_bytes() -> None:
    policy = CapacityPolicy(min_bytes=100)
    rig = Rig(policy=policy)
    (conn,) = _admit_many(rig, 1)
    rig.tick(1.5)
    rig.fast.forward(packet_for(conn, ORIGINAL, payload=b"x" * 200), 1, rig.now)
    rig.drain()
    assert conn.status & Status.HW_OFFLOAD


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError):
        CapacityPolicy(min_packets=-1)


def test_installed_flow_is_not_held_back_by_a_full_table() -> None:
    rig = Rig(capacity=2)
    first, _ = _admit_many(rig, 2)
    rig.drain()
    assert rig.queue.policy.full
    flow = next(f for f in rig.ft.flows() if f.conn is first)
    rig.tick(2)
    rig.ft.refresh(flow, rig.now)
    assert len(rig.queue) == 1 and flow.id not in rig.queue.policy.waiting
    rig.drain()
    assert first.status & Status.HW_OFFLOAD and len(rig.hw.rules) == 2
