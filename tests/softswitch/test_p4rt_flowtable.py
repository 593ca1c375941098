"""The softswitch target with flowtable.p4 (p4c's output in p4src/build):
what the controller relies on, over P4Runtime and in-process ports."""

from __future__ import annotations

import grpc
import pytest
from finsy.proto import p4i, p4r, p4r_grpc
from google.protobuf import text_format
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from controller.edges.pipeline_files import DEVICE_CONFIG, P4INFO
from softswitch.ports import QueuePort
from softswitch.switch import SoftSwitch
from tests.softswitch.p4rt_support import FakeClock, Stream, exact, packet_out, update, wait_for

DEVICE_ID, ELECTION = 1, p4r.Uint128(low=1)
FRAME = Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:fe") / IP(
    src="10.0.1.1", dst="10.0.2.2", ttl=64) / UDP(sport=1000, dport=53) / (b"q" * 20)


def table_id(p4info: p4i.P4Info, name: str) -> int:
    return next(t.preamble.id for t in p4info.tables if t.preamble.name == name)


def action_id(p4info: p4i.P4Info, name: str) -> int:
    return next(a.preamble.id for a in p4info.actions if a.preamble.name == name)


@pytest.fixture
async def target():
    p4info = text_format.Parse(P4INFO.read_text(), p4i.P4Info())
    ports = [QueuePort(1), QueuePort(2)]
    clock = FakeClock()
    softswitch = SoftSwitch(ports, device_id=DEVICE_ID, clock=clock, sweep_period=0)
    port = await softswitch.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = p4r_grpc.P4RuntimeStub(channel)
    stream = Stream(stub)
    await stream.primary(1)
    await stub.SetForwardingPipelineConfig(p4r.SetForwardingPipelineConfigRequest(
        device_id=DEVICE_ID, election_id=ELECTION,
        action=p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
        config=p4r.ForwardingPipelineConfig(
            p4info=p4info, p4_device_config=DEVICE_CONFIG.read_bytes())))
    try:
        yield softswitch, stub, stream, ports, clock, p4info
    finally:
        await channel.close()
        await softswitch.stop()


def nat_flow(p4info: p4i.P4Info, **fields) -> p4r.TableEntry:
    """10.0.1.1:1000 -> 10.0.2.2:53 from port 1, SNAT to 192.0.2.1:40000, out of port 2."""
    key = [(1, 1, 2), (2, 0x0A000101, 4), (3, 0x0A000202, 4), (4, 17, 1), (5, 1000, 2),
           (6, 53, 2)]
    entry = p4r.TableEntry(table_id=table_id(p4info, "FtIngress.flow_v4"),
                           match=[exact(f, v.to_bytes(n, "big")) for f, v, n in key], **fields)
    entry.action.action.action_id = action_id(p4info, "FtIngress.forward_v4")
    params = [(1, 2, 2), (2, 0x0200000002FE, 6), (3, 0x020000000202, 6), (4, 0xC0000201, 4),
              (5, 0x0A000202, 4), (6, 40000, 2), (7, 53, 2), (8, 1500, 2)]
    for pid, value, n in params:
        entry.action.action.params.add(param_id=pid, value=value.to_bytes(n, "big"))
    return entry


def key_values(entry: p4r.TableEntry) -> list[tuple[int, int]]:
    return [(m.field_id, int.from_bytes(m.exact.value, "big")) for m in entry.match]


async def test_miss_is_punted_with_port_and_reason(target) -> None:
    _, _, stream, (p1, _), _, _ = target
    p1.inject(bytes(FRAME))
    packet = (await stream.recv()).packet
    assert packet.payload == bytes(FRAME)
    assert [(m.metadata_id, int.from_bytes(m.value, "big")) for m in packet.metadata] == [
        (1, 1), (2, 1)]  # ingress port 1, PUNT_MISS


async def test_offloaded_flow_is_rewritten_forwarded_and_counted(target) -> None:
    _, stub, _, (p1, p2), clock, p4info = target
    await stub.Write(p4r.WriteRequest(device_id=DEVICE_ID, election_id=ELECTION, updates=[
        update("INSERT", nat_flow(p4info, idle_timeout_ns=30 * 10**9))]))
    clock.now += 1
    p1.inject(bytes(FRAME))
    (out,) = p2.drain()
    pkt = Ether(out)
    assert (pkt.src, pkt.dst) == ("02:00:00:00:02:fe", "02:00:00:00:02:02")
    assert (pkt[IP].src, pkt[IP].ttl, pkt[UDP].sport) == ("192.0.2.1", 63, 40000)
    fixed = Ether(out)
    del fixed[IP].chksum, fixed[UDP].chksum
    fixed = Ether(bytes(fixed))
    assert (pkt[IP].chksum, pkt[UDP].chksum) == (fixed[IP].chksum, fixed[UDP].chksum)
    request = nat_flow(p4info)
    request.ClearField("action")
    request.counter_data.SetInParent()
    [response] = [r async for r in stub.Read(p4r.ReadRequest(
        device_id=DEVICE_ID, entities=[p4r.Entity(table_entry=request)]))]
    counters = response.entities[0].table_entry.counter_data
    assert (counters.packet_count, counters.byte_count) == (1, len(FRAME))


async def test_fin_of_an_offloaded_flow_is_punted(target) -> None:
    _, stub, stream, (p1, p2), _, p4info = target
    entry = nat_flow(p4info)
    entry.match[3].exact.value = b"\x06"
    await stub.Write(p4r.WriteRequest(device_id=DEVICE_ID, election_id=ELECTION,
                                      updates=[update("INSERT", entry)]))
    fin = Ether(bytes(FRAME[Ether])[:14]) / IP(src="10.0.1.1", dst="10.0.2.2") / TCP(
        sport=1000, dport=53, flags="FA")
    p1.inject(bytes(fin))
    packet = (await stream.recv()).packet
    assert int.from_bytes(packet.metadata[1].value, "big") == 2  # PUNT_TCP_FIN_RST
    assert p2.drain() == []


async def test_packet_out_leaves_its_port_unchanged(target) -> None:
    _, _, stream, (_, p2), _, _ = target
    stream.send(packet=packet_out(bytes(FRAME), egress_port=2))
    await wait_for(lambda: not p2.sent.empty())
    assert p2.drain() == [bytes(FRAME)]


async def test_idle_flow_is_notified(target) -> None:
    softswitch, stub, stream, _, clock, p4info = target
    await stub.Write(p4r.WriteRequest(device_id=DEVICE_ID, election_id=ELECTION, updates=[
        update("INSERT", nat_flow(p4info, idle_timeout_ns=2 * 10**9))]))
    clock.now += 2
    softswitch.server.sweep()
    (note,) = (await stream.recv()).idle_timeout_notification.table_entry
    assert key_values(note) == key_values(nat_flow(p4info))  # canonical bytes: compare values
