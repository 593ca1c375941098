"""Write: inserts, modifies, deletes, default entries, counters, batches and their error codes."""

from __future__ import annotations

import grpc
import pytest
from finsy.proto import p4d, p4r, rpc_code

from tests.softswitch.p4rt_support import (
    ACL,
    DEVICE_ID,
    DROP,
    FLOW,
    FLOW_COUNTER,
    FWD,
    NO_ACTION,
    PORT_COUNTER,
    REGISTER,
    ROUTE,
    exact,
    flow_entry,
    running_server,
    update,
    write_errors,
)


@pytest.fixture
async def h():
    async with running_server() as harness:
        await harness.push_pipeline()
        yield harness


def flow_table(h):
    return h.device.pipeline.tables["ingress.flow"]


async def write_codes(h, *updates: p4r.Update) -> list[int]:
    """Canonical code per update of a batch (all OK when the Write succeeds)."""
    try:
        await h.write(*updates)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.UNKNOWN
        return [e.canonical_code for e in write_errors(exc)]
    return [rpc_code.OK] * len(updates)


async def test_insert_stores_key_action_params_and_ttl(h) -> None:
    await h.write(update("INSERT", flow_entry(port=3, dst=0x0A000002, out_port=7,
                                             idle_timeout_ns=5_000_000_000)))
    (entry,) = flow_table(h).entries()
    assert entry.key == (3, 0x0A000002)
    assert (entry.action, entry.params, entry.ttl_ns) == ("ingress.fwd", (7,), 5_000_000_000)
    assert entry.last_hit == h.clock.now


async def test_canonical_and_padded_byte_strings_are_the_same_key(h) -> None:
    await h.write(update("INSERT", flow_entry(port=1)))
    short = p4r.TableEntry(table_id=FLOW, match=[exact(1, b"\x01"), exact(2, b"\x0a\0\0\x01")])
    assert await write_codes(h, update("DELETE", short)) == [rpc_code.OK]


async def test_duplicate_insert_is_already_exists(h) -> None:
    await h.write(update("INSERT", flow_entry()))
    assert await write_codes(h, update("INSERT", flow_entry())) == [rpc_code.ALREADY_EXISTS]


async def test_modify_and_delete_of_missing_entry_are_not_found(h) -> None:
    codes = await write_codes(h, update("MODIFY", flow_entry()), update("DELETE", flow_entry()))
    assert codes == [rpc_code.NOT_FOUND, rpc_code.NOT_FOUND]


async def test_modify_changes_action_and_delete_removes(h) -> None:
    await h.write(update("INSERT", flow_entry(out_port=2)))
    await h.write(update("MODIFY", flow_entry(out_port=9)))
    assert flow_table(h).entries()[0].params == (9,)
    await h.write(update("DELETE", flow_entry(out_port=None)))
    assert len(flow_table(h)) == 0


async def test_full_table_is_resource_exhausted_and_batch_continues(h) -> None:
    """The spec's code where BMv2 says UNKNOWN; later updates of the batch still apply."""
    inserts = [update("INSERT", flow_entry(dst=i)) for i in range(5)]
    codes = await write_codes(h, *inserts, update("DELETE", flow_entry(dst=0)))
    assert codes == [rpc_code.OK] * 4 + [rpc_code.RESOURCE_EXHAUSTED, rpc_code.OK]
    assert len(flow_table(h)) == 3


async def test_batch_reports_one_error_per_update_with_message(h) -> None:
    try:
        await h.write(update("INSERT", flow_entry(dst=1)), update("INSERT", flow_entry(dst=1)))
    except grpc.aio.AioRpcError as exc:
        errors = write_errors(exc)
    else:
        pytest.fail("the duplicate insert was accepted")
    assert [e.canonical_code for e in errors] == [rpc_code.OK, rpc_code.ALREADY_EXISTS]
    assert "exists" in errors[1].message


