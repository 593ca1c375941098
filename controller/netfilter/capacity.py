"""Hardware capacity policy: who gets the hardware's limited flow slots (issue 3 item 4).

The kernel lets each flow's REPLACE succeed or fail on its own: a refused flow keeps running in
software and ``flow_offload_refresh`` queues REPLACE again on its next deadline write, at most
once a second (``nf_flow_offload_add``; ``flow_offload_work_add`` leaves NF_FLOW_HW set). This
policy keeps that: there is no table-wide "full" state, so a full IPv6 table never holds back an
IPv4 flow, and a refused flow is retried on its own refresh. Hardware tables are per family
(flowtable.p4's ``flow_v4`` and ``flow_v6``) and per switch (one policy per router).

Two additions stay on top: flows may have to earn their place (with ``min_packets`` /
``min_bytes`` only flows that carried that much through the software fast path are offered to
the hardware, so elephants win over mice), and an idle hardware flow is evicted when a refused
flow of the same table waits for a slot.
"""

from __future__ import annotations

from collections import Counter

from controller.netfilter.flowtable import Flow


def _table(flow: Flow) -> int:
    """The hardware table a flow's rules go to: its address family."""
    return flow.conn.tuples[0].family


class CapacityPolicy:
    """Decides before each REPLACE; learns from refusals, completions and idle reports."""

    def __init__(self, min_packets: int = 0, min_bytes: int = 0) -> None:
        if min_packets < 0 or min_bytes < 0:
            raise ValueError("min_packets and min_bytes must not be negative")
        self.min_packets = min_packets
        self.min_bytes = min_bytes
        self.waiting: dict[int, set[int]] = {}  # table -> flow ids refused for space
        self.counters: Counter[str] = Counter()

    def wants_hw(self, flow: Flow) -> bool:
        """Should ``flow`` be offered to the hardware now? Only the elephant threshold says no."""
        threshold = self.min_packets or self.min_bytes
        if threshold and not (
            (self.min_packets and flow.sw_packets >= self.min_packets)
            or (self.min_bytes and flow.sw_bytes >= self.min_bytes)
        ):
            self.counters["deferred_small"] += 1
            return False
        return True

    def on_no_space(self, flow: Flow) -> None:
        """The driver refused ``flow`` for lack of space: it waits in software (and retries on
        its refresh); only its own table counts as full for idle eviction."""
        self.waiting.setdefault(_table(flow), set()).add(flow.id)
        self.counters["refused_no_space"] += 1

    def on_installed(self, flow: Flow) -> None:
        self.forget(flow)

    def should_evict_idle(self, flow: Flow) -> bool:
        """Hardware says ``flow`` is idle: free its place only if another flow of its table
        waits for one."""
        waiting = self.waiting.get(_table(flow), set())
        if len(waiting) > (flow.id in waiting):
            self.counters["idle_evicted"] += 1
            return True
        self.counters["idle_kept"] += 1
        return False

    def forget(self, flow: Flow) -> None:
        """``flow`` no longer waits (installed, or left the hardware or the flowtable)."""
        waiting = self.waiting.get(_table(flow))
        if waiting is not None:
            waiting.discard(flow.id)
