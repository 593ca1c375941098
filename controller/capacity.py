"""Hardware capacity policy: who gets the hardware's limited flow slots (issue 3 item 4).

The kernel just lets REPLACE fail when a table is full and retries on every refresh. Here a
refusal for lack of space keeps the flow in software (as the kernel does) but also marks the
hardware *full*: further REPLACEs wait until a slot is freed (a DESTROY completed or an idle flow
was evicted), instead of hammering a full table once a second per flow. Flows may also have to
earn their place: with ``min_packets``/``min_bytes`` only flows that carried that much through
the software fast path are offered to the hardware, so elephants win over mice.
"""

from __future__ import annotations

from collections import Counter

from controller.flowtable import Flow


class CapacityPolicy:
    """Decides before each REPLACE; learns from refusals, completions and idle reports."""

    def __init__(self, min_packets: int = 0, min_bytes: int = 0) -> None:
        if min_packets < 0 or min_bytes < 0:
            raise ValueError("min_packets and min_bytes must not be negative")
        self.min_packets = min_packets
        self.min_bytes = min_bytes
        self.full = False
        self.waiting: set[int] = set()  # flow ids refused for space, still in software
        self.counters: Counter[str] = Counter()

    def wants_hw(self, flow: Flow) -> bool:
        """Should ``flow`` be offered to the hardware now?"""
        threshold = self.min_packets or self.min_bytes
        if threshold and not (
            (self.min_packets and flow.sw_packets >= self.min_packets)
            or (self.min_bytes and flow.sw_bytes >= self.min_bytes)
        ):
            self.counters["deferred_small"] += 1
            return False
        if self.full:
            self.waiting.add(flow.id)
            self.counters["deferred_full"] += 1
            return False
        return True

    def on_no_space(self, flow: Flow) -> None:
        """The driver refused ``flow`` for lack of space: it waits in software."""
        self.full = True
        self.waiting.add(flow.id)
        self.counters["refused_no_space"] += 1

    def on_installed(self, flow: Flow) -> None:
        self.waiting.discard(flow.id)

    def on_freed(self, flow: Flow, slots: int) -> None:
        """``slots`` hardware rules were removed: waiting flows may try again."""
        self.waiting.discard(flow.id)
        if slots > 0 and self.full:
            self.full = False
            self.counters["space_freed"] += 1

    def should_evict_idle(self, flow: Flow) -> bool:
        """Hardware says ``flow`` is idle: free its place only if another flow waits for one."""
        if len(self.waiting) > (flow.id in self.waiting):
            self.counters["idle_evicted"] += 1
            return True
        self.counters["idle_kept"] += 1
        return False

    def forget(self, flow: Flow) -> None:
        """``flow`` left the flowtable."""
        self.waiting.discard(flow.id)
