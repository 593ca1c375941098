"""Hardware capacity: each install on its own, retries on refresh, elephants first, idle
flows make room for waiting flows of their table."""

from __future__ import annotations

import pytest

from controller.netfilter.capacity import CapacityPolicy
from controller.netfilter.ct import ORIGINAL, Status
from ndo.api import Refusal
from tests.unit.ft_helpers import Rig, make_conn, packet_for


def _admit_many(rig: Rig, n: int) -> list:
    conns = [make_conn(conn_id=i, sport=3000 + i) for i in range(n)]
    for c in conns:
        assert rig.admit(c) is not None
    return conns


def test_refused_flow_stays_in_software_and_retries_on_its_refresh_at_most_once_a_second() -> None:
    """flow_offload_refresh → nf_flow_offload_add: a refused REPLACE is queued again on the
    flow's next deadline write (≤ 1/s), independently of every other flow."""
    rig = Rig(capacity=2)  # one flow = two directions
    first, second = _admit_many(rig, 2)
    rig.drain()
    assert first.status & Status.HW_OFFLOAD and not second.status & Status.HW_OFFLOAD
    assert rig.queue.policy.counters["refused_no_space"] == 1
    rig.tick(2)
    res = rig.fast.forward(packet_for(second, ORIGINAL), 1, rig.now)
    assert res.verdict == "forward" and len(rig.queue) == 1  # the retry
    rig.drain()  # refused again: the table is still full
    rig.tick(0.5)
    rig.fast.forward(packet_for(second, ORIGINAL), 1, rig.now)
    assert len(rig.queue) == 0  # not within the same second
    assert rig.queue.policy.counters["refused_no_space"] == 2


def test_refusal_in_one_table_does_not_stop_installs_in_another() -> None:
    """No table-wide "full": an IPv6 NO_SPACE leaves the (empty) IPv4 table usable."""
    rig = Rig()
    rig.hw.fail = lambda cmd: (
        Refusal.NO_SPACE if cmd.rule is not None and cmd.rule.match.family == 6 else None
    )
    v6 = make_conn(family=6, conn_id=1)
    v4 = make_conn(conn_id=2, sport=4000)
    assert rig.admit(v6) is not None
    rig.drain()
    assert not v6.status & Status.HW_OFFLOAD and rig.queue.policy.counters["refused_no_space"]
    assert rig.admit(v4) is not None
    rig.drain()
    assert v4.status & Status.HW_OFFLOAD


def test_freed_slot_lets_waiting_flow_in() -> None:
    rig = Rig(capacity=2)
    _, second = _admit_many(rig, 2)
    rig.drain()
    rig.ft.teardown(rig.ft.flows()[0], rig.now, "test")
    rig.gc()
    rig.drain()  # DESTROY of the first flow frees two slots
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
    flow = next(f for f in rig.ft.flows() if f.conn is first)
    rig.tick(2)
    rig.ft.refresh(flow, rig.now)
    assert len(rig.queue) == 1 and flow.id not in rig.queue.policy.waiting[4]
    rig.drain()
    assert first.status & Status.HW_OFFLOAD and len(rig.hw.rules) == 2
