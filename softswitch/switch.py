"""The softswitch: pipeline, ports and P4Runtime server joined into one target.

A frame arriving on a port runs through ``pipeline.process(port, frame, now)``; each frame the
pipeline emits goes out of its port, or to the controller as a PacketIn when the port is the CPU
port. A PacketOut enters the pipeline at the CPU port, as on BMv2.

The CPU port is drained by one gRPC stream, which moves one message per event-loop turn while a
port reader handles a burst of frames per turn: under a flood of punts the readers would take the
whole loop and the stream would drop nearly every packet-in. So a port whose frame just went to a
congested CPU port is paused until the stream has drained (``resume_ports``); its frames wait in
the socket buffer, or the kernel drops them there, as a NIC drops into a full ring.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from softswitch.p4rt_config import PipelineFactory
from softswitch.p4rt_device import Device
from softswitch.p4runtime_server import P4RuntimeServer
from softswitch.ports import Port

log = logging.getLogger(__name__)


@dataclass
class SwitchCounters:
    frames_in: int = 0
    frames_out: int = 0
    to_cpu: int = 0
    no_pipeline: int = 0  # frames dropped because no pipeline was committed yet
    unknown_port: int = 0  # the pipeline sent a frame to a port that does not exist
    pipeline_errors: int = 0  # the interpreter raised (it should not): frame dropped, logged
    cpu_pauses: int = 0  # ports paused because the CPU port's stream was congested


class Switch:
    """Frames between ports, the device's running pipeline and the CPU port (sans gRPC)."""

    def __init__(self, device: Device, ports: Iterable[Port], *, cpu_port: int | None = 255,
                 clock: Callable[[], float] = time.monotonic,
                 to_cpu: Callable[[bytes], None] | None = None) -> None:
        self.device = device
        self.ports = {p.port_id: p for p in ports}
        if cpu_port is not None and cpu_port in self.ports:
            raise ValueError(f"port {cpu_port} is the CPU port and cannot be an interface")
        self.cpu_port = cpu_port
        self.clock = clock
        self.to_cpu = to_cpu
        self.cpu_congested: Callable[[], bool] = _never
        self.counters = SwitchCounters()
        self._paused: set[Port] = set()

    def open_ports(self) -> None:
        opened = []
        try:
            for port in self.ports.values():
                port.open(self.receive)
                opened.append(port)
        except BaseException:
            for port in opened:
                port.close()
            raise

    def close_ports(self) -> None:
        for port in self.ports.values():
            port.close()

    def receive(self, port_id: int, frame: bytes) -> None:
        """A frame arrived on ``port_id`` (or from the controller, on the CPU port)."""
        self.counters.frames_in += 1
        pipeline = self.device.pipeline
        if pipeline is None:
            self.counters.no_pipeline += 1
            return
        try:
            outputs = pipeline.process(port_id, frame, self.clock())
        except Exception:
            self.counters.pipeline_errors += 1
            log.exception("pipeline failed on a frame from port %d", port_id)
            return
        punted = self.counters.to_cpu
        for out_port, out in outputs:
            self._emit(out_port, out)
        if punted != self.counters.to_cpu and port_id != self.cpu_port and self.cpu_congested():
            port = self.ports[port_id]
            port.pause()
            self._paused.add(port)
            self.counters.cpu_pauses += 1

    def resume_ports(self) -> None:
        """The CPU port's stream has drained: read the paused ports again."""
        if self._paused:
            paused, self._paused = self._paused, set()
            for port in paused:
                port.resume()

    def packet_out(self, frame: bytes) -> None:
        """A PacketOut's frame (packet_out header + payload) enters at the CPU port."""
        self.receive(self.cpu_port, frame)

    def _emit(self, port_id: int, frame: bytes) -> None:
        if port_id == self.cpu_port:
            self.counters.to_cpu += 1
            if self.to_cpu is not None:
                self.to_cpu(frame)
            return
        port = self.ports.get(port_id)
        if port is None:
            self.counters.unknown_port += 1
            return
        self.counters.frames_out += 1
        port.send(frame)


def _never() -> bool:
    return False


class SoftSwitch:
    """The whole target: a :class:`Switch` and its :class:`P4RuntimeServer`, run in one loop.

    ``cpu_port=None`` is simple_switch_grpc without ``--cpu-port``: no frame becomes a PacketIn,
    a PacketOut is refused, and every port number (255 too) is an ordinary port whose frames
    keep the headers the deparser emits."""

    def __init__(self, ports: Iterable[Port], *, cpu_port: int | None = 255, device_id: int = 0,
                 table_size: int | None = None, clock: Callable[[], float] = time.monotonic,
                 sweep_period: float = 1.0,
                 pipeline_factory: PipelineFactory | None = None) -> None:
        self.device = Device(device_id, pipeline_factory=pipeline_factory, table_size=table_size)
        self.switch = Switch(self.device, ports, cpu_port=cpu_port, clock=clock)
        self.server = P4RuntimeServer(
            self.device, inject=self.switch.packet_out if cpu_port is not None else None,
            clock=clock, sweep_period=sweep_period)
        self.switch.to_cpu = self.server.send_packet_in
        self.switch.cpu_congested = self.server.packet_in_congested
        self.server.on_drained = self.switch.resume_ports
        self.grpc_port: int | None = None

    async def start(self, grpc_addr: str) -> int:
        """Open the ports, then serve P4Runtime on ``grpc_addr``; returns the bound gRPC port."""
        self.switch.open_ports()
        try:
            self.grpc_port = await self.server.start(grpc_addr)
        except BaseException:
            self.switch.close_ports()
            raise
        return self.grpc_port

    async def stop(self) -> None:
        await self.server.stop()
        self.switch.close_ports()
