"""Monitor streams get the event types they asked for, and only those."""

from __future__ import annotations

import asyncio

import pytest

from controller.daemon import SwitchSession
from tests.ndo.p4rt_support import pipeline
from tests.unit.test_daemon_flood import config

pytestmark = pytest.mark.asyncio


async def test_a_monitor_asking_for_some_types_gets_only_those() -> None:
    session = SwitchSession("r1", config("127.0.0.1:1"), pipeline())  # never started
    some, every = session.events(frozenset({"HW_OFFLOAD"})), session.events()
    got_some, got_every = asyncio.create_task(anext(some)), asyncio.create_task(anext(every))
    await asyncio.sleep(0)  # both subscribed
    session._publish({"type": "NEW"})
    session._publish({"type": "HW_OFFLOAD"})
    assert (await got_some)["type"] == "HW_OFFLOAD"
    assert (await got_every)["type"] == "NEW"
    await some.aclose()
    await every.aclose()
