"""PuntQueue: bounded, oldest first out when full, counted per reason; batches wait for one."""

from __future__ import annotations

import asyncio

import pytest

from ndo.api import PacketIn, PuntReason
from ndo.p4runtime.punt_queue import PuntQueue


def frame(n: int, reason: int = PuntReason.MISS) -> PacketIn:
    return PacketIn(n.to_bytes(2, "big") * 7, 1, reason)


@pytest.mark.asyncio
async def test_a_full_queue_drops_its_oldest_frame_counted_per_reason() -> None:
    queue = PuntQueue(3)
    assert all(queue.put(frame(n)) for n in range(3))
    assert not queue.put(frame(3))
    assert not queue.put(frame(4))
    assert queue.stats() == {"limit": 3, "depth": 3, "max_depth": 3, "drops": {"MISS": 2}}
    assert [p.frame for p, _ in await queue.batch(5)] == [frame(n).frame for n in (2, 3, 4)]


@pytest.mark.asyncio
async def test_batches_come_oldest_first_up_to_the_limit_and_end_when_closed() -> None:
    queue = PuntQueue(10)
    waiting = asyncio.create_task(queue.batch(2))
    await asyncio.sleep(0)
    assert not waiting.done()  # nothing queued yet
    for n in range(3):
        queue.put(frame(n))
    assert [p.frame for p, _ in await waiting] == [frame(0).frame, frame(1).frame]
    queue.close()
    assert [p.frame for p, _ in await queue.batch(5)] == [frame(2).frame]
    assert await queue.batch(5) == []


def test_a_queue_without_room_is_refused() -> None:
    with pytest.raises(ValueError):
        PuntQueue(0)


def test_a_flood_of_one_reason_pays_for_itself() -> None:
    queue = PuntQueue(4)
    queue.put(frame(0, PuntReason.MISS))  # a handshake's SYN, then a flood of another reason
    for n in range(1, 10):
        queue.put(frame(n, PuntReason.NOT_TCP_UDP))
    assert queue.stats()["drops"] == {"NOT_TCP_UDP": 6}


@pytest.mark.asyncio
async def test_reasons_are_served_in_arrival_order() -> None:
    queue = PuntQueue(10)
    reasons = [PuntReason.MISS, PuntReason.TTL, PuntReason.MISS, PuntReason.TCP_FIN_RST]
    for n, reason in enumerate(reasons):
        queue.put(frame(n, reason))
    assert [p.frame for p, _ in await queue.batch(10)] == [frame(n).frame for n in range(4)]
    assert len(queue) == 0
