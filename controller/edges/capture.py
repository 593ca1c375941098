"""Input captures of ``p4ft simulate``: pcap or pcapng by magic, read lazily, in time order.

A capture of an hour holds tens of millions of frames: nothing here keeps more than a bounded
window of them. :class:`Capture` opens the file and checks its header at once (a bad file fails
before a replay starts), then yields ``(time, frame)`` as it reads; :attr:`Capture.position`
says how far it got (progress and ETA). Captures are written by several queues and are often
slightly out of time order: :class:`Reorder` restores the order within a window of
:data:`REORDER_WINDOW` frames and counts the frames that came later than that (they are replayed
where they are, at the current virtual time). A broken record ends a capture after the frames
before it.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from controller.edges.pcap import PcapError, pcap_records
from controller.edges.pcapng import SHB, pcapng_records

Frame = tuple[float, bytes]
REORDER_WINDOW = 1024


class Capture:
    """One input file, pcap or pcapng, iterated once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.size = os.path.getsize(self.path)
        self._fh = open(self.path, "rb")  # noqa: SIM115 - closed when the records end
        try:
            magic = self._fh.read(4)
            self._fh.seek(0)
            reader = pcapng_records if magic == SHB else pcap_records
            self._records = reader(self._fh, str(self.path))
        except BaseException:
            self._fh.close()
            raise

    @property
    def position(self) -> int:
        """Bytes of the file read so far."""
        return self.size if self._fh.closed else self._fh.tell()

    def __iter__(self) -> Iterator[Frame]:
        try:
            yield from self._records
        finally:
            self._fh.close()

    def close(self) -> None:
        self._fh.close()


def open_captures(paths: Iterable[str | Path]) -> list[Capture]:
    """Open every file now (bad headers fail before anything runs); closes them on an error."""
    out: list[Capture] = []
    try:
        for path in paths:
            out.append(Capture(path))
    except (PcapError, OSError):
        for capture in out:
            capture.close()
        raise
    return out


class Reorder:
    """Time order within a window of frames; :attr:`late` counts frames beyond the window."""

    def __init__(
        self, frames: Iterable[Frame], window: int = REORDER_WINDOW, *, first_seq: int = 0
    ) -> None:
        self.frames = frames
        self.window = window
        self.first_seq = first_seq
        self.late = 0

    def __iter__(self) -> Iterator[tuple[float, int, bytes]]:
        """``(time, sequence, frame)``: the sequence (from ``first_seq`` on, in file order)
        keeps equal times in file order, and makes the tuples comparable without comparing
        frames; inputs numbered from far apart first sequences merge in input order on ties."""
        heap: list[tuple[float, int, bytes]] = []
        last = float("-inf")
        window = self.window
        pushpop = heapq.heappushpop
        error: PcapError | None = None
        try:
            for seq, (when, frame) in enumerate(self.frames, self.first_seq):
                if len(heap) < window:
                    heapq.heappush(heap, (when, seq, frame))
                    continue
                item = pushpop(heap, (when, seq, frame))
                if item[0] < last:
                    self.late += 1
                else:
                    last = item[0]
                yield item
        except PcapError as exc:  # a broken record: replay what came before it, then fail
            error = exc
        while heap:
            item = heapq.heappop(heap)
            if item[0] < last:
                self.late += 1
            else:
                last = item[0]
            yield item
        if error is not None:
            raise error
