"""The daemon says when it is ready, and only once everything it serves is up: a client that
waits for ``ping``'s ``ready`` finds the switches connected and the metrics endpoint listening;
a ``monitor`` client is subscribed once ``control.stream`` returns."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from controller.edges import control
from controller.edges.daemon import Daemon


class SlowSession:
    """A switch session whose start (connect, push, reconcile) waits for ``connected``."""

    name = "s1"

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.subscribers: set[asyncio.Queue] = set()

    async def start(self) -> None:
        await self.connected.wait()

    async def stop(self) -> None:
        self.publish({})

    def subscribe(self, queue: asyncio.Queue, types: frozenset[str] | None = None) -> None:
        self.subscribers.add(queue)

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self.subscribers.discard(queue)

    def publish(self, event: dict[str, Any]) -> None:
        for queue in self.subscribers:
            queue.put_nowait(event)

    def snapshot(self) -> dict[str, Any]:
        return {"stats": {"connected": self.connected.is_set()}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _ping(path: Path) -> dict[str, Any]:
    return await asyncio.to_thread(control.request, "ping", path)


async def test_ready_only_after_the_switches_connect_and_metrics_listen(tmp_path: Path) -> None:
    session, sock, port = SlowSession(), tmp_path / "control.sock", _free_port()
    stop = asyncio.Event()
    daemon = asyncio.create_task(Daemon([session], sock, ("127.0.0.1", port)).run(stop))
    try:
        while not sock.exists():
            await asyncio.sleep(0.01)
        assert await _ping(sock) == {"switches": ["s1"], "ready": False}
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        session.connected.set()
        while not (await _ping(sock))["ready"]:
            await asyncio.sleep(0.01)
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
    finally:
        session.connected.set()
        stop.set()
        await daemon


async def test_a_monitor_misses_no_event_published_once_it_is_accepted(tmp_path: Path) -> None:
    session, sock = SlowSession(), tmp_path / "control.sock"
    session.connected.set()
    stop = asyncio.Event()
    daemon = asyncio.create_task(Daemon([session], sock).run(stop))
    try:
        await asyncio.to_thread(control.wait_ready, sock, 30, lambda: not daemon.done())
        events = await asyncio.to_thread(control.stream, "monitor", sock)
        session.publish({"type": "NEW", "n": 1})  # right after the answer: must not be lost
        first = await asyncio.wait_for(asyncio.to_thread(next, events, None), 5)
        assert first == {"type": "NEW", "n": 1}
    finally:
        stop.set()
        await daemon
    assert not session.subscribers  # the stream ended with the daemon and unsubscribed


def test_waiting_for_a_controller_that_exits_says_so(tmp_path: Path) -> None:
    with pytest.raises(control.ControlError, match="exited before it was ready"):
        control.wait_ready(tmp_path / "none.sock", 5, alive=lambda: False)
