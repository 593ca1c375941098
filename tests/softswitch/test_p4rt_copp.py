"""CoPP on the softswitch with the compiled flowtable.p4: FtIngress.punt_meter configured over
P4Runtime drops the punts over its rate in the switch and FtIngress.punt_drops counts them.

Needs the outputs compiled from the current p4src/flowtable.p4 (skips until they are imported).
"""

from __future__ import annotations

import grpc
from finsy.proto import p4i, p4r, p4r_grpc
from google.protobuf import text_format
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from softswitch.ports import QueuePort
from softswitch.switch import SoftSwitch
from tests.p4build import require_current
from tests.softswitch.p4rt_support import FakeClock, Stream, update

DEVICE_ID, ELECTION = 1, p4r.Uint128(low=1)
PUNT_MISS = 1
FRAME = bytes(Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:fe") / IP(
    src="10.0.1.1", dst="10.0.2.2", ttl=64) / UDP(sport=1000, dport=53) / (b"q" * 20))


def extern_id(entities, name: str) -> int:
    return next(e.preamble.id for e in entities if e.preamble.name == name)


async def test_punts_over_the_meter_rate_are_dropped_in_the_switch_and_counted() -> None:
    compiled = require_current("p4src/flowtable.p4")
    p4info = text_format.Parse(compiled.p4info.read_text(), p4i.P4Info())
    meter_id = extern_id(p4info.meters, "FtIngress.punt_meter")
    drops_id = extern_id(p4info.counters, "FtIngress.punt_drops")
    port = QueuePort(1)
    clock = FakeClock()
    softswitch = SoftSwitch([port], device_id=DEVICE_ID, clock=clock, sweep_period=0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{await softswitch.start('127.0.0.1:0')}")
    try:
        stub = p4r_grpc.P4RuntimeStub(channel)
        stream = Stream(stub)
        await stream.primary(1)
        await stub.SetForwardingPipelineConfig(p4r.SetForwardingPipelineConfigRequest(
            device_id=DEVICE_ID, election_id=ELECTION,
            action=p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
            config=p4r.ForwardingPipelineConfig(p4info=p4info,
                                                p4_device_config=compiled.json.read_bytes())))
        port.inject(FRAME)  # no MeterConfig yet: GREEN, punted
        assert (await stream.recv()).packet.payload == FRAME
        await stub.Write(p4r.WriteRequest(device_id=DEVICE_ID, election_id=ELECTION, updates=[
            update("MODIFY", p4r.MeterEntry(
                meter_id=meter_id, index=p4r.Index(index=PUNT_MISS),
                config=p4r.MeterConfig(cir=10, cburst=2, pir=10, pburst=2)))]))
        for _ in range(5):  # one instant: the burst of 2 passes, 3 are over the rate
            port.inject(FRAME)
        assert [(await stream.recv()).packet.payload for _ in range(2)] == [FRAME] * 2
        cell = p4r.CounterEntry(counter_id=drops_id, index=p4r.Index(index=PUNT_MISS))
        read = stub.Read(p4r.ReadRequest(device_id=DEVICE_ID,
                                         entities=[p4r.Entity(counter_entry=cell)]))
        response = await read.read()
        data = response.entities[0].counter_entry.data
        assert (data.packet_count, data.byte_count) == (3, 3 * len(FRAME))
        assert softswitch.switch.counters.to_cpu == 3
        stream.close()
    finally:
        await channel.close()
        await softswitch.stop()
