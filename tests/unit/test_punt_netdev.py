"""The netdev punt channel: controller headers laid out from the P4Info, frames through a real
veth pair (the switch's end read and written with a raw socket here), a device that goes away
and comes back, and a whole session whose softswitch has its CPU port on a veth."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator

import pytest
from finsy.proto import p4i
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from controller.config import parse_config
from controller.edges.netdev import ControllerHeader, NetdevChannel
from controller.edges.punt import StreamChannel, open_channel
from ndo.api import PuntReason
from ndo.p4runtime.punt_queue import Queued
from ndo.p4runtime.schema import FlowSchema, PacketMetadata, SchemaError
from tests.ndo.p4rt_support import DEVICE_ID, pipeline
from tests.unit.test_daemon_flood import FLOOD, config, handshake, until

SCHEMA = FlowSchema.from_p4info(pipeline().p4info)
FRAME = bytes(Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:fe")
              / IP(src="10.0.1.1", dst="10.0.2.1") / UDP(sport=1, dport=2) / b"x")


# -- header layout --------------------------------------------------------------------------


def test_flowtable_headers_are_laid_out_as_the_deparser_emits_them() -> None:
    packet_in = ControllerHeader("packet_in", SCHEMA.packet_in)
    packet_out = ControllerHeader("packet_out", SCHEMA.packet_out)
    assert packet_in.size == 3 and packet_out.size == 2  # bit<16> port, bit<8> reason; bit<16>
    assert packet_in.pack(ingress_port=0x0102, reason=7) == b"\x01\x02\x07"
    assert packet_out.pack(egress_port=3) == b"\x00\x03"


def test_fields_of_any_width_pack_bit_by_bit_in_p4info_order() -> None:
    header = ControllerHeader("h", PacketMetadata({"a": (1, 9), "b": (2, 3), "c": (3, 4)}))
    assert header.size == 2
    word = int.from_bytes(header.pack(a=0x1FF, b=0, c=0x5), "big")
    assert word == (0x1FF << 7) | 0x5
    shift, mask = header.field("b")
    assert (shift, mask) == (4, 7)
    with pytest.raises(ValueError, match="does not fit"):
        header.pack(b=8)


def test_a_header_of_part_bytes_or_a_missing_field_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="not whole bytes"):
        ControllerHeader("h", PacketMetadata({"a": (1, 9)}))
    with pytest.raises(SchemaError, match="no field 'reason'"):
        ControllerHeader("h", PacketMetadata({"a": (1, 8)})).field("reason")


def test_the_channel_follows_the_p4info_not_fixed_offsets() -> None:
    info = pipeline().p4info
    for header in info.controller_packet_metadata:
        if header.preamble.name == "packet_in":  # reason first, a wider port: as p4c would
            del header.metadata[:]
            header.metadata.extend([p4i.ControllerPacketMetadata.Metadata(
                id=2, name="reason", bitwidth=8), p4i.ControllerPacketMetadata.Metadata(
                id=1, name="ingress_port", bitwidth=32)])
    channel = NetdevChannel("unused", FlowSchema.from_p4info(info), 8)
    assert channel._in.size == 5
    assert channel._port == (0, 0xFFFFFFFF) and channel._reason == (32, 0xFF)


def test_the_config_picks_the_channel() -> None:
    from ndo.p4runtime.driver import P4RuntimeDriver

    base = '[[ports]]\nid = 1\nname = "eth0"\nmac = "02:00:00:00:01:fe"\n'
    driver = P4RuntimeDriver("127.0.0.1:1", SCHEMA)
    assert isinstance(open_channel(parse_config(base), driver, SCHEMA, 8), StreamChannel)
    netdev = open_channel(parse_config(base + '[punt]\nchannel = "netdev"\ndevice = "cpu0"\n'),
                          driver, SCHEMA, 8)
    assert isinstance(netdev, NetdevChannel) and netdev.device == "cpu0"


# -- through a veth pair ----------------------------------------------------------------------


def _ip(*args: str) -> None:
    subprocess.run(("ip", *args), check=True, capture_output=True)


def _make_veth(switch_end: str, punt_end: str) -> None:
    _ip("link", "add", switch_end, "type", "veth", "peer", "name", punt_end)
    for dev in (switch_end, punt_end):
        subprocess.run(("sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"),
                       check=False, capture_output=True)
        _ip("link", "set", dev, "up")


@pytest.fixture
def veth():
    """A veth pair of our own in this namespace: (the switch's end, the controller's end)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for a veth pair")
    tag = uuid.uuid4().hex[:6]
    pair = (f"p4sw{tag}", f"p4ct{tag}")
    try:
        _make_veth(*pair)
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"cannot create a veth pair: {exc}")
    try:
        yield pair
    finally:
        subprocess.run(("ip", "link", "del", pair[0]), check=False, capture_output=True)


