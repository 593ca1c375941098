"""The switch end to end in one process: queue ports, the stand-in pipeline, a real gRPC client."""

from __future__ import annotations

import grpc
import pytest
from finsy.proto import p4r, p4r_grpc

from softswitch.p4rt_device import Device
from softswitch.p4runtime_server import CONGESTED
from softswitch.ports import QueuePort
from softswitch.switch import SoftSwitch, Switch
from tests.softswitch.p4rt_support import (
    CPU_PORT,
    DEVICE_CONFIG,
    DEVICE_ID,
    FakeClock,
    Harness,
    Stream,
    flow_entry,
    make_pipeline,
    p4info,
    packet_out,
    update,
    wait_for,
)

FRAME = bytes.fromhex("0a000001") + b"\xee" * 56


@pytest.fixture
async def target():
    ports = [QueuePort(1), QueuePort(2)]
    clock = FakeClock()
    softswitch = SoftSwitch(ports, cpu_port=CPU_PORT, device_id=DEVICE_ID, clock=clock,
                            sweep_period=0, pipeline_factory=make_pipeline)
    grpc_port = await softswitch.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
    h = Harness(softswitch.device, softswitch.server, p4r_grpc.P4RuntimeStub(channel), channel,
                clock, [])
    await h.push_pipeline()
    try:
        yield softswitch, h, ports
    finally:
        await channel.close()
        await softswitch.stop()


async def test_hit_is_forwarded_and_counted(target) -> None:
    _, h, (p1, p2) = target
    await h.write(update("INSERT", flow_entry(port=1, dst=0x0A000001, out_port=2)))
    p1.inject(FRAME)
    assert p2.drain() == [FRAME]
    entry = h.device.pipeline.tables["ingress.flow"].get((1, 0x0A000001), 0)
    assert (entry.packets, entry.bytes) == (1, len(FRAME))


async def test_miss_becomes_packet_in_at_the_primary(target) -> None:
    softswitch, h, (p1, _) = target
    stream = Stream(h.stub)
    await stream.primary(1)
    p1.inject(FRAME)
    reply = await stream.recv()
    assert reply.packet.payload == FRAME
    assert reply.packet.metadata[0].value == b"\x01"  # ingress port
    assert softswitch.switch.counters.to_cpu == 1


async def test_packet_out_goes_through_the_pipeline_to_its_port(target) -> None:
    _, h, (_, p2) = target
    stream = Stream(h.stub)
    await stream.primary(1)
    stream.send(packet=packet_out(b"out-frame", egress_port=2))
    await wait_for(lambda: not p2.sent.empty())
    assert p2.drain() == [b"out-frame"]


async def test_frames_before_pipeline_and_to_unknown_ports_are_counted() -> None:
    ports = [QueuePort(1)]
    softswitch = SoftSwitch(ports, cpu_port=CPU_PORT, pipeline_factory=make_pipeline,
                            sweep_period=0)
    await softswitch.start("127.0.0.1:0")
    try:
        ports[0].inject(FRAME)
        assert softswitch.switch.counters.no_pipeline == 1
        softswitch.device.set_pipeline(
            p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
            p4r.ForwardingPipelineConfig(p4info=p4info(), p4_device_config=DEVICE_CONFIG))
        softswitch.switch.packet_out((9 << 7).to_bytes(2, "big") + b"x")  # port 9 does not exist
        assert softswitch.switch.counters.unknown_port == 1
    finally:
        await softswitch.stop()


def test_cpu_port_cannot_be_an_interface() -> None:
    with pytest.raises(ValueError, match="CPU port"):
        Switch(Device(), [QueuePort(255)], cpu_port=255)


def test_a_raising_pipeline_drops_the_frame_and_counts() -> None:
    class Broken:
        def process(self, port, frame, now):
            raise RuntimeError("interpreter bug")

    class Dev:
        pipeline = Broken()

    switch = Switch(Dev(), [QueuePort(1)], cpu_port=CPU_PORT)
    switch.receive(1, FRAME)
    assert switch.counters.pipeline_errors == 1


async def test_a_lagging_stream_holds_punted_frames_at_their_port(target) -> None:
    """Punts beyond what the stream has sent wait at their port (not processed, not dropped),
    while a port whose frames are hits keeps forwarding."""
    softswitch, h, (p1, p2) = target
    await h.write(update("INSERT", flow_entry(port=2, dst=0x0A000001, out_port=1)))
    stream = Stream(h.stub)
    await stream.primary(1)
    frames = [FRAME[:4] + i.to_bytes(2, "big") + FRAME[6:] for i in range(CONGESTED + 5)]
    for frame in frames:  # no loop turn in between: the stream sends nothing meanwhile
        p1.inject(frame)
    assert softswitch.switch.counters.to_cpu == CONGESTED
    assert p1.paused and softswitch.switch.counters.cpu_pauses == 1
    p2.inject(FRAME)
    assert p1.drain() == [FRAME]
    payloads = [(await stream.recv()).packet.payload for _ in frames]
    assert payloads == frames
    assert not p1.paused
    assert softswitch.server.counters.packet_in_dropped == 0


async def test_without_a_cpu_port_port_255_is_an_ordinary_port_with_the_headers_on() -> None:
    """simple_switch_grpc without --cpu-port: punts leave port 255 as the deparser emits them
    (packet_in first), frames arriving there enter the parser as any port's (packet_out
    first), and a PacketOut has nowhere to go."""
    cpu = QueuePort(CPU_PORT)
    ports = [QueuePort(1), QueuePort(2), cpu]
    softswitch = SoftSwitch(ports, cpu_port=None, device_id=DEVICE_ID, sweep_period=0,
                            pipeline_factory=make_pipeline)
    grpc_port = await softswitch.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
    h = Harness(softswitch.device, softswitch.server, p4r_grpc.P4RuntimeStub(channel), channel,
                FakeClock(), [])
    await h.push_pipeline()
    try:
        stream = Stream(h.stub)
        await stream.primary(1)
        ports[0].inject(FRAME)
        punted = cpu.drain()
        assert len(punted) == 1 and punted[0].endswith(FRAME) and len(punted[0]) > len(FRAME)
        assert softswitch.server.counters.packet_in_sent == 0
        cpu.inject((2 << 7).to_bytes(2, "big") + b"from-the-cpu-device")
        assert ports[1].drain() == [b"from-the-cpu-device"]
        stream.send(packet=packet_out(b"out-frame", egress_port=2))
        reply = await stream.recv()
        assert reply.error.canonical_code == grpc.StatusCode.UNAVAILABLE.value[0]
        assert ports[1].drain() == []
    finally:
        await channel.close()
        await softswitch.stop()
