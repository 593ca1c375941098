"""StreamChannel: arbitration, packet-out, packet-in, idle-timeout notifications."""

from __future__ import annotations

import grpc
import pytest
from finsy.proto import p4r, rpc_code

from tests.softswitch.p4rt_support import (
    DEVICE_ID,
    Stream,
    flow_entry,
    packet_out,
    running_server,
    update,
    wait_for,
)


@pytest.fixture
async def h():
    async with running_server() as harness:
        await harness.push_pipeline()
        yield harness


# --- arbitration ---------------------------------------------------------------------------------


async def test_first_connection_is_primary(h) -> None:
    reply = await Stream(h.stub).primary(5)
    assert reply.arbitration.status.code == rpc_code.OK
    assert reply.arbitration.election_id.low == 5
    assert reply.arbitration.device_id == DEVICE_ID


async def test_higher_id_takes_over_and_everyone_is_told(h) -> None:
    low, high = Stream(h.stub), Stream(h.stub)
    await low.primary(5)
    backup_reply = await Stream(h.stub).primary(3)
    assert backup_reply.arbitration.status.code == rpc_code.ALREADY_EXISTS
    assert backup_reply.arbitration.election_id.low == 5
    reply = await high.primary(9)
    assert reply.arbitration.status.code == rpc_code.OK
    told = await low.recv()
    assert told.arbitration.status.code == rpc_code.ALREADY_EXISTS
    assert told.arbitration.election_id.low == 9


async def test_primary_leaving_promotes_the_next(h) -> None:
    low, high = Stream(h.stub), Stream(h.stub)
    await low.primary(5)
    await high.primary(9)
    await low.recv()  # told it is now a backup
    high.call.cancel()
    promoted = await low.recv()
    assert promoted.arbitration.status.code == rpc_code.OK
    assert promoted.arbitration.election_id.low == 5


async def test_duplicate_election_id_is_invalid_argument(h) -> None:
    await Stream(h.stub).primary(5)
    second = Stream(h.stub)
    second.arbitrate(5)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await second.recv()
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_seventeenth_connection_is_resource_exhausted(h) -> None:
    for i in range(16):
        await Stream(h.stub).primary(i + 1)
    extra = Stream(h.stub)
    extra.arbitrate(100)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await extra.recv()
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_wrong_device_id_ends_the_stream(h) -> None:
    stream = Stream(h.stub)
    stream.arbitrate(1, device_id=DEVICE_ID + 1)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stream.recv()
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    stream = Stream(h.stub)
    await stream.primary(1)
    stream.arbitrate(1, device_id=DEVICE_ID + 1)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stream.recv()
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_writes_need_the_primary_election_id_once_a_stream_is_up(h) -> None:
    await Stream(h.stub).primary(9)
    await Stream(h.stub).primary(3)
    for election_id in (3, None):
        kwargs = {} if election_id is None else {"election_id": p4r.Uint128(low=election_id)}
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await h.write(update("INSERT", flow_entry()), **kwargs)
        assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert exc.value.details() == "Not primary"
    await h.write(update("INSERT", flow_entry()), election_id=p4r.Uint128(low=9))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await h.push_pipeline(election_id=p4r.Uint128(low=3))
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED


# --- packet I/O ----------------------------------------------------------------------------------


async def test_packet_out_injects_header_and_payload(h) -> None:
    stream = Stream(h.stub)
    await stream.primary(1)
    stream.send(packet=packet_out(b"hello", egress_port=3))
    stream.send(packet=packet_out(b"zero"))  # missing fields are zero-filled, as BMv2 does
    await wait_for(lambda: len(h.injected) == 2)
    assert h.injected == [(3 << 7).to_bytes(2, "big") + b"hello", b"\0\0zero"]


async def test_bad_packet_out_gets_a_stream_error(h) -> None:
    stream = Stream(h.stub)
    await stream.primary(1)
    bad = p4r.PacketOut(payload=b"x", metadata=[p4r.PacketMetadata(metadata_id=9, value=b"\1")])
    stream.send(packet=bad)
    reply = await stream.recv()
    assert reply.error.canonical_code == rpc_code.INVALID_ARGUMENT
    assert reply.error.packet_out.packet_out == bad
    wide = packet_out(b"x", egress_port=600)
    stream.send(packet=wide)
    assert (await stream.recv()).error.canonical_code == rpc_code.OUT_OF_RANGE  # Bytestrings
    assert h.injected == []
    assert h.device.counters.packet_out_errors == 2


