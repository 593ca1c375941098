"""The sans-IO pieces: value codec, controller headers, arbitration and the idle schedule."""

from __future__ import annotations

import pytest
from finsy.proto import p4r, rpc_code
from hypothesis import given
from hypothesis import strategies as st

from softswitch.p4rt_arbitration import Arbitration
from softswitch.p4rt_codec import (
    ActionSchema,
    FieldSchema,
    P4RTError,
    TableSchema,
    decode_action,
    decode_match,
    decode_value,
    encode_value,
    pack_header,
    unpack_header,
)
from softswitch.p4rt_idle import IdleSchedule


@given(st.integers(1, 160).flatmap(lambda w: st.tuples(st.just(w), st.integers(0, 2**w - 1))))
def test_values_round_trip_in_canonical_form(width_and_value) -> None:
    width, value = width_and_value
    data = encode_value(value)
    assert decode_value(data, width, "f") == value
    assert data == b"\0" or data[0] != 0
    assert decode_value(data.rjust((width + 7) // 8 + 2, b"\0"), width, "f") == value


@pytest.mark.parametrize(("data", "width"), [(b"", 8), (b"\x02\x00", 9), (b"\x01\x00", 8)])
def test_values_that_do_not_fit_are_out_of_range(data, width) -> None:
    """The spec's Bytestrings section: OUT_OF_RANGE (BMv2: INVALID_ARGUMENT, or 0 for empty)."""
    with pytest.raises(P4RTError) as exc:
        decode_value(data, width, "f")
    assert exc.value.code == rpc_code.OUT_OF_RANGE


FIELDS = (FieldSchema(1, "port", 9), FieldSchema(2, "reason", 3), FieldSchema(3, "flag", 1))
EXACT = TableSchema(1, "t", FIELDS, {7: 0}, 0, 8, False, None)
ACTIONS = {7: ActionSchema(7, "a", FIELDS)}


def outcome(decode, *args, **kwargs):  # type: ignore[no-untyped-def]
    try:
        return decode(*args, **kwargs)
    except P4RTError as exc:
        return exc.code


values = st.lists(st.binary(max_size=3), min_size=3, max_size=3)


@given(values)
def test_match_fast_path_and_general_path_agree(data) -> None:
    """Fields in P4Info order take the batch fast path; reversed, the general one."""
    matches = [p4r.FieldMatch(field_id=f.id, exact=p4r.FieldMatch.Exact(value=v))
               for f, v in zip(FIELDS, data, strict=True)]
    assert outcome(decode_match, EXACT, matches) == outcome(decode_match, EXACT, matches[::-1])


@given(values)
def test_action_fast_path_and_general_path_agree(data) -> None:
    params = [p4r.Action.Param(param_id=f.id, value=v) for f, v in zip(FIELDS, data, strict=True)]
    in_order = p4r.Action(action_id=7, params=params)
    reversed_ = p4r.Action(action_id=7, params=params[::-1])
    assert (outcome(decode_action, EXACT, ACTIONS, in_order, default=False)
            == outcome(decode_action, EXACT, ACTIONS, reversed_, default=False))


@given(st.integers(0, 511), st.integers(0, 7), st.integers(0, 1), st.binary(max_size=8))
def test_controller_header_packs_and_unpacks_msb_first(port, reason, flag, payload) -> None:
    header = pack_header(FIELDS, [p4r.PacketMetadata(metadata_id=i, value=encode_value(v))
                                  for i, v in ((1, port), (2, reason), (3, flag))])
    assert len(header) == 2
    assert int.from_bytes(header, "big") == (port << 7) | (reason << 4) | (flag << 3)
    packet = p4r.PacketIn()
    assert unpack_header(FIELDS, header + payload, packet.metadata) == 2
    assert [(m.metadata_id, decode_value(m.value, 9, "m")) for m in packet.metadata] == [
        (1, port), (2, reason), (3, flag)]


def test_arbitration_primary_is_highest_and_changes_notify_everyone() -> None:
    arb = Arbitration(max_connections=3)
    a, b, c = object(), object(), object()
    assert arb.arbitrate(a, 5) == [a]
    assert arb.arbitrate(b, 3) == [b]  # a backup joining: only it hears
    assert set(arb.arbitrate(c, 9)) == {a, b, c}  # a new primary: everyone hears
    assert arb.primary is c and arb.is_primary_id(9) and not arb.is_primary_id(5)
    with pytest.raises(P4RTError) as exc:
        arb.arbitrate(object(), 1)
    assert exc.value.code == rpc_code.RESOURCE_EXHAUSTED
    with pytest.raises(P4RTError) as exc:
        arb.arbitrate(b, 5)
    assert exc.value.code == rpc_code.INVALID_ARGUMENT
    assert arb.remove(b) == []
    assert set(arb.remove(c)) == {a}
    assert arb.primary is a


def test_idle_schedule_repeats_every_two_seconds_and_resets_on_hit() -> None:
    idle = IdleSchedule()
    assert idle.due([("e", 0.0)], now=10.0) == ["e"]
    assert idle.due([("e", 0.0)], now=11.0) == []
    assert idle.due([("e", 0.0)], now=12.0) == ["e"]
    assert idle.due([("e", 12.5)], now=13.0) == ["e"]  # hit after the last notice: idle anew
    assert idle.due([], now=14.0) == []  # no longer idle: forgotten
    assert idle.due([("e", 12.5)], now=14.5) == ["e"]