def bad_entries() -> list[p4r.TableEntry]:
    missing = flow_entry()
    del missing.match[1]
    unknown_action = flow_entry()
    unknown_action.action.action.action_id = 999
    no_action = flow_entry(out_port=None)
    return [
        p4r.TableEntry(table_id=999),
        missing,
        unknown_action,
        no_action,
        flow_entry(priority=5),
        flow_entry(time_since_last_hit=p4r.TableEntry.IdleTimeout()),
        p4r.TableEntry(table_id=ACL, counter_data=p4r.CounterData(packet_count=1),
                       priority=1, action=p4r.TableAction(action=p4r.Action(action_id=DROP))),
        flow_entry(meter_config=p4r.MeterConfig(cir=1, cburst=1, pir=1, pburst=1)),
    ]


@pytest.mark.parametrize("entry", bad_entries())
async def test_malformed_entries_are_invalid_argument(h, entry) -> None:
    assert await write_codes(h, update("INSERT", entry)) == [rpc_code.INVALID_ARGUMENT]


def out_of_range_entries() -> list[p4r.TableEntry]:
    wide = flow_entry()
    wide.match[0].exact.value = b"\x02\x00"  # 512 does not fit in 9 bits
    return [wide, flow_entry(out_port=600),
            p4r.TableEntry(table_id=FLOW, match=[exact(1, b""), exact(2, b"\1")])]


@pytest.mark.parametrize("entry", out_of_range_entries())
async def test_byte_strings_too_wide_or_empty_are_out_of_range(h, entry) -> None:
    """The spec's Bytestrings (§8.3); BMv2 answers INVALID_ARGUMENT, or takes b"" as 0."""
    assert await write_codes(h, update("INSERT", entry)) == [rpc_code.OUT_OF_RANGE]


async def test_default_only_action_in_an_entry_is_permission_denied(h) -> None:
    """The spec's Action Specification, as PI's validate_action."""
    default_only = flow_entry(out_port=None)
    default_only.action.action.action_id = NO_ACTION
    assert await write_codes(h, update("INSERT", default_only)) == [rpc_code.PERMISSION_DENIED]


async def test_idle_timeout_on_table_without_support_is_invalid_argument(h) -> None:
    entry = p4r.TableEntry(table_id=ROUTE, idle_timeout_ns=1_000_000_000)
    entry.match.add(field_id=1).lpm.CopyFrom(p4r.FieldMatch.LPM(value=b"\x0a\0\0\0",
                                                                prefix_len=8))
    entry.action.action.action_id = DROP
    assert await write_codes(h, update("INSERT", entry)) == [rpc_code.INVALID_ARGUMENT]


def acl_entry(priority: int = 10, **matches) -> p4r.TableEntry:
    entry = p4r.TableEntry(table_id=ACL, priority=priority)
    if "ternary" in matches:
        value, mask = matches["ternary"]
        entry.match.add(field_id=1).ternary.CopyFrom(p4r.FieldMatch.Ternary(value=value,
                                                                            mask=mask))
    if "lpm" in matches:
        value, plen = matches["lpm"]
        entry.match.add(field_id=2).lpm.CopyFrom(p4r.FieldMatch.LPM(value=value,
                                                                    prefix_len=plen))
    if "range" in matches:
        low, high = matches["range"]
        entry.match.add(field_id=3).range.CopyFrom(p4r.FieldMatch.Range(low=low, high=high))
    if "optional" in matches:
        entry.match.add(field_id=4).optional.value = matches["optional"]
    entry.action.action.action_id = DROP
    return entry


async def test_ternary_lpm_range_optional_keys_and_wildcards(h) -> None:
    await h.write(update("INSERT", acl_entry(ternary=(b"\x06", b"\xff"), lpm=(b"\x0a\0\0\0", 8),
                                             range=(b"\x00\x10", b"\x00\x20"), optional=b"\x05")))
    await h.write(update("INSERT", acl_entry(priority=1)))
    keys = sorted(e.key for e in h.device.pipeline.tables["ingress.acl"].entries())
    assert keys == [((0, 0), (0, 0), (0, 0xFFFF), (0, True)),
                    ((6, 0xFF), (0x0A000000, 8), (0x10, 0x20), (5, False))]


