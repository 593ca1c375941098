"""The server over the real interpreter: a hand-made BMv2 JSON router and its P4Info."""

from __future__ import annotations

import grpc
import pytest
from finsy.proto import p4r, rpc_code
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from softswitch.ports import QueuePort
from tests.softswitch.p4json import router_program
from tests.softswitch.p4rt_support import (
    Stream,
    exact,
    serving_program,
    update,
    write_errors,
)

ROUTER_P4INFO = """
tables { preamble { id: 1 name: "ingress.fwd" }
  match_fields { id: 1 name: "hdr.ipv4.dstAddr" bitwidth: 32 match_type: EXACT }
  action_refs { id: 1 } action_refs { id: 2 } action_refs { id: 3 }
  direct_resource_ids: 4 size: 1024 idle_timeout_behavior: NOTIFY_CONTROL }
actions { preamble { id: 1 name: "ingress.forward" }
  params { id: 1 name: "port" bitwidth: 9 } params { id: 2 name: "dmac" bitwidth: 48 }
  params { id: 3 name: "smac" bitwidth: 48 } }
actions { preamble { id: 2 name: "ingress.drop" } }
actions { preamble { id: 3 name: "NoAction" } }
direct_counters { preamble { id: 4 name: "ingress.fwd_counter" } spec { unit: BOTH }
  direct_table_id: 1 }
"""
DST = 0x0A000202
FRAME = bytes(Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:fe") /
              IP(src="10.0.1.1", dst="10.0.2.2", ttl=64) / UDP(sport=1, dport=2) / b"data")


@pytest.fixture
async def router():
    ports = [QueuePort(1), QueuePort(2)]
    async with serving_program(ports, ROUTER_P4INFO, router_program()) as (softswitch, stub, clock):
        yield softswitch, stub, ports, clock


def route(dst: int = DST, **fields) -> p4r.TableEntry:
    entry = p4r.TableEntry(table_id=1, match=[exact(1, dst.to_bytes(4, "big"))], **fields)
    entry.action.action.action_id = 1
    for pid, value in ((1, b"\x02"), (2, bytes.fromhex("020000000202")),
                       (3, bytes.fromhex("0200000002fe"))):
        entry.action.action.params.add(param_id=pid, value=value)
    return entry


async def test_written_entry_forwards_rewrites_and_counts(router) -> None:
    _, stub, (p1, p2), clock = router
    await stub.Write(p4r.WriteRequest(device_id=1, updates=[update("INSERT", route())]))
    clock.now += 1
    p1.inject(FRAME)
    (out,) = p2.drain()
    pkt = Ether(out)
    assert (pkt.dst, pkt.src, pkt[IP].ttl) == ("02:00:00:00:02:02", "02:00:00:00:02:fe", 63)
    request = route()
    request.ClearField("action")
    request.counter_data.SetInParent()
    request.time_since_last_hit.SetInParent()
    clock.now += 0.25
    [response] = [r async for r in stub.Read(p4r.ReadRequest(
        device_id=1, entities=[p4r.Entity(table_entry=request)]))]
    (entity,) = response.entities
    assert entity.table_entry.counter_data.packet_count == 1
    assert entity.table_entry.counter_data.byte_count == len(FRAME)
    assert entity.table_entry.time_since_last_hit.elapsed_ns == 250_000_000
    assert entity.table_entry.action == route().action


async def test_real_table_errors_map_to_canonical_codes(router) -> None:
    _, stub, _, _ = router
    await stub.Write(p4r.WriteRequest(device_id=1, updates=[update("INSERT", route())]))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Write(p4r.WriteRequest(device_id=1, updates=[
            update("INSERT", route()), update("DELETE", route(dst=1))]))
    assert exc.value.code() == grpc.StatusCode.UNKNOWN
    assert [e.canonical_code for e in write_errors(exc.value)] == [rpc_code.ALREADY_EXISTS,
                                                                   rpc_code.NOT_FOUND]


async def test_idle_entry_is_notified_and_a_hit_keeps_it_quiet(router) -> None:
    softswitch, stub, (p1, _), clock = router
    stream = Stream(stub)
    await stream.primary(1)
    await stub.Write(p4r.WriteRequest(device_id=1, election_id=p4r.Uint128(low=1), updates=[
        update("INSERT", route(idle_timeout_ns=2 * 10**9))]))
    clock.now += 1.5
    p1.inject(FRAME)  # a hit restarts the idle time
    clock.now += 1.5
    softswitch.server.sweep()
    with pytest.raises(TimeoutError):
        await stream.recv(timeout=0.1)
    clock.now += 1
    softswitch.server.sweep()
    (note,) = (await stream.recv()).idle_timeout_notification.table_entry
    assert note.match == route().match and note.idle_timeout_ns == 2 * 10**9
