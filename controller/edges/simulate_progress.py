"""The progress bar of ``p4ft simulate`` (tqdm, on stderr, only on a terminal).

The bar runs on the bytes read from the input captures (their sizes are known, so tqdm gives an
honest ETA whatever the frame sizes); the packets replayed, their rate and the virtual time
reached are shown beside it. It is updated every :data:`EVERY` packets, not per packet.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from controller.edges.capture import Capture
from controller.router import Event

EVERY = 4096


class Progress:
    """An observer of the replay that moves a tqdm bar (disabled when stderr is no TTY)."""

    def __init__(self, captures: Sequence[Capture], desc: str = "simulate") -> None:
        from tqdm import tqdm

        self.captures = captures
        self.bar = tqdm(
            total=sum(c.size for c in captures),
            unit="B",
            unit_scale=True,
            desc=desc,
            file=sys.stderr,
            disable=None,  # tqdm: off when the output is not a terminal
            dynamic_ncols=True,
        )
        self.count = 0
        self.start: float | None = None
        self._read = 0
        self._began = time.monotonic()

    def packet(
        self, port: int, when: float, frame: bytes, path: str, reason: str, events: list[Event]
    ) -> None:
        self.count += 1
        if self.start is None:
            self.start = when
        if not self.count % EVERY:
            self.update(when)

    def event(self, now: float, event: Event) -> None:
        return None

    def tick(self, now: float, occupancy: dict[str, int]) -> None:
        return None

    def update(self, when: float) -> None:
        read = sum(c.position for c in self.captures)
        rate = self.count / max(1e-9, time.monotonic() - self._began)
        self.bar.set_postfix_str(
            f"{self.count:,} pkts ({rate:,.0f}/s), virtual {when - (self.start or when):.1f} s",
            refresh=False,
        )
        self.bar.update(read - self._read)
        self._read = read

    def close(self, when: float | None) -> None:
        if when is not None:
            self.update(when)
        self.bar.close()
