"""``p4ft simulate``: the whole system in one process on a virtual clock (DESIGN §4.1).

Input pcaps (one per port) are merged in time order, ties broken by the order the inputs were
given. Each frame goes first to the "hardware" (``simulate_hw``: the memory driver, or the
softswitch programmed over P4Runtime): what it forwards leaves with path ``hw``; a punt goes
to :class:`controller.router.Router` with its reason (a frame the data plane drops: ``drop``).
Between packets the clock advances: at every whole second passed the router ticks (GC,
conntrack expiry, neighbour timers) and the offload queue is drained. Hardware latency is
modelled on the virtual clock: a batch taken at ``t`` is executed by the driver at
``t + latency``, so packets in between still miss in hardware.

The result is one report entry per input packet ``{"in_port", "time", "path", "events"}``
(events produced while handling it, and by ticks, offload completions or ruleset changes since
the previous packet) and, per port, the frames the system sent with their virtual time.

A ruleset change (``--ruleset-at TIME=FILE``) runs FILE on the running ruleset as one
transaction, like ``p4ft ruleset apply``, TIME seconds after the first input packet; a change
due after the last packet is applied before the remaining hardware work completes.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controller.config import RouterConfig
from controller.edges.pcap import PcapWriter, read_pcap
from controller.edges.simulate_hw import BACKENDS
from controller.ip.classic import Send
from controller.router import Event, Router
from ndo.api import FlowCommand

DEFAULT_LATENCY = 0.005  # seconds from taking a batch to its completion (hardware write time)
BATCH = 1000

Frame = tuple[float, bytes]


class SimulationError(ValueError):
    """Bad simulation input (unknown port, unreadable pcap); the message says which."""


@dataclass(frozen=True, slots=True)
class RulesetChange:
    """``--ruleset-at``: at ``offset`` seconds after the first packet, run ``text``."""

    offset: float
    text: str
    filename: str


@dataclass(slots=True)
class SimulationResult:
    report: list[dict[str, object]] = field(default_factory=list)
    outputs: dict[int, list[Frame]] = field(default_factory=dict)

    def write(self, out_dir: Path) -> None:
        """``DIR/<port>.pcap`` for every port that sent something and ``DIR/report.json``."""
        out_dir.mkdir(parents=True, exist_ok=True)
        for port, frames in sorted(self.outputs.items()):
            with PcapWriter(out_dir / f"{port}.pcap") as pcap:
                for when, frame in frames:
                    pcap.write(when, frame)
        (out_dir / "report.json").write_text(json.dumps(self.report, indent=1) + "\n")


class Simulation:
    """One router, one memory-driver switch, one virtual clock."""

    def __init__(
        self,
        config: RouterConfig,
        *,
        latency: float = DEFAULT_LATENCY,
        capacity: int | None = None,
        hw: str = "memory",
    ) -> None:
        if latency < 0:
            raise SimulationError("hardware latency must not be negative")
        if capacity is not None and capacity < 0:
            raise SimulationError("hardware capacity must not be negative")
        self.now = 0.0
        self.latency = latency
        self._pending: list[Event] = []
        self.router = Router(config, on_event=self._pending.append)
        if hw not in BACKENDS:
            raise SimulationError(f"unknown hardware {hw!r} (one of {', '.join(BACKENDS)})")
        self.hw = BACKENDS[hw](config, lambda: self.now, capacity)
        self._in_flight: list[tuple[float, int, list[FlowCommand]]] = []  # (due, seq, batch)
        self._seq = 0
        self.result = SimulationResult()
        # A long silence is ticked for this many seconds, then skipped up to the same span
        # before the next packet: by then every flow has expired and its hardware rules are
        # gone, so the skipped ticks would change nothing but the time a pcap gap costs.
        ftc = config.flowtable
        self._settle = 2.0 * max(ftc.tcp_timeout, ftc.udp_timeout) + 60.0

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
        merged = heapq.merge(
            *(_keyed(index, port, frames) for index, (port, frames) in enumerate(inputs))
        )
        pending = sorted(changes, key=lambda c: c.offset)
        start = 0.0
        next_tick: float | None = None
        for when, _index, _seq, port, frame in merged:
            if next_tick is None:
                self.now = start = when
                next_tick = math.floor(when) + 1.0
            while pending and start + pending[0].offset <= when:
                change = pending.pop(0)
                next_tick = await self._ticks(start + change.offset, next_tick)
                self._apply(change)
            next_tick = await self._ticks(when, next_tick)
            await self._advance(when)
            self._packet(port, frame)
        for change in pending:
            self._apply(change)
        await self._finish()
        return self.result

    async def _ticks(self, until: float, next_tick: float) -> float:
        """Run the 1 s timers due up to ``until``, advance the clock there; the next tick."""
        quiet_from = next_tick + self._settle
        while next_tick <= until:
            await self._advance(next_tick)
            self._output(self.router.tick(next_tick))
            self._take_batch()
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
        self._output(sends)
        if punt is not None:
            outcome = self.router.receive(punt.frame, punt.ingress_port, self.now, punt.reason)
            path = outcome.path
            self._output(outcome.sends)
        else:
            path = "hw" if sends else "drop"
        self.result.report.append(
            {"in_port": port, "time": self.now, "path": path, "events": list(self._pending)}
        )
        self._pending.clear()
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
        for port, frame in sends:
            self.result.outputs.setdefault(port, []).append((self.now, frame))


def _keyed(
    index: int, port: int, frames: Iterable[Frame]
) -> Iterable[tuple[float, int, int, int, bytes]]:
    """Sort keys for the merge: time, then the input's position, then its own order (a pcap
    slightly out of time order is replayed in time order)."""
    for seq, (when, frame) in sorted(enumerate(frames), key=lambda item: item[1][0]):
        yield when, index, seq, port, frame


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


def load_inputs(specs: Sequence[tuple[int, Path]]) -> list[tuple[int, list[Frame]]]:
    """Read every pcap completely first, so that a bad file fails before anything runs."""
    return [(port, list(read_pcap(path))) for port, path in specs]
