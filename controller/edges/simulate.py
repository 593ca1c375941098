"""``p4ft simulate``: the whole system in one process on a virtual clock (DESIGN §4.1).

Input captures (one per port) are merged lazily in time order, ties broken by the order the
inputs were given. Each frame goes first to the "hardware" (``simulate_hw``: the memory driver,
or the softswitch programmed over P4Runtime): what it forwards leaves with path ``hw``; a punt
goes to :class:`controller.router.Router` with its reason (a frame the data plane drops:
``drop``). Between packets the clock advances: at every whole second passed the router ticks
(GC, conntrack expiry, neighbour timers) and the offload queue is drained. Hardware latency is
modelled on the virtual clock: a batch taken at ``t`` is executed by the driver at
``t + latency``, so packets in between still miss in hardware.

Nothing grows with the number of packets: every input packet is handed to the observers
(:class:`Observer`: the per-packet log, the summary, the progress bar) with its path, punt reason
and the events produced while handling it, and by ticks, offload completions or ruleset changes
since the previous packet; frames the system sends go to ``send`` as they leave. Only live state
(connections, flows, hardware batches in flight, a reorder window per input) is held.

A ruleset change (``--ruleset-at TIME=FILE``) runs FILE on the running ruleset as one
transaction, like ``p4ft ruleset apply``, TIME seconds after the first input packet; a change
due after the last packet is applied before the remaining hardware work completes.
:meth:`Simulation.stop` (Ctrl-C) ends the replay after the packet in hand; what was replayed so
far is complete and consistent.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from controller.config import RouterConfig
from controller.edges.capture import Frame, Reorder
from controller.edges.simulate_hw import BACKENDS
from controller.ip.classic import Send
from controller.router import Event, Router, reason_name
from ndo.api import FlowCommand

DEFAULT_LATENCY = 0.005  # seconds from taking a batch to its completion (hardware write time)
BATCH = 1000
INPUT_SHIFT = 48  # frame sequence numbers of one input stay below 2**48

SendSink = Callable[[int, float, bytes], None]  # (port, virtual time, frame)


class SimulationError(ValueError):
    """Bad simulation input (unknown port, unreadable pcap); the message says which."""


class Observer(Protocol):
    """What sees the replay go by. ``events`` is reused after the call: copy what you keep."""

    def packet(
        self, port: int, when: float, frame: bytes, path: str, reason: str, events: list[Event]
    ) -> None:
        """One input packet: its path, the punt reason ('' for a hardware hit or drop)."""

    def event(self, now: float, event: Event) -> None:
        """An event at the virtual time it happened (a packet's record carries it later)."""

    def tick(self, now: float, occupancy: dict[str, int]) -> None:
        """Every virtual second the router ticks: hardware entries per table now."""


@dataclass(frozen=True, slots=True)
class RulesetChange:
    """``--ruleset-at``: at ``offset`` seconds after the first packet, run ``text``."""

    offset: float
    text: str
    filename: str


@dataclass(slots=True)
class SimulationResult:
    """Counts of the run; what it produced went to the observers and the send sink."""

    packets: int = 0
    paths: dict[str, int] = field(default_factory=dict)
    late_frames: int = 0  # frames further out of time order than the reorder window
    interrupted: bool = False
    start: float | None = None  # virtual time of the first and the last packet
    end: float | None = None


class Simulation:
    """One router, one simulated switch, one virtual clock."""

    def __init__(
        self,
        config: RouterConfig,
        *,
        latency: float = DEFAULT_LATENCY,
        capacity: int | None = None,
        hw: str = "memory",
        observers: Sequence[Observer] = (),
        send: SendSink | None = None,
    ) -> None:
        if latency < 0:
            raise SimulationError("hardware latency must not be negative")
        if capacity is not None and capacity < 0:
            raise SimulationError("hardware capacity must not be negative")
        self.now = 0.0
        self.observers = list(observers)
        self.latency = latency
        self._pending: list[Event] = []
        self.router = Router(config, on_event=self._event)
        if hw not in BACKENDS:
            raise SimulationError(f"unknown hardware {hw!r} (one of {', '.join(BACKENDS)})")
        self.hw = BACKENDS[hw](config, lambda: self.now, capacity)
        self.send = send
        self._in_flight: list[tuple[float, int, list[FlowCommand]]] = []  # (due, seq, batch)
        self._seq = 0
        self._stop = False
        self.result = SimulationResult()
        # A long silence is ticked for this many seconds, then skipped up to the same span
        # before the next packet: by then every flow has expired and its hardware rules are
        # gone, so the skipped ticks would change nothing but the time a pcap gap costs.
        ftc = config.flowtable
        self._settle = 2.0 * max(ftc.tcp_timeout, ftc.udp_timeout) + 60.0

    def _event(self, event: Event) -> None:
        self._pending.append(event)
        for observer in self.observers:
            observer.event(self.now, event)

    def stop(self) -> None:
        """End the replay after the packet in hand (Ctrl-C); safe from a signal handler."""
        self._stop = True

    def run(
        self,
        inputs: Sequence[tuple[int, Iterable[Frame]]],
        changes: Sequence[RulesetChange] = (),
    ) -> SimulationResult:
        """Replay ``inputs`` (port, frames) merged by time; ties keep the order of ``inputs``."""
        return asyncio.run(self.run_async(inputs, changes))

    async def run_async(
        self,
        inputs: Sequence[tuple[int, Iterable[Frame]]],
        changes: Sequence[RulesetChange] = (),
    ) -> SimulationResult:
        await self.hw.start()
        try:
            return await self._run(inputs, changes)
        finally:
            await self.hw.close()

    async def _run(
        self, inputs: Sequence[tuple[int, Iterable[Frame]]], changes: Sequence[RulesetChange]
    ) -> SimulationResult:
        ports = {p.id for p in self.router.config.ports}
        for port, _ in inputs:
            if port not in ports:
                raise SimulationError(f"input port {port} is not a port of the router config")
        # input i numbers its frames from i << INPUT_SHIFT: a tie in time goes to the input
        # given first, then to file order, with no per-frame key to build
        ordered = [
            Reorder(frames, first_seq=i << INPUT_SHIFT) for i, (_, frames) in enumerate(inputs)
        ]
        port_of = [port for port, _ in inputs]
        merged = iter(ordered[0]) if len(ordered) == 1 else heapq.merge(*ordered)
        pending = sorted(changes, key=lambda c: c.offset)
        result = self.result
        start = 0.0
        next_tick = math.inf
        in_flight = self._in_flight
        packet = self._packet
        try:
            for when, seq, frame in merged:
                if result.start is None:
                    self.now = start = result.start = when
                    next_tick = math.floor(when) + 1.0
                while pending and start + pending[0].offset <= when:
                    change = pending.pop(0)
                    next_tick = await self._ticks(start + change.offset, next_tick)
                    self._apply(change)
                if next_tick <= when:
                    next_tick = await self._ticks(when, next_tick)
                if in_flight and in_flight[0][0] <= when:
                    await self._advance(when)
                if when > self.now:
                    self.now = when
                packet(port_of[seq >> INPUT_SHIFT], frame)
                if self._stop:
                    result.interrupted = True
                    break
        finally:  # a broken capture ends the run: the counts so far stand
            result.end = self.now if result.start is not None else None
            result.late_frames = sum(o.late for o in ordered)
        if not result.interrupted:
            for change in pending:
                self._apply(change)
        await self._finish()
        return result

    async def _ticks(self, until: float, next_tick: float) -> float:
        """Run the 1 s timers due up to ``until``, advance the clock there; the next tick."""
        quiet_from = next_tick + self._settle
        while next_tick <= until:
            await self._advance(next_tick)
            self._output(self.router.tick(next_tick))
            self._take_batch()
            occupancy = self.hw.occupancy()
            for observer in self.observers:
                observer.tick(next_tick, occupancy)
            next_tick += 1.0
            if next_tick >= quiet_from and until - next_tick > self._settle:
                next_tick = math.floor(until) + 1.0 - self._settle  # see _settle
        await self._advance(until)
        return next_tick

    def _apply(self, change: RulesetChange) -> None:
        """``p4ft ruleset apply`` at the current virtual time (a RulesetError ends the run)."""
        router = self.router
        ruleset = router.ruleset.apply(change.text, change.filename, router.devices)
        router.apply_ruleset(ruleset, self.now)
        self._take_batch()

    # -- one input packet ------------------------------------------------------------------

    def _packet(self, port: int, frame: bytes) -> None:
        sends, punt = self.hw.process(frame, port)
        if sends and self.send is not None:
            self._output(sends)
        if punt is not None:
            reason = reason_name(punt.reason)
            outcome = self.router.receive(punt.frame, punt.ingress_port, self.now, punt.reason)
            path = outcome.path
            if outcome.sends and self.send is not None:
                self._output(outcome.sends)
        else:
            reason = ""
            path = "hw" if sends else "drop"
        result = self.result
        result.packets += 1
        result.paths[path] = result.paths.get(path, 0) + 1
        events = self._pending
        for observer in self.observers:
            observer.packet(port, self.now, frame, path, reason, events)
        if events:
            events.clear()
        if punt is not None and len(self.router.offload):  # only the router queues offload work
            self._take_batch()

    # -- the clock and the hardware ----------------------------------------------------------

    async def _advance(self, until: float) -> None:
        """Move the clock to ``until``, completing hardware batches due on the way."""
        while self._in_flight and self._in_flight[0][0] <= until:
            due, _seq, batch = heapq.heappop(self._in_flight)
            self.now = max(self.now, due)
            self.router.offload.complete(await self.hw.execute(batch))
            self._take_batch()  # completions may have queued more work (e.g. waiting flows)
        self.now = max(self.now, until)

    def _take_batch(self) -> None:
        offload = self.router.offload
        while len(offload):
            batch = offload.take_batch(BATCH)
            heapq.heappush(self._in_flight, (self.now + self.latency, self._seq, batch))
            self._seq += 1

    async def _finish(self) -> None:
        """Complete what the hardware still has in hand (nothing more is reported)."""
        if self._in_flight:
            await self._advance(max(due for due, _, _ in self._in_flight))

    def _output(self, sends: list[Send]) -> None:
        if self.send is not None:
            for port, frame in sends:
                self.send(port, self.now, frame)


def parse_inputs(specs: Sequence[str]) -> list[tuple[int, Path]]:
    """``PORT=FILE`` arguments of ``--in``."""
    out = []
    for spec in specs:
        port, sep, path = spec.partition("=")
        if not sep or not port.strip().isdigit() or not path:
            raise SimulationError(f"--in {spec!r}: expected PORT=FILE, e.g. 1=h1.pcap")
        out.append((int(port), Path(path)))
    return out


def load_changes(specs: Sequence[str]) -> list[RulesetChange]:
    """``TIME=FILE`` arguments of ``--ruleset-at``, each file read now."""
    out = []
    for spec in specs:
        when, sep, path = spec.partition("=")
        try:
            offset = float(when)
        except ValueError:
            offset = -1.0
        if not sep or not path or not offset >= 0 or math.isinf(offset):
            raise SimulationError(
                f"--ruleset-at {spec!r}: expected TIME=FILE, TIME in seconds after the first "
                "packet, e.g. 2.5=reload.nft"
            )
        out.append(RulesetChange(offset, Path(path).read_text(encoding="utf-8"), path))
    return out
