"""The bounded packet-in queue between the P4Runtime stream and the controller's loop.

A punt flood must cost its own frames, not memory, the age of what is served, or the other
punt reasons' share. When the queue is full the frame that goes is the *oldest* of the reason
holding the most frames (a flood of one reason cannot push a handshake's MISS out), counted
per reason; the queue never holds more than its limit. Frames are served in arrival order
across reasons, each with the time it arrived, so the consumer can tell how long it waited.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, deque
from typing import Any

from ndo.api import PacketIn, PuntReason

Queued = tuple[PacketIn, float]  # the frame and time.perf_counter() when it arrived
_Item = tuple[int, PacketIn, float]  # arrival sequence number first


def reason_name(reason: int) -> str:
    return reason.name if isinstance(reason, PuntReason) else str(reason)


class PuntQueue:
    """At most ``limit`` punted frames in per-reason FIFOs; ``put`` never blocks, ``batch``
    waits for one."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the packet-in queue needs room for one frame")
        self.limit = limit
        self.dropped: Counter[str] = Counter()  # per punt reason
        self.max_depth = 0
        self._by_reason: dict[int, deque[_Item]] = {}
        self._depth = 0
        self._seq = itertools.count()
        self._ready = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return self._depth

    def put(self, packet: PacketIn) -> bool:
        """Queue ``packet``; False when an older frame had to make room (it is counted)."""
        room = self._depth < self.limit
        if room:
            self._depth += 1
            self.max_depth = max(self.max_depth, self._depth)
        else:
            largest = max(self._by_reason.values(), key=len)
            self.dropped[reason_name(largest.popleft()[1].reason)] += 1
        fifo = self._by_reason.get(packet.reason)
        if fifo is None:
            fifo = self._by_reason[packet.reason] = deque()
        fifo.append((next(self._seq), packet, time.perf_counter()))
        self._ready.set()
        return room

    def close(self) -> None:
        """Wake the consumer: after what is queued, ``batch`` returns []."""
        self._closed = True
        self._ready.set()

    async def batch(self, limit: int) -> list[Queued]:
        """Up to ``limit`` frames in arrival order, waiting for one; [] once closed and drained."""
        while not self._depth:
            if self._closed:
                return []
            self._ready.clear()
            await self._ready.wait()
        fifos = [f for f in self._by_reason.values() if f]
        out: list[Queued] = []
        for _ in range(min(limit, self._depth)):
            fifo = fifos[0] if len(fifos) == 1 else min((f for f in fifos if f),
                                                        key=lambda f: f[0][0])
            _, packet, arrived = fifo.popleft()
            out.append((packet, arrived))
        self._depth -= len(out)
        return out

    def stats(self) -> dict[str, Any]:
        return {"limit": self.limit, "depth": self._depth, "max_depth": self.max_depth,
                "drops": dict(self.dropped)}