async def test_ack_of_an_unknown_digest_gets_a_stream_error_naming_it(h) -> None:
    """The spec's Stream Error Reporting: INVALID_ARGUMENT, with the ack in the details."""
    stream = Stream(h.stub)
    await stream.primary(1)
    ack = p4r.DigestListAck(digest_id=77, list_id=5)
    stream.send(digest_ack=ack)
    reply = await stream.recv()
    assert reply.error.canonical_code == rpc_code.INVALID_ARGUMENT
    assert reply.error.digest_list_ack.digest_list_ack == ack


async def test_backup_packet_out_is_permission_denied(h) -> None:
    await Stream(h.stub).primary(9)
    backup = Stream(h.stub)
    await backup.primary(3)
    backup.send(packet=packet_out(b"x", egress_port=1))
    assert (await backup.recv()).error.canonical_code == rpc_code.PERMISSION_DENIED
    assert h.injected == []


async def test_packet_in_reaches_only_the_primary_with_metadata(h) -> None:
    primary, backup = Stream(h.stub), Stream(h.stub)
    await primary.primary(9)
    await backup.primary(3)
    h.server.send_packet_in(((7 << 7) | 2).to_bytes(2, "big") + b"payload")
    reply = await primary.recv()
    assert reply.packet.payload == b"payload"
    assert [(m.metadata_id, m.value) for m in reply.packet.metadata] == [(1, b"\x07"),
                                                                         (2, b"\x02")]
    with pytest.raises(TimeoutError):
        await backup.recv(timeout=0.2)


async def test_packet_in_without_primary_or_too_short_is_counted(h) -> None:
    h.server.send_packet_in(b"\0\0abc")
    assert h.server.counters.packet_in_dropped == 1
    await Stream(h.stub).primary(1)
    h.server.send_packet_in(b"\0")
    assert h.device.counters.packet_in_errors == 1


# --- idle timeout --------------------------------------------------------------------------------


async def test_idle_entry_notified_then_every_two_seconds_until_hit(h) -> None:
    stream = Stream(h.stub)
    await stream.primary(1)
    await h.write(update("INSERT", flow_entry(dst=1, idle_timeout_ns=2 * 10**9)),
                  update("INSERT", flow_entry(dst=2, idle_timeout_ns=2 * 10**9)),
                  update("INSERT", flow_entry(dst=3)), election_id=p4r.Uint128(low=1))
    h.clock.now += 1
    h.server.sweep()
    with pytest.raises(TimeoutError):
        await stream.recv(timeout=0.1)
    h.clock.now += 1
    h.server.sweep()
    note = (await stream.recv()).idle_timeout_notification
    assert sorted(e.match[1].exact.value for e in note.table_entry) == [b"\1", b"\2"]
    assert all(e.idle_timeout_ns == 2 * 10**9 and e.table_id == 1 for e in note.table_entry)
    assert note.timestamp > 0

    h.device.pipeline.tables["ingress.flow"].get((1, 1), 0).last_hit = h.clock.now + 0.5
    h.clock.now += 1
    h.server.sweep()  # 1 s after the first notification: nothing repeats yet
    with pytest.raises(TimeoutError):
        await stream.recv(timeout=0.1)
    h.clock.now += 1
    h.server.sweep()  # 2 s: dst=2 repeats; dst=1 was hit and is not idle yet
    (again,) = (await stream.recv()).idle_timeout_notification.table_entry
    assert again.match[1].exact.value == b"\2"


async def test_many_idle_entries_are_split_over_several_notifications(h, monkeypatch) -> None:
    monkeypatch.setattr("softswitch.p4rt_device.IDLE_CHUNK", 2)
    stream = Stream(h.stub)
    await stream.primary(1)
    await h.write(*(update("INSERT", flow_entry(dst=i, idle_timeout_ns=10**9)) for i in range(3)),
                  election_id=p4r.Uint128(low=1))
    h.clock.now += 1
    h.server.sweep()
    sizes = [len((await stream.recv()).idle_timeout_notification.table_entry) for _ in range(2)]
    assert sizes == [2, 1]
    assert h.server.counters.idle_notifications_sent == 2


async def test_sweeper_task_runs_on_its_period() -> None:
    async with running_server(sweep_period=0.05) as h:
        await h.push_pipeline()
        stream = Stream(h.stub)
        await stream.primary(1)
        await h.write(update("INSERT", flow_entry(idle_timeout_ns=10**9)),
                      election_id=p4r.Uint128(low=1))
        h.clock.now += 2
        reply = await stream.recv()
        assert len(reply.idle_timeout_notification.table_entry) == 1
