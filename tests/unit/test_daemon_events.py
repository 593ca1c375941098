"""Monitor streams get the event types they asked for, and only those."""

from __future__ import annotations

import asyncio

import pytest

from controller.edges.daemon import SwitchSession
from tests.ndo.p4rt_support import pipeline
from tests.unit.test_daemon_flood import config

pytestmark = pytest.mark.asyncio


async def test_a_monitor_asking_for_some_types_gets_only_those() -> None:
    session = SwitchSession("r1", config("127.0.0.1:1"), pipeline())  # never started
    some: asyncio.Queue = asyncio.Queue()
    every: asyncio.Queue = asyncio.Queue()
    session.subscribe(some, frozenset({"HW_OFFLOAD"}))
    session.subscribe(every)
    session._publish({"type": "NEW"})
    session._publish({"type": "HW_OFFLOAD"})
    assert [some.get_nowait()["type"] for _ in range(some.qsize())] == ["HW_OFFLOAD"]
    assert [every.get_nowait()["type"] for _ in range(every.qsize())] == ["NEW", "HW_OFFLOAD"]
    session.unsubscribe(some)
    session._publish({"type": "NEW"})
    assert some.empty()


async def test_the_router_builds_only_the_types_some_monitor_wants() -> None:
    session = SwitchSession("r1", config("127.0.0.1:1"), pipeline())  # never started
    assert session.router.wants is not None
    assert not session.router.wants("NEW")  # nobody listens: nothing is described
    some: asyncio.Queue = asyncio.Queue()
    session.subscribe(some, frozenset({"HW_OFFLOAD"}))
    assert session.router.wants("HW_OFFLOAD") and not session.router.wants("NEW")
    every: asyncio.Queue = asyncio.Queue()
    session.subscribe(every)
    assert session.router.wants("NEW")
    session.unsubscribe(every)
    assert not session.router.wants("NEW")
