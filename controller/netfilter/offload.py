"""The offload work queue (``nf_flow_table_offload.c``, §4.3), sans-IO.

Flowtables ask for REPLACE / DESTROY / STATS of a flow; the queue turns each request into one
command per flow direction with a stable cookie (``flow.id * 2 + dir``), allows one outstanding
request per flow (HW_PENDING), and applies the results to the flow and its conntrack entry. The
edge does the I/O in between::

    batch = queue.take_batch(1000)
    queue.complete(await driver.execute(batch))

A capacity policy (``capacity``) holds mice back from REPLACE and uses the driver's
idle reports to free hardware slots for refused flows waiting in software; each REPLACE succeeds
or fails on its own, and a refused flow is retried by its next refresh.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from controller.netfilter.capacity import CapacityPolicy
from controller.netfilter.ct import IPPROTO_TCP, IPPROTO_UDP, ORIGINAL, REPLY, Status
from controller.netfilter.flowtable import (
    HW_BIDIRECTIONAL,
    HW_DEAD,
    HW_DYING,
    HW_PENDING,
    SUBDEVICE_BASE,
    Flow,
    Flowtable,
    nat_targets,
    push_encap,
)
from ndo.api import (
    Command,
    Cookie,
    FlowActions,
    FlowCommand,
    FlowDriver,
    FlowMatch,
    FlowResult,
    FlowRule,
    Refusal,
)

# what a work item does: a DESTROY that frees the flow ("destroy") or only its slot ("evict")
REPLACE, DESTROY, EVICT, STATS = "replace", "destroy", "evict", "stats"
_COMMAND = {
    REPLACE: Command.REPLACE,
    DESTROY: Command.DESTROY,
    EVICT: Command.DESTROY,
    STATS: Command.STATS,
}


def cookie_of(flow: Flow, direction: int) -> Cookie:
    return flow.id * 2 + direction


NeighborLookup = Callable[[bytes, int], bytes | None]
"""(next hop, port) -> its MAC while the neighbour is valid (``NeighborTable.lookup``)."""


def build_rule(
    flow: Flow, direction: int, neighbor: NeighborLookup | None = None
) -> FlowRule | None:
    """``nf_flow_offload_rule_alloc`` for one direction; None when hardware cannot hold it
    (not TCP/UDP, neighbour unresolved, no egress port, or an ingress / egress that is a VLAN or
    PPPoE device rather than a switch port: a driver has no such port, -EOPNOTSUPP). The
    destination MAC is the cached one for DIRECT xmit, the neighbour's current one for NEIGH
    (``flow_offload_eth_dst``: ``dst_neigh_lookup``, -ENOENT unless NUD_VALID). The match
    carries the tuple's encap; a DIRECT direction pushes the other direction's
    (``nf_flow_rule_route_common``: VLAN_POP per ingress tag, then PPPOE/VLAN_PUSH)."""
    t = flow.conn.tuples[direction]
    route = flow.routes[direction]
    eth_dst: bytes | None = route.eth_dst
    if not route.direct:
        eth_dst = neighbor(route.next_hop, route.out_port) if neighbor is not None else None
    if t.proto not in (IPPROTO_TCP, IPPROTO_UDP) or eth_dst is None or len(eth_dst) != 6:
        return None
    if not 0 < route.out_port < SUBDEVICE_BASE or route.in_port >= SUBDEVICE_BASE:
        return None
    src, dst, sport, dport = nat_targets(flow, direction)
    return FlowRule(
        FlowMatch(route.in_port, t.family, t.src, t.dst, t.proto, t.sport, t.dport,
                  route.in_encap),
        FlowActions(
            egress_port=route.out_port,
            eth_src=route.eth_src,
            eth_dst=eth_dst,
            mtu=route.mtu,
            nat_src=src,
            nat_dst=dst,
            nat_sport=sport,
            nat_dport=dport,
            push=push_encap(flow, direction),
        ),
    )


@dataclass(eq=False, slots=True)
class _Work:
    kind: str
    ft: Flowtable
    flow: Flow
    commands: list[FlowCommand]
    results: list[FlowResult] = field(default_factory=list)


class OffloadQueue:
    """One queue for all flowtables of a controller (the kernel's three workqueues)."""

    def __init__(
        self, policy: CapacityPolicy | None = None, neighbor: NeighborLookup | None = None
    ) -> None:
        self.policy = policy or CapacityPolicy()
        self.neighbor = neighbor  # for flows with NEIGH xmit
        self.counters: Counter[str] = Counter()
        self._works: deque[_Work] = deque()
        self._in_flight: dict[tuple[Cookie, Command], _Work] = {}
        self._installed: dict[int, tuple[Flowtable, Flow]] = {}  # flow id -> flow in hardware

    # -- requests (OffloadSink) ---------------------------------------------------------------

    def replace(self, ft: Flowtable, flow: Flow) -> bool:
        """``nf_flow_offload_add``. A refusal is retried by the flowtable's next refresh.

        A flowtable without devices has no driver bound (no FLOW_BLOCK_BIND): the kernel's
        REPLACE reaches no callback and nothing is installed, so nothing is sent.
        """
        if flow.flags & HW_PENDING:
            self.counters["dropped_pending"] += 1
            return False
        if not ft.devices:
            self.counters["replace_unbound"] += 1
            return False
        if not flow.hw_dirs and not self.policy.wants_hw(flow):  # installed: no threshold
            return False
        commands = []
        for d in self._dirs(flow):
            rule = build_rule(flow, d, self.neighbor)
            if rule is None:
                self.counters["build_failed"] += 1
                return False
            commands.append(FlowCommand(Command.REPLACE, cookie_of(flow, d), rule))
        return self._queue(REPLACE, ft, flow, commands)

    def destroy(self, ft: Flowtable, flow: Flow) -> bool:
        """``nf_flow_offload_del``: DESTROY both directions, then the flow may be freed.

        With no driver bound and nothing installed, ``flow_offload_work_del`` has no callback to
        call: the flow is HW_DEAD at once.
        """
        if flow.flags & HW_PENDING:
            self.counters["dropped_pending"] += 1
            return False
        flow.flags |= HW_DYING
        if not ft.devices and not flow.hw_dirs:
            flow.flags |= HW_DEAD
            return True
        commands = [FlowCommand(Command.DESTROY, cookie_of(flow, d)) for d in self._dirs(flow)]
        return self._queue(DESTROY, ft, flow, commands)

    def stats(self, ft: Flowtable, flow: Flow, now: float) -> bool:
        """``nf_flow_offload_stats``: only once 10 % of the idle budget has elapsed."""
        if not ft.stats_due(flow, now) or flow.flags & HW_PENDING:
            return False
        commands = [
            FlowCommand(Command.STATS, cookie_of(flow, d))
            for d in (ORIGINAL, REPLY)
            if flow.hw_dirs & (1 << d)
        ]
        return self._queue(STATS, ft, flow, commands)

    def on_idle(self, cookies: Sequence[Cookie]) -> None:
        """Driver idle callback: evict idle hardware flows if others wait for a slot."""
        seen: set[int] = set()
        for cookie in cookies:
            flow_id = cookie >> 1
            entry = self._installed.get(flow_id)
            if entry is None or flow_id in seen:
                continue
            seen.add(flow_id)
            ft, flow = entry
            if flow.flags & (HW_PENDING | HW_DYING) or not self.policy.should_evict_idle(flow):
                continue
            commands = [
                FlowCommand(Command.DESTROY, cookie_of(flow, d))
                for d in (ORIGINAL, REPLY)
                if flow.hw_dirs & (1 << d)
            ]
            self._queue(EVICT, ft, flow, commands)

    # -- the edge's side ------------------------------------------------------------------------

    def __len__(self) -> int:
        """Work items not yet handed to a driver."""
        return len(self._works)

    @property
    def in_flight(self) -> int:
        """Commands handed to a driver and not completed."""
        return len(self._in_flight)

    def outstanding(self) -> Counter[str]:
        """Queued-not-finished work per kind (``/proc/net/stat/nf_flowtable`` wq_add/del/stats)."""
        out: Counter[str] = Counter(w.kind for w in self._works)
        out.update(w.kind for w in {id(w): w for w in self._in_flight.values()}.values())
        return out

    def installed(self) -> int:
        """Flows with at least one direction in hardware."""
        return len(self._installed)

    def take_batch(self, max_n: int) -> list[FlowCommand]:
        """Up to ``max_n`` commands (a work item's commands are never split)."""
        batch: list[FlowCommand] = []
        works = self._works
        while works and (not batch or len(batch) + len(works[0].commands) <= max_n):
            work = works.popleft()
            for cmd in work.commands:
                self._in_flight[(cmd.cookie, cmd.command)] = work
            batch.extend(work.commands)
        return batch

    def complete(self, results: Sequence[FlowResult]) -> None:
        """Apply the driver's answers to a batch from :meth:`take_batch`."""
        for result in results:
            work = self._in_flight.pop((result.cookie, result.command), None)
            if work is None:
                self.counters["unexpected_result"] += 1
                continue
            work.results.append(result)
            if len(work.results) == len(work.commands):
                self._finish(work)

    async def pump(self, driver: FlowDriver, max_n: int = 1000) -> int:
        """Hand every queued command to ``driver``; returns the number of commands sent."""
        sent = 0
        while self._works:
            batch = self.take_batch(max_n)
            try:
                results = await driver.execute(batch)
            except Exception:  # a broken target must not wedge flows in HW_PENDING
                self.counters["driver_error"] += 1
                results = []
            if len(results) != len(batch):
                self.counters["driver_short_answer"] += 1
            self.complete(results)
            for cmd in batch:  # commands the driver left unanswered
                work = self._in_flight.pop((cmd.cookie, cmd.command), None)
                if work is not None:
                    work.results.append(
                        FlowResult(cmd.cookie, cmd.command, Refusal.ERROR, "no answer from driver")
                    )
                    if len(work.results) == len(work.commands):
                        self._finish(work)
            sent += len(batch)
        return sent

    # -- internals ------------------------------------------------------------------------------

    @staticmethod
    def _dirs(flow: Flow) -> tuple[int, ...]:
        return (ORIGINAL, REPLY) if flow.flags & HW_BIDIRECTIONAL else (ORIGINAL,)

    def _queue(self, kind: str, ft: Flowtable, flow: Flow, commands: list[FlowCommand]) -> bool:
        flow.flags |= HW_PENDING
        self.counters[f"{kind}_queued"] += 1
        self._works.append(_Work(kind, ft, flow, commands))
        return True

    def _finish(self, work: _Work) -> None:
        flow = work.flow
        flow.flags &= ~HW_PENDING
        ok = [r for r in work.results if r.ok]
        failed = len(work.results) - len(ok)
        self.counters[f"{work.kind}_done"] += 1
        if failed:
            self.counters[f"{work.kind}_failed"] += 1
        if work.kind == REPLACE:
            self._replaced(work, ok)
        elif work.kind == STATS:
            self._stats_done(work, ok)
        else:
            self._destroyed(work)

    def _replaced(self, work: _Work, ok: list[FlowResult]) -> None:
        flow, ft = work.flow, work.ft
        if any(r.refusal is Refusal.NO_SPACE for r in work.results):
            self.policy.on_no_space(flow)
        if not ok:
            return
        for r in ok:
            flow.hw_dirs |= 1 << (r.cookie & 1)
        self._installed[flow.id] = (ft, flow)
        self.policy.on_installed(flow)
        conn = flow.conn
        if not conn.status & Status.HW_OFFLOAD:
            ft.conntrack.set_status(conn, Status.HW_OFFLOAD)
            ft.emit("HW_OFFLOAD", flow)

    def _stats_done(self, work: _Work, ok: list[FlowResult]) -> None:
        """``flow_offload_work_stats``: hardware activity keeps the software entry alive."""
        flow, ft = work.flow, work.ft
        lastused = max(
            (r.stats.lastused for r in ok if r.stats and r.stats.lastused is not None),
            default=None,
        )
        if lastused is not None:
            flow.timeout = max(flow.timeout, lastused + ft.timeout_of(flow.conn.proto))
        if ft.counter:
            conn = flow.conn
            for r in ok:
                if r.stats and r.stats.packets > 0:
                    d = r.cookie & 1
                    conn.packets[d] += r.stats.packets
                    conn.bytes[d] += r.stats.bytes

    def _destroyed(self, work: _Work) -> None:
        """``flow_offload_work_del``: the rules are gone (even if a driver complained)."""
        flow, ft = work.flow, work.ft
        flow.hw_dirs = 0
        self._installed.pop(flow.id, None)
        if flow.conn.status & Status.HW_OFFLOAD:
            ft.conntrack.clear_status(flow.conn, Status.HW_OFFLOAD)
        if work.kind == DESTROY:
            flow.flags |= HW_DEAD
            self.policy.forget(flow)
            ft.emit("DESTROY", flow)
        else:
            ft.emit("DESTROY", flow, "idle_evicted")
