"""Read: wildcards, one key, default entries, counters, time since last hit, chunked responses."""

from __future__ import annotations

import grpc
import pytest
from finsy.proto import p4r

from softswitch.p4runtime_server import READ_CHUNK
from tests.softswitch.p4rt_support import (
    DEVICE_ID,
    FLOW,
    FWD,
    PORT_COUNTER,
    REGISTER,
    ROUTE,
    flow_entry,
    running_server,
    update,
)


@pytest.fixture
async def h():
    async with running_server() as harness:
        await harness.push_pipeline()
        await harness.write(*(update("INSERT", flow_entry(dst=i, out_port=i + 1,
                                                          idle_timeout_ns=10**9))
                              for i in range(3)))
        yield harness


def table_entry(**fields) -> p4r.Entity:
    return p4r.Entity(table_entry=p4r.TableEntry(**fields))


async def test_read_all_tables_and_one_table(h) -> None:
    everything = await h.read(table_entry(table_id=0))
    assert len(everything) == 3
    one_table = await h.read(table_entry(table_id=FLOW))
    assert sorted(e.table_entry.match[1].exact.value for e in one_table) == [b"\0", b"\1", b"\2"]


async def test_read_returns_what_was_written_in_canonical_form(h) -> None:
    written = flow_entry(dst=1, out_port=2, idle_timeout_ns=10**9)
    (read,) = await h.read(p4r.Entity(table_entry=flow_entry(dst=1, out_port=None)))
    assert read.table_entry.match[0].exact.value == b"\x01"  # canonical, not b"\0\1"
    assert read.table_entry.action.action.action_id == FWD
    assert read.table_entry.action.action.params[0].value == b"\x02"
    assert read.table_entry.idle_timeout_ns == written.idle_timeout_ns
    assert not read.table_entry.HasField("counter_data")


async def test_entry_metadata_is_kept_replaced_and_carried_over(h) -> None:
    await h.write(update("MODIFY", flow_entry(dst=1, metadata=b"cookie-1",
                                              controller_metadata=7)))
    await h.write(update("INSERT", flow_entry(dst=5, metadata=b"cookie-5")))
    await h.push_pipeline(action=p4r.SetForwardingPipelineConfigRequest.RECONCILE_AND_COMMIT)
    await h.write(update("MODIFY", flow_entry(dst=5)))
    read = {e.table_entry.match[1].exact.value: e.table_entry
            for e in await h.read(table_entry(table_id=FLOW))}
    assert (read[b"\1"].metadata, read[b"\1"].controller_metadata) == (b"cookie-1", 7)
    assert read[b"\5"].metadata == b"" and read[b"\0"].metadata == b""
    await h.write(update("DELETE", flow_entry(dst=1)))
    await h.write(update("INSERT", flow_entry(dst=1)))
    (again,) = await h.read(p4r.Entity(table_entry=flow_entry(dst=1, out_port=None)))
    assert again.table_entry.metadata == b""


async def test_read_of_missing_key_is_empty(h) -> None:
    assert await h.read(p4r.Entity(table_entry=flow_entry(dst=77, out_port=None))) == []


async def test_counter_data_and_time_since_last_hit_on_request(h) -> None:
    entry = h.device.pipeline.tables["ingress.flow"].get((1, 1), 0)
    entry.packets, entry.bytes = 4, 256
    h.clock.now += 1.5
    request = flow_entry(dst=1, out_port=None)
    request.counter_data.SetInParent()
    request.time_since_last_hit.SetInParent()
    (read,) = await h.read(p4r.Entity(table_entry=request))
    assert (read.table_entry.counter_data.packet_count,
            read.table_entry.counter_data.byte_count) == (4, 256)
    assert read.table_entry.time_since_last_hit.elapsed_ns == 1_500_000_000


async def test_time_since_last_hit_on_table_without_timeout_is_invalid(h) -> None:
    request = p4r.TableEntry(table_id=ROUTE)
    request.time_since_last_hit.SetInParent()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await h.read(p4r.Entity(table_entry=request))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_read_default_entry(h) -> None:
    (read,) = await h.read(table_entry(table_id=ROUTE, is_default_action=True))
    assert read.table_entry.is_default_action
    assert read.table_entry.action.action.action_id == 11  # ingress.drop