def _switch_socket(name: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    sock.bind((name, 0))
    sock.setblocking(False)
    return sock


async def _recv(sock: socket.socket, timeout: float = 10.0) -> bytes:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        while True:
            try:
                return sock.recv(65535)
            except BlockingIOError:
                ready = loop.create_future()
                loop.add_reader(sock.fileno(), ready.set_result, None)
                try:
                    await ready
                finally:
                    loop.remove_reader(sock.fileno())


@pytest.mark.asyncio
async def test_punts_and_packet_outs_cross_the_veth_with_their_headers(veth) -> None:
    switch_end, punt_end = veth
    channel = NetdevChannel(punt_end, SCHEMA, 16)
    await channel.start()
    sw = _switch_socket(switch_end)
    try:
        sw.send(b"\x00\x02" + bytes([PuntReason.MISS]) + FRAME)
        sw.send(b"\x00\x01\x63" + FRAME)  # an unknown reason number is delivered as a number
        sw.send(b"\x00\x01\x01" + FRAME[:12])  # no whole Ethernet header after it: counted
        batches = channel.packet_batches(8)
        got = []
        while len(got) < 2:
            got += [packet for packet, _ in await anext(batches)]
        assert [(p.frame, p.ingress_port, p.reason) for p in got] == [
            (FRAME, 2, PuntReason.MISS), (FRAME, 1, 0x63)]
        await until(lambda: channel.counters["packet_in_short"] == 1)

        assert channel.send_packet(FRAME, 3)
        assert await _recv(sw) == b"\x00\x03" + FRAME
        assert not channel.send_packet(FRAME, 1 << 16)  # beyond bit<16>: refused, counted
        assert not channel.send_packet(FRAME[:5], 1)
        assert channel.counters["packet_out_bad_port"] == 1
        assert channel.counters["packet_out_short"] == 1
        stats = channel.stats()
        assert stats["up"] and stats["counters"]["packet_in"] == 2
        assert channel.packet_out_wait.count == 1
    finally:
        sw.close()
        await channel.close()


async def _round_trip(switch_end: str, channel: NetdevChannel,
                      batches: AsyncIterator[list[Queued]]) -> None:
    """A punt from the switch's end reaches the channel and a packet-out comes back."""
    sw = _switch_socket(switch_end)
    sw.send(b"\x00\x01\x01" + FRAME)
    batch = await anext(batches)
    assert batch[0][0].frame == FRAME
    assert channel.send_packet(FRAME, 2)
    assert await _recv(sw) == b"\x00\x02" + FRAME
    sw.close()


async def _down_up_and_recreate(switch_end: str, punt_end: str) -> None:
    channel = NetdevChannel(punt_end, SCHEMA, 16)
    await channel.start()
    batches = channel.packet_batches(8)
    try:
        _ip("link", "set", punt_end, "down")  # down and up: read again, errors counted
        _ip("link", "set", punt_end, "up")
        await until(lambda: channel.counters["rx_error_ENETDOWN"] == 1)
        await _round_trip(switch_end, channel, batches)

        _ip("link", "del", switch_end)  # gone: packet-outs fail, counted, never raise
        await until(lambda: not channel.up)
        assert not channel.send_packet(FRAME, 2)
        assert channel.counters["packet_out_unavailable"] == 1

        _make_veth(switch_end, punt_end)  # back, with a new ifindex
        await until(lambda: channel.up)
        await _round_trip(switch_end, channel, batches)
        assert channel.counters["device_lost"] == 1
    finally:
        await channel.close()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_device_that_goes_down_or_away_and_comes_back_is_read_again(veth, loop) -> None:
    """On both loops: uvloop stops watching a socket that reported an error (libuv)."""
    import uvloop

    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_down_up_and_recreate(*veth))


