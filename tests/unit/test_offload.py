"""The offload work queue: batching, cookies, completion bookkeeping, the async pump."""

from __future__ import annotations

from collections.abc import Sequence

from controller.netfilter.ct import ORIGINAL, REPLY, Status
from controller.netfilter.flowtable import HW_DEAD, HW_PENDING
from controller.netfilter.offload import cookie_of
from ndo.api import Command, FlowCommand, FlowDriver, FlowResult
from tests.unit.ft_helpers import Rig, make_conn


def _flows(rig: Rig, n: int) -> list:
    out = []
    for i in range(n):
        flow = rig.admit(make_conn(conn_id=i, sport=5000 + i))
        assert flow is not None
        out.append(flow)
    return out


def test_cookies_are_stable_and_unique_per_direction() -> None:
    rig = Rig()
    a, b = _flows(rig, 2)
    cookies = {cookie_of(f, d) for f in (a, b) for d in (ORIGINAL, REPLY)}
    assert len(cookies) == 4
    assert cookie_of(a, REPLY) >> 1 == a.id and cookie_of(a, REPLY) & 1 == REPLY


def test_batches_never_split_a_flows_commands() -> None:
    rig = Rig()
    _flows(rig, 3)
    first = rig.queue.take_batch(3)
    assert len(first) == 2  # the second flow's pair would not fit
    assert len(rig.queue.take_batch(100)) == 4
    assert rig.queue.take_batch(100) == []
    assert rig.queue.in_flight == 6


def test_completion_waits_for_every_direction() -> None:
    rig = Rig()
    (flow,) = _flows(rig, 1)
    batch = rig.queue.take_batch(10)
    results = rig.hw.execute_now(batch)
    rig.queue.complete(results[:1])
    assert flow.flags & HW_PENDING and not flow.conn.status & Status.HW_OFFLOAD
    rig.queue.complete(results[1:])
    assert not flow.flags & HW_PENDING and flow.hw_dirs == 0b11


def test_unexpected_results_are_counted_not_fatal() -> None:
    rig = Rig()
    rig.queue.complete([FlowResult(999, Command.STATS)])
    assert rig.queue.counters["unexpected_result"] == 1


def test_destroy_failure_still_marks_dead() -> None:
    rig = Rig()
    (flow,) = _flows(rig, 1)
    rig.drain()
    rig.hw.rules.clear()
    rig.hw._by_match.clear()
    rig.ft.teardown(flow, rig.now, "test")
    rig.gc()
    rig.drain()
    assert flow.flags & HW_DEAD and rig.queue.counters["destroy_failed"] == 1
    rig.gc()
    assert len(rig.ft) == 0


class _Silent(FlowDriver):
    """Answers only the first command of each batch."""

    async def execute(self, batch: Sequence[FlowCommand]) -> list[FlowResult]:
        return [FlowResult(batch[0].cookie, batch[0].command)]


async def test_pump_drains_through_an_async_driver() -> None:
    rig = Rig()
    _flows(rig, 3)
    sent = await rig.queue.pump(rig.hw, max_n=2)
    assert sent == 6 and len(rig.hw.rules) == 6 and rig.hw.batches == 3
    assert rig.queue.installed() == 3


async def test_pump_completes_unanswered_commands_as_errors() -> None:
    rig = Rig()
    (flow,) = _flows(rig, 1)
    await rig.queue.pump(_Silent())
    assert not flow.flags & HW_PENDING  # the flow is not stuck waiting forever
    assert rig.queue.counters["driver_short_answer"] == 1
    assert rig.queue.counters["replace_failed"] == 1


class _Broken(FlowDriver):
    async def execute(self, batch: Sequence[FlowCommand]) -> list[FlowResult]:
        raise ConnectionError("switch went away")


async def test_pump_survives_a_driver_that_raises() -> None:
    rig = Rig()
    (flow,) = _flows(rig, 1)
    await rig.queue.pump(_Broken())
    assert not flow.flags & HW_PENDING and not flow.conn.status & Status.HW_OFFLOAD
    assert rig.queue.counters["driver_error"] == 1
    rig.tick(2)
    rig.ft.refresh(flow, rig.now)  # and it is retried like any refused REPLACE
    await rig.queue.pump(rig.hw)
    assert flow.conn.status & Status.HW_OFFLOAD