async def test_direct_counter_wildcard_and_one_key(h) -> None:
    entry = h.device.pipeline.tables["ingress.flow"].get((1, 2), 0)
    entry.packets, entry.bytes = 1, 60
    everything = await h.read(p4r.Entity(direct_counter_entry=p4r.DirectCounterEntry(
        table_entry=p4r.TableEntry(table_id=FLOW))))
    assert len(everything) == 3
    (one,) = await h.read(p4r.Entity(direct_counter_entry=p4r.DirectCounterEntry(
        table_entry=flow_entry(dst=2, out_port=None))))
    assert (one.direct_counter_entry.data.packet_count,
            one.direct_counter_entry.data.byte_count) == (1, 60)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await h.read(p4r.Entity(direct_counter_entry=p4r.DirectCounterEntry(
            table_entry=p4r.TableEntry(table_id=ROUTE))))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_counter_read_all_indices_and_one(h) -> None:
    h.device.pipeline.counters["ingress.port_counter"].write(3, 9, 900)
    cells = await h.read(p4r.Entity(counter_entry=p4r.CounterEntry(counter_id=PORT_COUNTER)))
    assert [c.counter_entry.index.index for c in cells] == [0, 1, 2, 3]
    (cell,) = await h.read(p4r.Entity(counter_entry=p4r.CounterEntry(
        counter_id=PORT_COUNTER, index=p4r.Index(index=3))))
    assert (cell.counter_entry.data.packet_count, cell.counter_entry.data.byte_count) == (9, 900)
    assert len(await h.read(p4r.Entity(counter_entry=p4r.CounterEntry()))) == 4


@pytest.mark.parametrize("entity", [
    table_entry(table_id=999),
    p4r.Entity(counter_entry=p4r.CounterEntry(counter_id=999)),
    p4r.Entity(counter_entry=p4r.CounterEntry(counter_id=PORT_COUNTER, index=p4r.Index(index=-1))),
    p4r.Entity(direct_counter_entry=p4r.DirectCounterEntry()),
    p4r.Entity(),
])
async def test_bad_read_ids_are_invalid_argument(h, entity) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await h.read(entity)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_read_past_the_end_of_a_counter_is_out_of_range(h) -> None:
    """The spec's CounterEntry (§9.3.2); BMv2 answers UNKNOWN."""
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await h.read(p4r.Entity(counter_entry=p4r.CounterEntry(counter_id=PORT_COUNTER,
                                                                index=p4r.Index(index=4))))
    assert exc.value.code() == grpc.StatusCode.OUT_OF_RANGE


async def test_read_wrong_device_and_unsupported_entity(h) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in h.stub.Read(p4r.ReadRequest(device_id=DEVICE_ID + 1,
                                                   entities=[table_entry()])):
            pass
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await h.read(p4r.Entity(direct_meter_entry=p4r.DirectMeterEntry()))
    assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_register_read_all_and_one_cell(h) -> None:
    h.device.pipeline.registers["ingress.seen"].write(2, 0xABC)
    cells = await h.read(p4r.Entity(register_entry=p4r.RegisterEntry(register_id=REGISTER)))
    assert [c.register_entry.data.bitstring for c in cells] == [b"\0", b"\0", b"\x0a\xbc", b"\0"]
    (cell,) = await h.read(p4r.Entity(register_entry=p4r.RegisterEntry(
        index=p4r.Index(index=2))))
    assert (cell.register_entry.register_id, cell.register_entry.index.index) == (REGISTER, 2)


async def test_64k_entry_read_arrives_in_chunks_under_the_client_limit() -> None:
    async with running_server(table_size=65536) as h:
        await h.push_pipeline()
        for start in range(0, 65536, 8192):
            await h.write(*(update("INSERT", flow_entry(port=i >> 16 or 1, dst=i,
                                                        idle_timeout_ns=10**9))
                            for i in range(start, start + 8192)))
        sizes, count = [], 0
        async for response in h.stub.Read(p4r.ReadRequest(
                device_id=DEVICE_ID, entities=[table_entry(table_id=FLOW)])):
            sizes.append(response.ByteSize())
            count += len(response.entities)
        assert count == 65536
        assert len(sizes) > 1 and max(sizes) <= READ_CHUNK