@pytest.mark.parametrize("entry", [
    acl_entry(priority=0),
    acl_entry(ternary=(b"\x07", b"\x06")),
    acl_entry(ternary=(b"\x00", b"\x00")),
    acl_entry(lpm=(b"\x0a\0\0\x01", 8)),
    acl_entry(lpm=(b"\0", 0)),
    acl_entry(lpm=(b"\x0a", 33)),
    acl_entry(range=(b"\x20", b"\x10")),
    acl_entry(range=(b"\0", b"\xff\xff")),
])
async def test_bad_ternary_lpm_range_priority_are_invalid_argument(h, entry) -> None:
    assert await write_codes(h, update("INSERT", entry)) == [rpc_code.INVALID_ARGUMENT]


async def test_default_entry_modify_and_reset(h) -> None:
    default = p4r.TableEntry(table_id=FLOW, is_default_action=True)
    default.action.action.action_id = DROP
    await h.write(update("MODIFY", default))
    assert flow_table(h).default_action == ("ingress.drop", ())
    await h.write(update("MODIFY", p4r.TableEntry(table_id=FLOW, is_default_action=True)))
    assert flow_table(h).default_action == ("NoAction", ())


async def test_default_entry_insert_and_const_default_are_refused(h) -> None:
    default = p4r.TableEntry(table_id=FLOW, is_default_action=True)
    default.action.action.action_id = DROP
    const = p4r.TableEntry(table_id=ROUTE, is_default_action=True)
    const.action.action.action_id = FWD
    const.action.action.params.add(param_id=1, value=b"\1")
    codes = await write_codes(h, update("INSERT", default), update("MODIFY", const))
    assert codes == [rpc_code.INVALID_ARGUMENT, rpc_code.PERMISSION_DENIED]


async def test_direct_counter_write_sets_entry_counters(h) -> None:
    await h.write(update("INSERT", flow_entry()))
    await h.write(update("MODIFY", p4r.DirectCounterEntry(
        table_entry=flow_entry(out_port=None),
        data=p4r.CounterData(packet_count=5, byte_count=500))))
    entry = flow_table(h).entries()[0]
    assert (entry.packets, entry.bytes) == (5, 500)
    missing = p4r.DirectCounterEntry(table_entry=flow_entry(dst=99, out_port=None))
    assert await write_codes(h, update("MODIFY", missing)) == [rpc_code.NOT_FOUND]
    assert await write_codes(h, update("INSERT", p4r.DirectCounterEntry(
        table_entry=flow_entry(out_port=None)))) == [rpc_code.INVALID_ARGUMENT]


async def test_counter_write_one_index_and_out_of_range(h) -> None:
    await h.write(update("MODIFY", p4r.CounterEntry(
        counter_id=PORT_COUNTER, index=p4r.Index(index=2),
        data=p4r.CounterData(packet_count=3, byte_count=4))))
    assert h.device.pipeline.counters["ingress.port_counter"].read(2) == (3, 4)
    codes = await write_codes(
        h, update("MODIFY", p4r.CounterEntry(counter_id=PORT_COUNTER, index=p4r.Index(index=4))),
        update("MODIFY", p4r.CounterEntry(counter_id=PORT_COUNTER, index=p4r.Index(index=-1))),
        update("MODIFY", p4r.CounterEntry(counter_id=FLOW_COUNTER)))
    # the spec's CounterEntry (§9.3.2): past the end OUT_OF_RANGE, negative INVALID_ARGUMENT
    assert codes == [rpc_code.OUT_OF_RANGE, rpc_code.INVALID_ARGUMENT, rpc_code.INVALID_ARGUMENT]


