"""The punt channel: how punted frames reach the controller and packet-outs reach the switch.

One interface, two implementations. :class:`StreamChannel` is P4Runtime's StreamChannel
(PacketIn/PacketOut messages through the driver's gRPC stream), the standard for a controller
on another machine. :class:`controller.edges.netdev.NetdevChannel` reads and writes the
switch's CPU port as a network device, as Linux DSA switches hand theirs to the kernel
(net/dsa/tag_*.c): every frame carries the program's ``packet_in`` / ``packet_out`` header in
front. Table writes, counters, idle timeouts and arbitration stay on P4Runtime either way;
both channels feed the same bounded :class:`PuntQueue` and time the same stages.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, Protocol

from controller.config import RouterConfig
from ndo.p4runtime.driver import P4RuntimeDriver
from ndo.p4runtime.punt_queue import PuntQueue, Queued
from ndo.p4runtime.schema import FlowSchema
from ndo.timing import Stage


class PuntChannel(Protocol):
    """Packet-in and packet-out of one switch."""

    punts: PuntQueue  # what arrived and waits for the router
    packet_out_wait: Stage  # from send_packet until the frame left this process's hands
    counters: Counter[str]

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def packet_batches(self, limit: int) -> AsyncIterator[list[Queued]]: ...

    def send_packet(self, frame: bytes, egress_port: int) -> bool: ...

    def stats(self) -> dict[str, Any]: ...


class StreamChannel:
    """Punts on the P4Runtime stream the driver holds (it decodes, queues and reconnects)."""

    def __init__(self, driver: P4RuntimeDriver) -> None:
        self.driver = driver
        self.punts = driver.punts
        self.packet_out_wait = driver.packet_out_wait
        self.counters = driver.counters

    async def start(self) -> None:
        """Nothing of its own: the stream opens with the driver."""

    async def close(self) -> None:
        """Nothing of its own: the stream closes with the driver."""

    def packet_batches(self, limit: int) -> AsyncIterator[list[Queued]]:
        return self.driver.packet_batches(limit)

    def send_packet(self, frame: bytes, egress_port: int) -> bool:
        return self.driver.send_packet(frame, egress_port)

    def stats(self) -> dict[str, Any]:
        return {"channel": "p4runtime", "up": self.driver.connected}


def open_channel(config: RouterConfig, driver: P4RuntimeDriver, schema: FlowSchema,
                 packet_queue: int) -> PuntChannel:
    """The channel ``[punt] channel`` names (the P4Runtime stream by default)."""
    if config.punt_channel.channel == "netdev":
        from controller.edges.netdev import NetdevChannel

        return NetdevChannel(config.punt_channel.device, schema, packet_queue)
    return StreamChannel(driver)
