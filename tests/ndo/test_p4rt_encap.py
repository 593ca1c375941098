"""L2 encapsulation through the P4Runtime driver, with either compiled flowtable.p4.

Which program runs is read from the P4Info's match fields: one compiled before issue 17 has no
``encap*`` keys, and the driver refuses encapsulated flows as UNSUPPORTED (they stay in the
software flowtable, as a kernel driver's -EOPNOTSUPP leaves them); one with them gets the
ingress encapsulation in the key and the pushed one in the action. The new P4Info is built
here the way p4c lays it out (fields and parameters appended, ids in declaration order), so the
codec is tested before the program is compiled.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from finsy.proto import p4i, p4r

from ndo.api import Command, Encap, FlowCommand, FlowRule, Refusal
from ndo.p4runtime.codec import DELETE, INSERT, CodecError, FlowCodec, canonical_int
from ndo.p4runtime.schema import (
    ENCAP_MATCH_FIELDS,
    PUSH_PARAMS,
    FlowSchema,
    SchemaError,
)
from tests.ndo.p4rt_support import ids, p4info, running_target, v4_rule

VLAN10 = Encap(10, 0x8100)
SVLAN100 = Encap(100, 0x88A8)
PPPOE = Encap(0x1234, 0x8864)


def encap_p4info(size: int = 100, *, drop: str | None = None) -> p4i.P4Info:
    """The P4Info of the new flowtable.p4: encap keys after dport, push params after mtu."""
    info = p4info(size)
    for table in info.tables:
        for name in ENCAP_MATCH_FIELDS:
            if name != drop:
                table.match_fields.add(id=len(table.match_fields) + 1, name=name, bitwidth=16,
                                       match_type=p4i.MatchField.EXACT)
    for action in info.actions:
        if action.preamble.name.startswith("FtIngress.forward_"):
            for name in PUSH_PARAMS:
                if name != drop:
                    action.params.add(id=len(action.params) + 1, name=name, bitwidth=16)
    return info


OLD = FlowCodec(FlowSchema.from_p4info(p4info(100)))
NEW = FlowCodec(FlowSchema.from_p4info(encap_p4info()))


def rule(encap: tuple[Encap, ...] = (VLAN10,), push: tuple[Encap, ...] = (PPPOE,)) -> FlowRule:
    base = v4_rule(7)
    return FlowRule(replace(base.match, encap=encap), replace(base.actions, push=push))


def test_the_schema_tells_the_programs_apart_by_their_match_fields() -> None:
    assert not any(t.encap for t in OLD.schema.tables.values())
    assert all(t.encap for t in NEW.schema.tables.values())
    assert [len(t.match_ids) for t in NEW.schema.tables.values()] == [10, 10]


@pytest.mark.parametrize("drop", ["encap1_proto", "push0_id"])
def test_half_an_encapsulation_in_the_p4info_is_a_schema_error(drop: str) -> None:
    with pytest.raises(SchemaError, match=drop):
        FlowSchema.from_p4info(encap_p4info(drop=drop))


def test_the_old_program_refuses_encapsulated_flows_and_says_why() -> None:
    OLD.check(rule((), ()))  # untagged flows are as before
    for r in (rule(), rule((VLAN10,), ()), rule((), (PPPOE,))):
        with pytest.raises(CodecError, match="no L2 encapsulation keys"):
            OLD.check(r)


def reference_entry(r: FlowRule) -> p4r.TableEntry:
    """The new program's entry built the obvious way with upb."""
    m, a = r.match, r.actions

    def ints(encaps: tuple[Encap, ...]) -> list[int]:
        padded = [*encaps, Encap(0, 0), Encap(0, 0)][:2]
        return [padded[0].id, padded[0].proto, padded[1].id, padded[1].proto]

    def value(v: int | bytes) -> bytes:
        return canonical_int(v if isinstance(v, int) else int.from_bytes(v, "big"))

    keys = [m.ingress_port, m.src, m.dst, m.proto, m.sport, m.dport, *ints(m.encap)]
    entry = p4r.TableEntry(table_id=ids("FtIngress.flow_v4"), match=[
        p4r.FieldMatch(field_id=i, exact=p4r.FieldMatch.Exact(value=value(v)))
        for i, v in enumerate(keys, 1)])
    params = [a.egress_port, a.eth_src, a.eth_dst, m.src, m.dst, m.sport, m.dport, a.mtu,
              *ints(a.push)]
    entry.action.action.action_id = ids("FtIngress.forward_v4")
    for i, v in enumerate(params, 1):
        entry.action.action.params.add(param_id=i, value=value(v))
    return entry


@pytest.mark.parametrize("encap, push", [
    ((VLAN10,), ()),
    ((), (VLAN10,)),
    ((SVLAN100, VLAN10), (PPPOE,)),
    ((PPPOE,), (SVLAN100, VLAN10)),
    ((Encap(7, 0x8100), PPPOE), ()),
    ((), ()),
])
def test_the_new_program_gets_key_and_push_on_the_wire(encap, push) -> None:  # type: ignore[no-untyped-def]
    r = rule(encap, push)
    NEW.check(r)
    update = p4r.WriteRequest.FromString(NEW.encode_entry(INSERT, r)).updates[0]
    assert update.entity.table_entry == reference_entry(r)
    assert NEW.match_of(update.entity.table_entry) == r.match
    assert NEW.has_actions_of(update.entity.table_entry, r)
    assert not NEW.has_actions_of(update.entity.table_entry, rule(encap, (Encap(11, 0x8100),)))
    delete = p4r.WriteRequest.FromString(NEW.encode_delete(r.match)).updates[0]
    assert delete.type == DELETE
    assert list(delete.entity.table_entry.match) == list(reference_entry(r).match)


@pytest.mark.parametrize("encap, push, message", [
    ((PPPOE, VLAN10), (), "innermost"),
    ((VLAN10, SVLAN100), (), "inner tag"),
    ((), (VLAN10, VLAN10, VLAN10), "3 encapsulations"),
    ((Encap(5000, 0x8100),), (), "VLAN id 5000"),
    ((Encap(1, 0x0800),), (), "unknown encapsulation"),
])
def test_encapsulations_the_kernel_never_builds_are_refused(encap, push, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CodecError, match=message):
        NEW.check(rule(encap, push))


async def test_the_driver_on_the_compiled_program_keeps_encapsulated_flows_in_software() -> None:
    """Whatever is compiled now: without encap keys the REPLACE is UNSUPPORTED, named."""
    async with running_target() as target:
        driver = target.driver()
        await driver.start()
        if driver.schema.tables[4].encap:
            pytest.skip("the compiled flowtable.p4 has encapsulation keys")
        results = await driver.execute([FlowCommand(Command.REPLACE, 1, rule()),
                                        FlowCommand(Command.REPLACE, 2, rule((), ()))])
        assert results[0].refusal is Refusal.UNSUPPORTED
        assert "no L2 encapsulation keys" in results[0].message
        assert results[1].ok
        assert len(target.table(4)) == 1
        await driver.close()
