"""The P4Runtime codec and schema: wire bytes equal upb's, values canonical, bad input refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from finsy.proto import p4r
from hypothesis import given
from hypothesis import strategies as st

from ndo.api import FlowActions, FlowMatch, FlowRule
from ndo.p4runtime.codec import DELETE, INSERT, MODIFY, CodecError, FlowCodec, canonical_int
from ndo.p4runtime.schema import FlowSchema, Pipeline, SchemaError, load_p4info
from tests.ndo.p4rt_support import ids, p4info, p4info_text, v4_rule

SCHEMA = FlowSchema.from_p4info(p4info(size=100))
V4, V6 = ids("FtIngress.flow_v4"), ids("FtIngress.flow_v6")
FWD4, FWD6 = ids("FtIngress.forward_v4"), ids("FtIngress.forward_v6")
CODEC = FlowCodec(SCHEMA, idle_timeout_ns=30 * 10**9)

u16 = st.integers(0, 0xFFFF)
mac = st.binary(min_size=6, max_size=6)


@st.composite
def rules(draw: st.DrawFn) -> FlowRule:
    family = draw(st.sampled_from([4, 6]))
    addr = st.binary(min_size=4 if family == 4 else 16, max_size=4 if family == 4 else 16)
    match = FlowMatch(draw(st.integers(0, 511)), family, draw(addr), draw(addr),
                      draw(st.sampled_from([6, 17])), draw(u16), draw(u16))
    actions = FlowActions(draw(st.integers(0, 511)), draw(mac), draw(mac), draw(u16),
                          draw(st.none() | addr), draw(st.none() | addr),
                          draw(st.none() | u16), draw(st.none() | u16))
    return FlowRule(match, actions)


def reference_update(kind: int, rule: FlowRule) -> p4r.Update:
    """The same update built the slow, obvious way with upb messages."""
    m, a = rule.match, rule.actions
    table, action = (V4, FWD4) if m.family == 4 else (V6, FWD6)

    def value(v: int | bytes) -> bytes:
        return canonical_int(v if isinstance(v, int) else int.from_bytes(v, "big"))

    entry = p4r.TableEntry(table_id=table, match=[
        p4r.FieldMatch(field_id=i, exact=p4r.FieldMatch.Exact(value=value(v)))
        for i, v in enumerate((m.ingress_port, m.src, m.dst, m.proto, m.sport, m.dport), 1)])
    if kind != DELETE:
        params = (a.egress_port, a.eth_src, a.eth_dst, a.nat_src or m.src, a.nat_dst or m.dst,
                  m.sport if a.nat_sport is None else a.nat_sport,
                  m.dport if a.nat_dport is None else a.nat_dport, a.mtu)
        entry.action.action.action_id = action
        for i, v in enumerate(params, 1):
            entry.action.action.params.add(param_id=i, value=value(v))
        entry.idle_timeout_ns = 30 * 10**9
    return p4r.Update(type=kind, entity=p4r.Entity(table_entry=entry))


@given(rules(), st.sampled_from([INSERT, MODIFY]))
def test_encoded_entry_is_the_update_upb_builds(rule: FlowRule, kind: int) -> None:
    CODEC.check(rule)
    request = p4r.WriteRequest.FromString(CODEC.encode_entry(kind, rule))
    assert list(request.updates) == [reference_update(kind, rule)]


@given(rules())
def test_encoded_delete_is_the_key_only_update(rule: FlowRule) -> None:
    request = p4r.WriteRequest.FromString(CODEC.encode_delete(rule.match))
    assert list(request.updates) == [reference_update(DELETE, rule)]


@given(rules())
def test_entries_decode_back_to_their_match_and_actions(rule: FlowRule) -> None:
    entry = reference_update(INSERT, rule).entity.table_entry
    assert CODEC.match_of(entry) == rule.match
    assert CODEC.has_actions_of(entry, rule)


def test_padded_values_decode_like_canonical_ones() -> None:
    rule = v4_rule(3)
    entry = reference_update(INSERT, rule).entity.table_entry
    for fm in entry.match:
        fm.exact.value = fm.exact.value.rjust(4, b"\0")
    assert CODEC.match_of(entry) == rule.match


def test_entries_of_other_tables_or_with_missing_fields_decode_to_none() -> None:
    entry = reference_update(INSERT, v4_rule(1)).entity.table_entry
    assert CODEC.match_of(p4r.TableEntry(table_id=12345, match=entry.match)) is None
    del entry.match[2]
    assert CODEC.match_of(entry) is None


def test_changed_actions_are_noticed() -> None:
    entry = reference_update(INSERT, v4_rule(1)).entity.table_entry
    assert not CODEC.has_actions_of(entry, v4_rule(1, egress_port=7))
    assert not CODEC.has_actions_of(entry, v4_rule(1, nat_dport=8080))


@pytest.mark.parametrize(("change", "message"), [
    ({"decrement_ttl": False}, "TTL"),
    ({"egress_port": 512}, "egress_port=512"),
    ({"mtu": -1}, "mtu=-1"),
    ({"nat_src": bytes(16)}, "nat_src is 16 bytes"),
    ({"eth_dst": bytes(5)}, "eth_dst is 5 bytes"),
    ({"nat_dport": 1 << 16}, "nat_dport"),
])
def test_rules_the_tables_cannot_hold_are_refused_by_name(change: dict, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        CODEC.check(v4_rule(1, **change))


def test_a_match_of_an_unknown_family_is_refused() -> None:
    rule = v4_rule(1)
    odd = FlowRule(FlowMatch(1, 5, bytes(4), bytes(4), 6, 1, 2), rule.actions)
    with pytest.raises(CodecError, match="IPv5"):
        CODEC.check(odd)


def test_schema_reads_ids_sizes_and_packet_metadata() -> None:
    v4 = SCHEMA.tables[4]
    assert (v4.table_id, v4.action_id, v4.size, v4.supports_timeout) == (V4, FWD4, 100, True)
    assert v4.match_bits == (9, 32, 32, 8, 16, 16)
    assert SCHEMA.tables[6].param_bits[3] == 128
    assert SCHEMA.capacity == 200
    assert SCHEMA.packet_in.fields == {"ingress_port": (1, 16), "reason": (2, 8)}
    assert SCHEMA.packet_out.id_of("egress_port") == 1


def test_schema_names_what_a_p4info_lacks() -> None:
    info = p4info()
    del info.tables[1]
    with pytest.raises(SchemaError, match=r"FtIngress\.flow_v6"):
        FlowSchema.from_p4info(info)
    info = p4info()
    info.tables[0].match_fields[4].match_type = info.tables[0].match_fields[4].TERNARY
    with pytest.raises(SchemaError, match="sport must be exact"):
        FlowSchema.from_p4info(info)


def test_pipeline_files_load_and_name_themselves_by_cookie(tmp_path: Path) -> None:
    (tmp_path / "p.txtpb").write_text(p4info_text())
    (tmp_path / "p.bin").write_bytes(p4info().SerializeToString())
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "b.json").write_text('{"x": 1}')
    text = Pipeline.load(tmp_path / "p.txtpb", tmp_path / "a.json")
    binary = Pipeline.load(tmp_path / "p.bin", tmp_path / "a.json")
    assert text.p4info == binary.p4info and text.cookie == binary.cookie
    assert Pipeline.load(tmp_path / "p.txtpb", tmp_path / "b.json").cookie != text.cookie
    (tmp_path / "bad.txtpb").write_text("tables { oops")
    with pytest.raises(SchemaError, match=r"bad\.txtpb"):
        load_p4info(tmp_path / "bad.txtpb")