# -- a whole session ---------------------------------------------------------------------------


def _config(address: str, device: str):  # type: ignore[no-untyped-def]
    return config(address, f'[punt]\nchannel = "netdev"\ndevice = "{device}"\n')


class _Softswitch:
    """The in-process softswitch with ports 1-2 in memory and port 255 on the veth, started
    without a CPU port (simple_switch_grpc without --cpu-port)."""

    def __init__(self, cpu_device: str) -> None:
        from softswitch.ports import PacketSocketPort, QueuePort
        from softswitch.switch import SoftSwitch

        self.ports = {1: QueuePort(1), 2: QueuePort(2)}
        self.softswitch = SoftSwitch([*self.ports.values(), PacketSocketPort(255, cpu_device)],
                                     cpu_port=None, device_id=DEVICE_ID, sweep_period=0)
        self.address = ""

    async def __aenter__(self) -> _Softswitch:
        self.address = f"127.0.0.1:{await self.softswitch.start('127.0.0.1:0')}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.softswitch.stop()

    def entries(self) -> int:
        table = self.softswitch.device.pipeline.tables["FtIngress.flow_v4"]
        return len(table)


@pytest.mark.asyncio
async def test_a_session_on_the_netdev_channel_offloads_and_survives_a_punt_flood(
        veth, tmp_path) -> None:
    from controller.edges.daemon import SwitchSession

    switch_end, punt_end = veth
    async with _Softswitch(switch_end) as target:
        session = SwitchSession("r1", _config(target.address, punt_end), pipeline(1024),
                                state_dir=tmp_path, packet_queue=64)
        await session.start()
        flooding = True

        async def flood() -> None:  # a non-TCP punt flood into port 1, as fast as it goes
            while flooding:
                for _ in range(50):
                    target.ports[1].inject(FLOOD)
                await asyncio.sleep(0)

        task = asyncio.create_task(flood())
        try:
            out2 = target.ports[2]
            for port, frame in handshake(40000):
                target.ports[port].inject(frame)
            await until(lambda: session.router.offload.installed() == 1, timeout=30)
            assert target.entries() == 2  # both directions in the switch's table
        finally:
            flooding = False
            await task
        sent = [Ether(f) for f in out2.drain()]
        syn = [f for f in sent if TCP in f and f[TCP].flags == "S"]
        assert syn and syn[0][IP].ttl == 63  # forwarded by the router through a packet-out
        stats = session.snapshot()["stats"]
        assert stats["punt_channel"]["channel"] == "netdev"
        assert stats["punt_channel"]["counters"]["packet_in"] > 3
        assert stats["punt_path"]["packet_out"]["count"] > 0
        assert stats["punts"]["miss"] > 50  # the flood reached the controller too
        await session.stop()

        # a restart adopts the entries the state file recorded: the flow never leaves hardware
        session = SwitchSession("r1", _config(target.address, punt_end), pipeline(1024),
                                state_dir=tmp_path)
        await session.start()
        try:
            assert session.counters["adopted"] == 2 and target.entries() == 2
            for port, frame in handshake(40001):
                target.ports[port].inject(frame)
            await until(lambda: session.router.offload.installed() == 1, timeout=30)
            assert target.entries() == 4
        finally:
            await session.stop()
