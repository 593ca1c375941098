"""Start-up of the daemon while a switch is still being waited for: SIGINT/SIGTERM (the stop
event) end it at once instead of after the connect's 30 s of retries."""

from __future__ import annotations

import asyncio
from pathlib import Path

from controller.edges.daemon import Daemon


class NeverConnects:
    name = "r1"

    def __init__(self) -> None:
        self.cancelled = self.stopped = False

    async def start(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    async def stop(self) -> None:
        self.stopped = True


async def test_stop_during_start_up_cancels_the_wait_and_stops_cleanly(tmp_path: Path) -> None:
    session, stop = NeverConnects(), asyncio.Event()
    daemon = Daemon([session], tmp_path / "control.sock")
    run = asyncio.create_task(daemon.run(stop))
    while not daemon.control.path.exists():
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(run, 5)  # returns, no exception
    assert session.cancelled and session.stopped and not daemon.ready
    assert not daemon.control.path.exists()
