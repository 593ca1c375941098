"""The event loop the long-running processes (the controller, the softswitch) run on: uvloop's.

Every punt is two P4Runtime stream messages in each of them, and grpc.aio completes each one
through the event loop (its poller thread wakes the loop, a future resolves, a task steps). On
uvloop that costs 15-25 % less CPU per message than on asyncio's own loop
(``bench/bench_grpc_stream.py --loop``, interleaved runs on a loaded 2-core machine: 175-190
against 200-225 µs per punt across both processes), and the softswitch's port readers and the
controller's other tasks cost less too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on a uvloop event loop."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def rearm_reader(loop: asyncio.AbstractEventLoop, fd: int, callback: Callable[[], None]) -> None:
    """Watch ``fd`` afresh after it reported an error: uvloop (libuv's ``uv_poll``) stops
    watching a socket that signalled POLLERR (a device that went down, netlink's ENOBUFS), so
    its reader would never run again although the socket works on."""
    loop.remove_reader(fd)
    loop.add_reader(fd, callback)