async def test_register_write_one_cell_all_cells_and_bad_ones(h) -> None:
    """BMv2 says UNIMPLEMENTED for registers; the softswitch writes them."""
    registers = h.device.pipeline.registers["ingress.seen"]
    await h.write(update("MODIFY", p4r.RegisterEntry(register_id=REGISTER,
                                                     data=p4d.P4Data(bitstring=b"\x07"))))
    await h.write(update("MODIFY", p4r.RegisterEntry(register_id=REGISTER,
                                                     index=p4r.Index(index=1),
                                                     data=p4d.P4Data(bitstring=b"\x0f\xff"))))
    assert [registers.read(i) for i in range(4)] == [7, 0xFFF, 7, 7]
    codes = await write_codes(
        h,
        update("MODIFY", p4r.RegisterEntry(register_id=REGISTER,
                                           data=p4d.P4Data(bitstring=b"\x10\x00"))),
        update("MODIFY", p4r.RegisterEntry(register_id=REGISTER, index=p4r.Index(index=4),
                                           data=p4d.P4Data(bitstring=b"\x01"))),
        update("MODIFY", p4r.RegisterEntry(register_id=REGISTER, data=p4d.P4Data(bool=True))),
        update("INSERT", p4r.RegisterEntry(register_id=REGISTER,
                                           data=p4d.P4Data(bitstring=b"\x01"))),
        update("MODIFY", p4r.RegisterEntry(data=p4d.P4Data(bitstring=b"\x01"))))
    assert codes == [rpc_code.OUT_OF_RANGE, rpc_code.OUT_OF_RANGE] + [rpc_code.INVALID_ARGUMENT] * 3
    assert registers.read(0) == 7


async def test_other_extern_writes_are_unimplemented(h) -> None:
    meter = p4r.Update(type=p4r.Update.MODIFY, entity=p4r.Entity(
        direct_meter_entry=p4r.DirectMeterEntry(table_entry=flow_entry(out_port=None))))
    assert await write_codes(h, meter) == [rpc_code.UNIMPLEMENTED]


async def test_update_without_type_is_invalid_argument_without_entity_unknown(h) -> None:
    """An update with no entity is PI's UNKNOWN ("Incorrect entity type"), whatever its type."""
    untyped = update("INSERT", flow_entry())
    untyped.type = p4r.Update.UNSPECIFIED
    codes = await write_codes(h, untyped, p4r.Update(type=p4r.Update.INSERT), p4r.Update())
    assert codes == [rpc_code.INVALID_ARGUMENT, rpc_code.UNKNOWN, rpc_code.UNKNOWN]


async def test_modify_restarts_the_ageing_timer(h) -> None:
    await h.write(update("INSERT", flow_entry(idle_timeout_ns=10**9)))
    h.clock.now += 5
    await h.write(update("MODIFY", flow_entry(idle_timeout_ns=2 * 10**9)))
    entry = flow_table(h).entries()[0]
    assert (entry.ttl_ns, entry.last_hit) == (2 * 10**9, h.clock.now)


@pytest.mark.parametrize("atomicity", [p4r.WriteRequest.ROLLBACK_ON_ERROR,
                                       p4r.WriteRequest.DATAPLANE_ATOMIC])
async def test_atomic_modes_are_unimplemented(h, atomicity) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await h.write(update("INSERT", flow_entry()), atomicity=atomicity)
    assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert len(flow_table(h)) == 0


async def test_write_without_pipeline_is_failed_precondition() -> None:
    async with running_server() as h:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await h.write(update("INSERT", flow_entry()))
        assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_write_to_wrong_device_is_not_found(h) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await h.stub.Write(p4r.WriteRequest(device_id=DEVICE_ID + 1,
                                            updates=[update("INSERT", flow_entry())]))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


async def test_election_id_without_stream_is_refused_like_pi(h) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await h.write(update("INSERT", flow_entry()), election_id=p4r.Uint128(low=1))
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
