"""The "hardware" of ``p4ft simulate``: a switch data plane plus the driver that programs it.

Two backends with one shape: :meth:`process` runs a frame through the data plane and returns
what left by data ports and what was punted to the controller (None for a table hit);
:meth:`execute` hands an offload batch to the driver; :meth:`occupancy` counts the entries of
each flow table (``ipv4``, ``ipv6``) for the summary.

- :class:`MemoryHardware`: ``ndo.memory.MemoryDriver`` (its rules are its data plane).
- :class:`SoftswitchHardware`: the embedded softswitch running flowtable.p4's BMv2 JSON on
  in-process ports, programmed by the P4Runtime driver over loopback gRPC; punts are turned into
  ``PacketIn`` exactly as the P4Runtime server would (packet_in header → metadata → decode).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence

from controller.config import RouterConfig
from controller.ip.classic import Send
from ndo.api import FlowCommand, FlowResult, PacketIn, PuntReason
from ndo.memory import MemoryDriver

Clock = Callable[[], float]


class HardwareError(RuntimeError):
    """The simulated hardware could not be set up (no pipeline, target refused it)."""


class MemoryHardware:
    """Generic flow hardware: a hit leaves by the rule's egress port, anything else is a miss."""

    def __init__(self, config: RouterConfig, clock: Clock, capacity: int | None = None) -> None:
        self.driver = MemoryDriver(capacity, clock=clock)

    async def start(self) -> None:
        return None

    def process(self, frame: bytes, port: int) -> tuple[list[Send], PacketIn | None]:
        hit = self.driver.process(frame, port)
        if hit is None:
            return [], PacketIn(frame, port, PuntReason.MISS)
        return [(hit[0], bytes(hit[1]))], None

    async def execute(self, batch: Sequence[FlowCommand]) -> list[FlowResult]:
        return self.driver.execute_now(batch)

    def occupancy(self) -> dict[str, int]:
        return {f"ipv{family}": n for family, n in self.driver.in_table.items()}

    async def close(self) -> None:
        return None


class SoftswitchHardware:
    """The softswitch with flowtable.p4, driven through P4Runtime on 127.0.0.1."""

    def __init__(self, config: RouterConfig, clock: Clock, capacity: int | None = None) -> None:
        from softswitch.ports import QueuePort
        from softswitch.switch import SoftSwitch

        self.config = config
        self.clock = clock
        self.ports = {p.id: QueuePort(p.id, p.name) for p in config.ports}
        self.softswitch = SoftSwitch(
            self.ports.values(),
            cpu_port=config.switch.cpu_port,
            device_id=config.switch.device_id,
            table_size=capacity,
            clock=clock,
            sweep_period=0,
        )
        self.softswitch.switch.to_cpu = self._to_cpu
        self._punts: list[PacketIn] = []
        self.counters: Counter[str] = Counter()
        self.driver = None
        self._codec = None

    async def start(self) -> None:
        from controller.edges.pipeline_files import NoPipeline, load_pipeline
        from ndo.p4runtime.driver import P4RuntimeDriver
        from ndo.p4runtime.packet_io import PacketCodec
        from ndo.p4runtime.schema import FlowSchema

        try:
            pipeline = load_pipeline()
        except (NoPipeline, OSError) as exc:
            raise HardwareError(f"--hw softswitch: {exc}") from exc
        schema = FlowSchema.from_p4info(pipeline.p4info)
        self._codec = PacketCodec(schema, self.counters)
        bound = await self.softswitch.start("127.0.0.1:0")
        self.driver = P4RuntimeDriver(
            f"127.0.0.1:{bound}",
            schema,
            device_id=self.config.switch.device_id,
            election_id=self.config.switch.election_id,
            pipeline=pipeline,
            clock=self.clock,
        )
        try:
            await asyncio.wait_for(self.driver.start(), 30)
        except Exception as exc:
            await self.close()
            raise HardwareError(f"--hw softswitch: the driver could not start: {exc}") from exc

    def _to_cpu(self, frame: bytes) -> None:
        from softswitch.p4rt_codec import P4RTError

        try:
            message = self.softswitch.device.packet_in(frame)
        except P4RTError:
            self.counters["packet_in_errors"] += 1
            return
        assert self._codec is not None
        packet = self._codec.decode(message)
        if packet is not None:
            self._punts.append(packet)

    def process(self, frame: bytes, port: int) -> tuple[list[Send], PacketIn | None]:
        self._punts.clear()
        self.softswitch.switch.receive(port, frame)
        sends = []
        for port_id, qport in self.ports.items():
            while not qport.sent.empty():
                sends.append((port_id, qport.sent.get_nowait()))
        return sends, (self._punts[0] if self._punts else None)

    async def execute(self, batch: Sequence[FlowCommand]) -> list[FlowResult]:
        assert self.driver is not None
        return await self.driver.execute(batch)

    def occupancy(self) -> dict[str, int]:
        from ndo.p4runtime.schema import TABLES

        pipeline = self.softswitch.device.pipeline
        if pipeline is None:
            return {}
        out = {}
        for family, name in TABLES.items():
            table = pipeline.tables.get(name)
            if table is not None:
                out[f"ipv{family}"] = len(table)
        return out

    async def close(self) -> None:
        if self.driver is not None:
            await self.driver.close()
            self.driver = None
        await self.softswitch.stop()


BACKENDS = {"memory": MemoryHardware, "softswitch": SoftswitchHardware}
