"""The bounded packet-in queue between the P4Runtime stream and the controller's loop.

A punt flood must cost the newest work, not memory or the age of what is served: when the
queue is full the *oldest* frame goes (it is the one whose sender has waited longest and is most
likely to retransmit anyway), counted per punt reason, and the queue never grows past its limit.
Each frame keeps the time it arrived, so the consumer can tell how long it waited.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from typing import Any

from ndo.api import PacketIn, PuntReason

Queued = tuple[PacketIn, float]  # the frame and time.perf_counter() when it arrived


def reason_name(reason: int) -> str:
    return reason.name if isinstance(reason, PuntReason) else str(reason)


class PuntQueue:
    """A FIFO of at most ``limit`` punted frames; ``put`` never blocks, ``batch`` waits."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the packet-in queue needs room for one frame")
        self.limit = limit
        self.dropped: Counter[str] = Counter()  # per punt reason
        self.max_depth = 0
        self._items: deque[Queued] = deque()
        self._ready = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, packet: PacketIn) -> bool:
        """Queue ``packet``; False when an older frame had to make room (it is counted)."""
        items = self._items
        room = len(items) < self.limit
        if not room:
            old, _ = items.popleft()
            self.dropped[reason_name(old.reason)] += 1
        items.append((packet, time.perf_counter()))
        self.max_depth = max(self.max_depth, len(items))
        self._ready.set()
        return room

    def close(self) -> None:
        """Wake the consumer: after what is queued, ``batch`` returns []."""
        self._closed = True
        self._ready.set()

    async def batch(self, limit: int) -> list[Queued]:
        """Up to ``limit`` frames, oldest first, waiting for one; [] once closed and drained."""
        items = self._items
        while not items:
            if self._closed:
                return []
            self._ready.clear()
            await self._ready.wait()
        count = min(limit, len(items))
        return [items.popleft() for _ in range(count)]

    def stats(self) -> dict[str, Any]:
        return {"limit": self.limit, "depth": len(self._items), "max_depth": self.max_depth,
                "drops": dict(self.dropped)}
